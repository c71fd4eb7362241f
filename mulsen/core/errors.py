"""Errors that the command line reports as one line, without a traceback."""

from __future__ import annotations

from pathlib import Path


class MulsenError(Exception):
    """An expected failure: bad input, a device that stopped answering, a refused operation."""


class DataFormatError(MulsenError):
    """A file does not follow its format; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):  # survive a trip from a worker process
        return type(self), (self.path, self.problem)


class DeviceError(MulsenError):
    """A device failed, stopped answering or refused a setting; the message names the device."""

    def __init__(self, device: str, problem: str) -> None:
        self.device = device
        self.problem = problem
        super().__init__(f"{device}: {problem}")

    def __reduce__(self):  # survive a trip from a worker process
        return type(self), (self.device, self.problem)


class ConfigError(MulsenError, ValueError):
    """A parameter is out of its range or unknown; raised by the configs' own validation, so the command
    line and a file reader both report it in one line."""
