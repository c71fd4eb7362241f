"""Progress bars for long work (stderr; silent when ``MULSEN_NO_PROGRESS`` is set)."""

from __future__ import annotations

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
