"""Reader for InfraTec IRBIS lock-in result exports (ASCII amplitude/phase images).

Layout: ``[Settings]`` with ``key=value`` lines (Latin-1: the phase unit is a bare 0xB0 degree
sign), then ``[Data]`` with one image row per line. ``DelimiterValue`` and ``CommaValue`` give the
column separator and the decimal mark as hex character codes (0x3B ';' and 0x2E '.').
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mulsen.core.errors import DataFormatError


@dataclass(frozen=True)
class IrbisImage:
    path: Path
    settings: dict[str, str]
    data: np.ndarray  # float32 (ImageHeight, ImageWidth)

    @property
    def content(self) -> str:
        return self.settings.get("Content", "")

    @property
    def unit(self) -> str:
        return self.settings.get("TempUnit", "")

    def number(self, key: str) -> float:
        try:
            return float(self.settings[key].replace(",", "."))
        except (KeyError, ValueError):
            raise DataFormatError(self.path, f"setting {key} is missing or not a number") from None

    @property
    def lockin_frequency_hz(self) -> float:
        return self.number("LIT.LockInFrequency")

    @property
    def frame_rate_hz(self) -> float:
        return self.number("LIT.CameraFramerate")

    @property
    def periods(self) -> int:
        return int(self.number("LIT.PeriodNum"))


def _char(settings: dict[str, str], key: str, default: str, path: Path) -> str:
    value = settings.get(key)
    if value is None:
        return default
    try:
        return chr(int(value, 16))
    except ValueError:
        raise DataFormatError(path, f"{key}={value!r} is not a hex character code") from None


def read_irbis_export(path: str | Path) -> IrbisImage:
    """Parse one IRBIS ASCII export; every inconsistency is a one-line error naming the file."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as exc:
        raise DataFormatError(path, f"cannot read ({exc.strerror})") from None
    lines = text.splitlines()
    if not lines or lines[0].strip() != "[Settings]":
        raise DataFormatError(path, "not an IRBIS export (first line is not [Settings])")
    try:
        data_at = next(i for i, line in enumerate(lines) if line.strip() == "[Data]")
    except StopIteration:
        raise DataFormatError(path, "no [Data] section") from None
    settings = {}
    for line in lines[1:data_at]:
        if "=" in line:
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    delimiter = _char(settings, "DelimiterValue", ";", path)
    decimal = _char(settings, "CommaValue", ".", path)
    rows = [line for line in lines[data_at + 1:] if line.strip()]
    try:
        width, height = int(settings["ImageWidth"]), int(settings["ImageHeight"])
    except (KeyError, ValueError):
        raise DataFormatError(path, "ImageWidth/ImageHeight missing or not integers") from None
    if len(rows) != height:
        raise DataFormatError(path, f"[Data] has {len(rows)} rows, header says ImageHeight={height}")
    table = "\n".join(row.rstrip(delimiter) for row in rows)
    if decimal != ".":
        table = table.replace(decimal, ".")
    try:
        data = np.loadtxt(table.splitlines(), delimiter=delimiter, dtype=np.float32, ndmin=2)
    except ValueError as exc:
        raise DataFormatError(path, f"bad number in [Data] ({exc})") from None
    if data.shape != (height, width):
        raise DataFormatError(path, f"[Data] is {data.shape[1]} wide, header says ImageWidth={width}")
    return IrbisImage(path, settings, data)
