"""Heater/lamp controller simulator: the SCPI-style line protocol on a pseudo-terminal.

Run as a separate process (``python -m hardware_mocks.heater_sim --link PATH``); the driver opens
the published serial device path with plain pyserial. Protocol (hardware-notes C.3): one reply line
per command, ``OK``, a value, or ``ERR <code>,"<text>"``. The simulator adds an over-temperature
interlock, a host watchdog (output off when the host stays silent) and an edge log (jsonl) that the
simulated IR camera reads to render frames.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import select
import sys
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mulsen.acquisition.clock import ScaledClock

from .processes import stop_event

RATED_POWER_W = 500.0
AMBIENT_C = 23.0
RISE_AT_FULL_POWER_C = 60.0  # steady lamp-housing rise at 100 % power, always on
THERMAL_TAU_S = 120.0
ERRORS = {-100: "Command error", -222: "Data out of range", -300: "Overtemperature"}


@dataclass
class HeaterModel:
    """Protocol state machine and thermal model; pure except for the edge-log callback."""

    serial: str = "SIM0001"
    firmware: str = "1.0"
    temp_limit_c: float = 80.0
    watchdog_s: float = 10.0
    temperature_c: float = AMBIENT_C
    output: bool = False
    power_pct: float = 100.0
    mod_shape: str = "SQU"
    mod_freq_hz: float = 0.1
    mod_on: bool = False
    mod_start: float = 0.0
    last_seen: float = 0.0
    last_edge: tuple[float, bool] = (0.0, False)
    errors: list[int] = field(default_factory=list)
    on_edge: Callable[[float, bool, float, str], None] | None = None
    _updated: float = 0.0

    # -- time evolution ---------------------------------------------------------------
    def advance(self, now: float) -> None:
        """Device-timed modulation edges, the thermal model and the watchdog up to ``now``."""
        if self.mod_on:
            half = 0.5 / self.mod_freq_hz
            k = math.floor((now - self.mod_start) / half)
            want = k % 2 == 0
            if want != self.output:
                self._switch(self.mod_start + k * half, want, "modulation")
        dt = max(now - self._updated, 0.0)
        target = AMBIENT_C + (RISE_AT_FULL_POWER_C * self.power_pct / 100 if self.output else 0.0)
        self.temperature_c = target + (self.temperature_c - target) * math.exp(-dt / THERMAL_TAU_S)
        self._updated = now
        if self.output and self.temperature_c > self.temp_limit_c:
            self.mod_on = False
            self._switch(now, False, "overtemperature")
        if self.output and self.watchdog_s > 0 and now - self.last_seen > self.watchdog_s:
            self.mod_on = False
            self._switch(now, False, "watchdog")

    def _switch(self, t: float, on: bool, reason: str) -> None:
        if on == self.output:
            return
        self.output = on
        self.last_edge = (t, on)
        if self.on_edge:
            self.on_edge(t, on, self.power_pct, reason)

    # -- protocol -----------------------------------------------------------------------
    def handle(self, line: str, now: float) -> str:
        self.advance(now)
        self.last_seen = now
        text = line.strip()
        upper = text.upper()
        try:
            return self._dispatch(upper, text, now)
        except _ProtocolError as exc:
            self.errors.append(exc.code)
            return f'ERR {exc.code},"{ERRORS[exc.code]}"'

    def _dispatch(self, upper: str, text: str, now: float) -> str:
        if upper == "*IDN?":
            return f"SIMLAB,HEATER,{self.serial},{self.firmware}"
        if upper == "*RST":
            self.mod_on = False
            self._switch(now, False, "reset")
            self.power_pct, self.mod_shape, self.mod_freq_hz = 100.0, "SQU", 0.1
            return "OK"
        if m := re.fullmatch(r"OUTP(?::STAT)?\s+(ON|OFF|1|0)", upper):
            on = m.group(1) in ("ON", "1")
            if on and self.temperature_c > self.temp_limit_c:
                raise _ProtocolError(-300)
            self.mod_on = False
            self._switch(now, on, "host")
            return "OK"
        if upper in ("OUTP?", "OUTP:STAT?"):
            return "1" if self.output else "0"
        if m := re.fullmatch(r"SOUR:POW\s+(\S+)", upper):
            self.power_pct = _number(m.group(1), 0, 100)
            return "OK"
        if upper == "SOUR:POW?":
            return f"{self.power_pct:g}"
        if m := re.fullmatch(r"SOUR:MOD:SHAP\s+(SQU|SIN)", upper):
            self.mod_shape = m.group(1)
            return "OK"
        if m := re.fullmatch(r"SOUR:MOD:FREQ\s+(\S+)", upper):
            self.mod_freq_hz = _number(m.group(1), 0.001, 10)
            return "OK"
        if m := re.fullmatch(r"SOUR:MOD:STAT\s+(ON|OFF|1|0)", upper):
            on = m.group(1) in ("ON", "1")
            if on and self.temperature_c > self.temp_limit_c:
                raise _ProtocolError(-300)
            self.mod_on, self.mod_start = on, now
            if on:
                self.advance(now)
            else:
                self._switch(now, False, "modulation")
            return "OK"
        if upper == "MEAS:POW?":
            return f"{RATED_POWER_W * self.power_pct / 100 if self.output else 0.0:.1f}"
        if upper == "MEAS:TEMP?":
            return f"{self.temperature_c:.2f}"
        if upper == "SYST:ERR?":
            if not self.errors:
                return '0,"No error"'
            code = self.errors.pop(0)
            return f'{code},"{ERRORS[code]}"'
        if upper == "SYST:TIME?":
            return f"{now:.6f}"
        if upper == "EVT?":
            t, state = self.last_edge
            return f"{t:.6f},{int(state)}"
        raise _ProtocolError(-100)


class _ProtocolError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _number(text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _ProtocolError(-100) from None
    if not low <= value <= high or not math.isfinite(value):
        raise _ProtocolError(-222)
    return value


def read_edge_log(path: str | Path) -> list[dict]:
    """The simulator's edge log: ``[{"t", "on", "power_pct", "reason"}, ...]`` (an absent file is empty)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


