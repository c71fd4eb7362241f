"""Heater / halogen-lamp controller over a serial line (pyserial), SCPI-style line protocol.

The interlock: ``with open_heater(...) as heater`` switches the output off on every exit path
(normal end, exception, Ctrl-C). If the host dies or the line is lost, the controller's own
watchdog switches off; the driver keeps it fed with ``keepalive``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Protocol

from mulsen.core.errors import DeviceError

from .clock import Clock, host_clock

log = logging.getLogger(__name__)

_ERR = re.compile(r'ERR\s+(-?\d+),"(.*)"')
OVERTEMPERATURE = -300


class HeaterRefused(DeviceError):
    """The controller answered with an error (bad command, value out of range, overtemperature)."""

    def __init__(self, device: str, command: str, code: int, text: str) -> None:
        self.code = code
        super().__init__(device, f"refused {command!r}: error {code} {text}")


class Heater(Protocol):
    name: str

    def identify(self) -> str: ...

    def set_power(self, percent: float) -> None: ...

    def switch(self, on: bool) -> float: ...

    def is_on(self) -> bool: ...

    def temperature_c(self) -> float: ...

    def keepalive(self) -> None: ...

    def last_edge(self) -> tuple[float, bool]: ...

    def configure_modulation(self, frequency_hz: float) -> None: ...

    def modulate(self, on: bool) -> None: ...

    def clock_offset(self) -> float: ...

    def off_safely(self) -> bool: ...


class SerialHeater:
    """The heater controller on a serial port. Every query has a deadline; garbled replies are retried."""

    def __init__(self, port: str, clock: Clock | None = None, timeout_s: float = 0.5, retries: int = 2,
                 baudrate: int = 115200) -> None:
        self.port = port
        self.name = f"heater {port}"
        self.clock = clock or host_clock()
        self.timeout_s = timeout_s
        self.retries = retries
        try:
            import serial
        except ImportError as exc:
            raise DeviceError(self.name, "pyserial is not installed (pip install mulsen-toolkit[hardware])") from exc
        self._serial_module = serial
        try:
            self._link = serial.Serial(port, baudrate, timeout=timeout_s, write_timeout=timeout_s)
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(self.name, f"cannot open the serial port ({exc})") from None

    # -- line protocol ---------------------------------------------------------------------
    def query(self, command: str) -> str:
        """Send one command, return its reply line; raise on silence, garbage or an ERR reply."""
        last_problem = ""
        for attempt in range(self.retries + 1):
            try:
                if attempt:
                    self._link.reset_input_buffer()
                self._link.write((command + "\n").encode("ascii"))
                raw = self._link.readline()
            except (self._serial_module.SerialException, OSError) as exc:
                raise DeviceError(self.name, f"connection lost during {command!r} ({exc})") from None
            if not raw:
                last_problem = f"no reply within {self.timeout_s} s"
            elif not raw.endswith(b"\n"):
                last_problem = f"incomplete reply {raw!r}"
            else:
                try:
                    reply = raw.decode("ascii").strip()
                except UnicodeDecodeError:
                    last_problem = f"garbled reply {raw!r}"
                else:
                    if m := _ERR.fullmatch(reply):
                        raise HeaterRefused(self.name, command, int(m.group(1)), m.group(2))
                    return reply
            log.warning("%s: %s to %r (try %d of %d)", self.name, last_problem, command, attempt + 1,
                        self.retries + 1)
        raise DeviceError(self.name, f"{last_problem} to {command!r} after {self.retries + 1} tries")

    def _ok(self, command: str) -> None:
        reply = self.query(command)
        if reply != "OK":
            raise DeviceError(self.name, f"unexpected reply {reply!r} to {command!r}")

    def _number(self, command: str) -> float:
        reply = self.query(command)
        try:
            return float(reply)
        except ValueError:
            raise DeviceError(self.name, f"unexpected reply {reply!r} to {command!r}") from None

    # -- operations ---------------------------------------------------------------------------
    def identify(self) -> str:
        return self.query("*IDN?")

    def reset(self) -> None:
        self._ok("*RST")

    def set_power(self, percent: float) -> None:
        if not 0 <= percent <= 100:
            raise DeviceError(self.name, f"power must be 0-100 %, got {percent}")
        self._ok(f"SOUR:POW {percent:g}")

    def switch(self, on: bool) -> float:
        """Switch the output; return the clock time of the edge (midpoint of command and acknowledgement)."""
        sent = self.clock.now()
        self._ok("OUTP ON" if on else "OUTP OFF")
        return 0.5 * (sent + self.clock.now())

    def is_on(self) -> bool:
        return self.query("OUTP?") == "1"

    def configure_modulation(self, frequency_hz: float) -> None:
        """Square-wave modulation timed by the controller (50 % duty)."""
        self._ok("SOUR:MOD:SHAP SQU")
        self._ok(f"SOUR:MOD:FREQ {frequency_hz:.6g}")

    def modulate(self, on: bool) -> None:
        """Start (output switches on at once) or stop (output off) the controller's modulation."""
        self._ok("SOUR:MOD:STAT ON" if on else "SOUR:MOD:STAT OFF")

    def temperature_c(self) -> float:
        return self._number("MEAS:TEMP?")

    def power_w(self) -> float:
        return self._number("MEAS:POW?")

    def device_time(self) -> float:
        return self._number("SYST:TIME?")

    def last_edge(self) -> tuple[float, bool]:
        """Device time and new state of the controller's last output edge (``EVT?``)."""
        reply = self.query("EVT?")
        try:
            t, state = reply.split(",")
            return float(t), state.strip() == "1"
        except ValueError:
            raise DeviceError(self.name, f"unexpected reply {reply!r} to 'EVT?'") from None

    def clock_offset(self, samples: int = 8) -> float:
        """``clock - device_time``, from the query with the shortest round trip (NTP-style)."""
        best: tuple[float, float] | None = None
        for _ in range(samples):
            sent = self.clock.now()
            device = self.device_time()
            received = self.clock.now()
            if best is None or received - sent < best[0]:
                best = (received - sent, 0.5 * (sent + received) - device)
        assert best is not None  # samples >= 1
        return best[1]

    def errors(self) -> list[str]:
        """Drain the controller's error queue."""
        found = []
        for _ in range(32):
            reply = self.query("SYST:ERR?")
            if reply.startswith("0,"):
                break
            found.append(reply)
        return found

    def keepalive(self) -> None:
        """Any command feeds the controller's watchdog; reading the output state also checks it."""
        self.query("OUTP?")

    def off_safely(self) -> bool:
        """Best effort: switch off and confirm; never raises (used on every exit path)."""
        try:
            self._ok("OUTP OFF")
            return self.query("OUTP?") == "0"
        except DeviceError as exc:
            log.error("%s: could not confirm the heater is off (%s); the controller watchdog will switch it off",
                      self.name, exc.problem)
            return False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._link.close()


@contextlib.contextmanager
def open_heater(port: str, clock: Clock | None = None, timeout_s: float = 0.5,
                retries: int = 2) -> Iterator[SerialHeater]:
    """Open the heater, yield it, and switch it off whatever happens."""
    heater = SerialHeater(port, clock, timeout_s, retries)
    try:
        heater.identify()
        yield heater
    finally:
        heater.off_safely()
        heater.close()
