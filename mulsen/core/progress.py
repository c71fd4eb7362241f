"""Progress bars for long work (stderr; silent when ``MULSEN_NO_PROGRESS`` is set)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    disable = bool(os.environ.get("MULSEN_NO_PROGRESS"))
    yield from tqdm(items, total=total, desc=desc, unit="it", leave=False, disable=disable, dynamic_ncols=True)


def bar(desc: str):
    """A progress-callback factory for library functions taking ``progress(iterable, total)``."""
    return lambda items, total: progress(items, total, desc)


@contextlib.contextmanager
def progress_fraction(desc: str, enabled: bool = True) -> Iterator:
    """A bar for work that reports its own completed fraction: yields ``update(fraction)``."""
    disable = not enabled or bool(os.environ.get("MULSEN_NO_PROGRESS"))
    with tqdm(total=1000, desc=desc, leave=False, disable=disable, dynamic_ncols=True,
              bar_format="{l_bar}{bar}| {elapsed}<{remaining}") as handle:
        def update(fraction: float) -> None:
            target = int(max(0.0, min(1.0, fraction)) * 1000)
            if target > handle.n:
                handle.update(target - handle.n)

        yield update
