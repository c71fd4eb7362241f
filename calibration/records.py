"""Calibration files: JSON with a format tag, creation time and tool version, written atomically."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from mulsen import __version__
from mulsen.atomic import atomic_write_text
from mulsen.errors import DataFormatError


def write_calibration(path: str | Path, format_tag: str, fields: dict) -> None:
    header = {"format": format_tag, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "tool": f"mulsen-toolkit {__version__}"}
    atomic_write_text(path, json.dumps({**header, **fields}, indent=1))


def read_calibration(path: str | Path, format_tag: str, what: str) -> dict:
    """The fields of a calibration file of ``format_tag``; a one-line DataFormatError naming it otherwise."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataFormatError(path, f"unreadable {what} file ({exc})") from None
    found = record.get("format") if isinstance(record, dict) else None
    if found != format_tag:
        raise DataFormatError(path, f"not a {what} file: format {found}, expected {format_tag}")
    return record
