"""Command-line options whose defaults come from the dataclass fields they set: one definition per parameter."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any


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


def add_field_option(parser: argparse.ArgumentParser | Any, flag: str, cls: type, name: str, help: str,
                     **kwargs: Any) -> None:
    """``parser.add_argument(flag)`` with the type and default of ``cls.name``, the default shown in the help."""
    default = field_default(cls, name)
    kind = kwargs.pop("type", None) or (type(default) if default is not None else str)
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    parser.add_argument(flag, type=kind, default=default, help=f"{help} (default {shown})", **kwargs)
