"""One time base for heater edges and camera frames.

Real rigs use the host's monotonic clock. The simulators share a *scaled* clock: every process
computes ``(monotonic() - epoch) * scale`` from the same system-wide ``CLOCK_MONOTONIC``, so a
120 s heating run takes a few seconds while all timestamps stay mutually consistent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep_until(self, t: float) -> None: ...

    def real_seconds(self, clock_seconds: float) -> float: ...


@dataclass(frozen=True)
class ScaledClock:
    """Seconds since ``epoch`` (a ``time.monotonic()`` value), running ``scale`` times faster than real time."""

    scale: float = 1.0
    epoch: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"clock scale must be positive, got {self.scale}")

    def now(self) -> float:
        return (time.monotonic() - self.epoch) * self.scale

    def sleep_until(self, t: float) -> None:
        remaining = (t - self.now()) / self.scale
        if remaining > 0:
            time.sleep(remaining)

    def real_seconds(self, clock_seconds: float) -> float:
        return clock_seconds / self.scale


def host_clock() -> ScaledClock:
    """The real-time clock used with real devices."""
    return ScaledClock(1.0)
