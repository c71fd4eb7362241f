"""Command-line options whose defaults come from the dataclass fields they set: one definition per parameter."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from mulsen.core.parallel import BACKENDS, available_cores


def field_default(cls: type, name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name`` (a default factory is called)."""
    for item in dataclasses.fields(cls):
        if item.name == name:
            if item.default is not dataclasses.MISSING:
                return item.default
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
            raise ValueError(f"{cls.__name__}.{name} has no default")
    raise ValueError(f"{cls.__name__} has no field {name!r}")


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(_shown(v) for v in value)
    return str(value)


def add_field_option(parser: argparse.ArgumentParser | Any, flag: str, cls: type, name: str, help: str,
                     preset: Any = None, **kwargs: Any) -> None:
    """``parser.add_argument(flag)`` with the type and default of ``cls.name``, the default shown in the help.

    ``preset``: an instance of ``cls`` another preset starts from; the option then defaults to None (not
    given: the chosen preset's value) and the help shows both defaults."""
    default = field_default(cls, name)
    kind = kwargs.pop("type", None) or (type(default) if default is not None else str)
    if preset is None:
        parser.add_argument(flag, type=kind, default=default, help=f"{help} (default {_shown(default)})", **kwargs)
        return
    parser.add_argument(flag, type=kind, default=None, **kwargs,
                        help=f"{help} (default {_shown(default)}; --preset paper: {_shown(getattr(preset, name))})")


def add_backend_options(parser: argparse.ArgumentParser, work: str) -> None:
    """--backend local|inprocess|ray, --jobs, --address: where per-item ``work`` runs."""
    group = parser.add_argument_group("where the work runs")
    group.add_argument("--backend", choices=BACKENDS, default="local",
                       help=f"{work}: local worker processes (default), inprocess, or a Ray cluster (results are "
                       "identical on all three)")
    group.add_argument("--jobs", type=_positive_jobs, default=available_cores(),
                       help="local worker processes (default: every core; 1: in process)")
    group.add_argument("--address", help="with --backend ray: the cluster ('auto' on a cluster node, "
                       "ray://HOST:10001 from outside; absent: a local Ray on this machine)")


def executor_from(args: argparse.Namespace, gpus: float = 0.0):
    """The executor ``add_backend_options``' flags ask for (``gpus``: per Ray task, for networks on cuda)."""
    from mulsen.core.parallel import executor

    if args.address and args.backend != "ray":
        from mulsen.core.errors import MulsenError

        raise MulsenError("--address needs --backend ray")
    return executor(args.backend, args.jobs, args.address, gpus)


def _positive_jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of processes >= 1, got {text!r}")
    return value
