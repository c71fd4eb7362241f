"""Reading input files: one place that refuses what is not a regular file before opening it.

Opening a FIFO blocks until a writer appears and a device can stream forever, so every reader of the
toolkit goes through ``read_input`` (or ``check_input`` where a library opens the path itself).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import DataFormatError

MAX_INPUT_BYTES = 4 << 30  # nothing the toolkit reads whole is larger; a bigger "file" is refused unread


def check_input(path: str | Path, what: str = "file") -> Path:
    """``path`` if it is a regular file (a link to one is fine), else a one-line error naming it."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataFormatError(path, f"{what} not found") from None
    except OSError as exc:
        raise DataFormatError(path, f"cannot read the {what} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise DataFormatError(path, f"{what} expected, found a folder")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise DataFormatError(path, f"{what} is {kind}; refused without opening it")
    return path


def read_input(path: str | Path, what: str = "file", max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file, or a one-line error naming it (missing, special, unreadable, too big)."""
    path = check_input(path, what)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise DataFormatError(path, f"{what} is {size / 2 ** 20:.0f} MiB, more than the "
                                            f"{max_bytes / 2 ** 20:.0f} MiB accepted")
            return handle.read()
    except OSError as exc:
        raise DataFormatError(path, f"cannot read the {what} ({exc.strerror or exc})") from None


def read_json(path: str | Path, what: str = "JSON file", max_bytes: int = 64 << 20) -> object:
    """The parsed content of a small JSON input, or a one-line error naming the file."""
    import json

    data = read_input(path, what, max_bytes)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(path, f"{what} is not valid JSON ({exc})") from None


def output_folder(path: str | Path, what: str = "output folder") -> Path:
    """``path`` as a folder to write into (created if absent); an existing file there is a one-line error."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataFormatError(path, f"{what} expected, but a file of that name exists")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFormatError(path, f"cannot create the {what} ({exc.strerror or exc})") from None
    return path
