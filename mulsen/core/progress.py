"""Progress on stderr for long work: a live bar on a terminal, plain periodic lines in logs and CI (a bar's
carriage returns make a log unreadable), nothing with ``MULSEN_NO_PROGRESS`` set (``mulsen -q``, the tests)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
LINE_EVERY_S = 10.0  # off a terminal: a line at most this often (and one when the work is done)


def _mode() -> str:
    """``off``, ``bar`` (stderr is a terminal) or ``lines``."""
    if os.environ.get("MULSEN_NO_PROGRESS"):
        return "off"
    return "bar" if sys.stderr.isatty() else "lines"


class _Lines:
    """Plain progress lines: ``desc: 40/120 (33 %), 12 s`` at most every ``LINE_EVERY_S`` seconds, and a last
    line ``desc: 120/120 done in 31 s`` (work under ``LINE_EVERY_S`` seconds prints only that one)."""

    def __init__(self, desc: str, total: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.desc, self.total, self.clock = desc or "working", total, clock
        self.started = self.last = clock()

    def _print(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=sys.stderr, flush=True)

    def update(self, done: int, text: str = "") -> None:
        now = self.clock()
        if now - self.last >= LINE_EVERY_S:
            self.last = now
            share = f" ({100 * done / self.total:.0f} %)" if self.total else ""
            of = f"/{self.total}" if self.total else ""
            self._print(f"{done}{of}{share}, {now - self.started:.0f} s" + (f" · {text}" if text else ""))

    def finish(self, done: int | None, text: str = "") -> None:
        """The last line; ``done`` None: work measured in fractions (no count to show)."""
        of = f"/{self.total}" if self.total else ""
        count = "" if done is None else f"{done}{of} "
        self._print(f"{count}done in {self.clock() - self.started:.0f} s" + (f" · {text}" if text else ""))


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    mode = _mode()
    if mode != "lines":
        yield from tqdm(items, total=total, desc=desc, unit="it", leave=False, disable=mode == "off",
                        dynamic_ncols=True)
        return
    lines = _Lines(desc, total)
    done = 0
    for item in items:
        yield item
        done += 1
        lines.update(done)
    lines.finish(done)


def bar(desc: str):
    """A progress-callback factory for library functions taking ``progress(iterable, total)``."""
    return lambda items, total: progress(items, total, desc)


@contextlib.contextmanager
def progress_fraction(desc: str, enabled: bool = True) -> Iterator:
    """A bar for work that reports its own completed fraction: yields ``update(fraction, text="")``; ``text``
    (what the work is doing now) follows the bar, or each plain line."""
    mode = _mode() if enabled else "off"
    if mode == "lines":
        lines = _Lines(desc, 100)
        reached, said = [0], [""]

        def update_line(fraction: float, text: str = "") -> None:
            reached[0] = max(reached[0], int(max(0.0, min(1.0, fraction)) * 100))
            said[0] = text or said[0]
            lines.update(reached[0], text)

        yield update_line
        lines.finish(None, said[0])  # the last status is the summary (periods, frames, heater, SNR)
        return
    with tqdm(total=1000, desc=desc, leave=False, disable=mode == "off", dynamic_ncols=True,
              bar_format="{l_bar}{bar}| {postfix}") as handle:
        def update(fraction: float, text: str = "") -> None:
            target = int(max(0.0, min(1.0, fraction)) * 1000)
            if text:
                handle.set_postfix_str(text, refresh=False)
            if target > handle.n:
                handle.update(target - handle.n)

        yield update