def serve(model: HeaterModel, clock: ScaledClock, link: str | None, garble_every: int = 0) -> None:
    """Serve the protocol on a new pty until SIGTERM/SIGINT; publish the slave path (symlink + stdout)."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    path = os.ttyname(slave)  # the simulator keeps the slave open so that reads never hit EIO between clients
    if link:
        tmp = f"{link}.tmp{os.getpid()}"
        Path(tmp).symlink_to(path)
        os.replace(tmp, link)
    print(f"READY {path}", flush=True)
    stopping = stop_event()
    pending = b""
    replies = 0
    while not stopping.is_set():
        ready, _, _ = select.select([master], [], [], 0.005)
        now = clock.now()
        model.advance(now)
        if not ready:
            continue
        pending += os.read(master, 4096)
        while b"\n" in pending:
            raw, pending = pending.split(b"\n", 1)
            try:
                line = raw.decode("ascii")
            except UnicodeDecodeError:
                line = "\x00"
            reply = model.handle(line, clock.now())
            replies += 1
            data = (reply + "\n").encode()
            if garble_every and replies % garble_every == 0:
                data = b"\xff\xfe#" + data[1:]  # line noise: one corrupted reply
            os.write(master, data)
    model.mod_on = False
    model._switch(clock.now(), False, "shutdown")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Heater controller simulator on a pseudo-terminal")
    parser.add_argument("--link", help="symlink to create pointing at the pty (the serial port path to use)")
    parser.add_argument("--edge-log", help="jsonl file receiving every output edge")
    parser.add_argument("--serial", default="SIM0001")
    parser.add_argument("--temp-limit", type=float, default=80.0, help="over-temperature interlock (°C)")
    parser.add_argument("--initial-temp", type=float, default=AMBIENT_C)
    parser.add_argument("--watchdog", type=float, default=10.0, help="switch off after this many silent seconds")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--clock-epoch", type=float, help="time.monotonic() value of clock zero (shared)")
    parser.add_argument("--garble-every", type=int, default=0, help="corrupt every Nth reply (fault injection)")
    args = parser.parse_args(argv)
    clock = ScaledClock(args.time_scale, args.clock_epoch) if args.clock_epoch is not None \
        else ScaledClock(args.time_scale)
    with contextlib.ExitStack() as stack:
        log_handle = stack.enter_context(open(args.edge_log, "a", buffering=1)) if args.edge_log else None

        def on_edge(t, on, power, reason):
            if log_handle:
                log_handle.write(json.dumps({"t": t, "on": on, "power_pct": power, "reason": reason}) + "\n")

        now = clock.now()
        model = HeaterModel(serial=args.serial, temp_limit_c=args.temp_limit, watchdog_s=args.watchdog,
                            temperature_c=args.initial_temp, on_edge=on_edge, last_seen=now, _updated=now)
        serve(model, clock, args.link, args.garble_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
