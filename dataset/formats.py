"""Readers and writers of the small MulSen-AD files: PNG images and masks, data.csv, point GT txt."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mulsen.core.atomic import atomic_path, atomic_write_text
from mulsen.core.errors import DataFormatError
from mulsen.core.files import read_input

from .records import CSV_HEADER, ModalityLabels

PC_GT_HEADER = "# x, y, z"


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image, turning every decoder failure into one clear error."""
    path = Path(path)
    data = read_input(path, "image")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataFormatError(path, f"unreadable image ({exc})") from None


def read_rgb(path: str | Path) -> np.ndarray:
    """RGB(A) PNG -> (H, W, 3) uint8; alpha is dropped as the official loader does."""
    return np.asarray(open_image(path).convert("RGB"))


def read_ir(path: str | Path) -> np.ndarray:
    """IR PNG (gray replicated to RGB) -> (H, W) uint8, averaging channels where they disagree.

    A 16-bit (or 32-bit integer) gray image is accepted only when every value fits in 8 bits: scaling it
    down would change the amplitudes the detector was trained on, and PIL's own conversion clips."""
    img = open_image(path)
    if img.mode == "L":
        return np.asarray(img)
    if img.mode.startswith("I"):
        wide = np.asarray(img).astype(np.int64)
        if wide.size and (wide.min() < 0 or wide.max() > 255):
            raise DataFormatError(path, f"{img.mode} IR image with values {int(wide.min())}..{int(wide.max())}: "
                                        "MulSen-AD IR images are 8-bit; rescale it to 0..255 with the same factor "
                                        "for every image of the dataset")
        return wide.astype(np.uint8)
    arr = np.asarray(img.convert("RGB"))
    total = arr[..., 0].astype(np.uint16)  # channel by channel: 5x faster than a sum over the short last axis
    total += arr[..., 1]
    total += arr[..., 2]
    total += 1
    total //= 3
    return total.astype(np.uint8)


def read_mask(path: str | Path) -> np.ndarray:
    """Mask PNG -> (H, W) bool, thresholded at half scale like the official ToTensor() > 0.5."""
    img = open_image(path)
    arr = np.asarray(img.convert("L"))
    return arr > 127


def write_png(path: str | Path, array: np.ndarray, mode: str, overwrite: bool = False) -> None:
    """Write a PNG atomically; ``mode`` is the PIL mode stored in the file (RGBA, RGB or L)."""
    img = Image.fromarray(np.ascontiguousarray(array))
    if img.mode != mode:
        img = img.convert(mode)
    with atomic_path(path, overwrite=overwrite) as tmp:
        img.save(tmp, format="PNG", compress_level=1)


def write_rgb(path: str | Path, rgb: np.ndarray, overwrite: bool = False) -> None:
    """RGB image -> PNG RGBA with alpha 255 (the published mode)."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    write_png(path, rgba, "RGBA", overwrite)


def write_ir(path: str | Path, gray: np.ndarray, overwrite: bool = False) -> None:
    """8-bit gray IR image -> PNG RGB with the gray replicated into three channels."""
    gray = np.asarray(gray, dtype=np.uint8)
    write_png(path, np.repeat(gray[:, :, None], 3, axis=2), "RGB", overwrite)


def write_mask(path: str | Path, mask: np.ndarray, overwrite: bool = False) -> None:
    """Boolean mask -> PNG mode L with values 0/255."""
    write_png(path, np.where(np.asarray(mask, bool), 255, 0).astype(np.uint8), "L", overwrite)


def read_pc_gt(path: str | Path) -> np.ndarray:
    """Point GT txt (``# x, y, z`` + comma rows) -> (K, 3) float64; a single row stays 2-D."""
    path = Path(path)
    try:
        text = read_input(path, "point GT file").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"unreadable point GT ({exc})") from None
    lines = text.splitlines()
    if not lines or lines[0].strip().replace(" ", "").lower() != PC_GT_HEADER.replace(" ", ""):
        first = lines[0][:40] if lines else ""
        raise DataFormatError(path, f"point GT header must be '{PC_GT_HEADER}', found {first!r}")
    rows: list[list[float]] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != 3:
            raise DataFormatError(path, f"line {number}: expected 3 comma-separated values, got {len(parts)}")
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            raise DataFormatError(path, f"line {number}: non-numeric value in {line.strip()[:60]!r}") from None
    points = np.array(rows, dtype=np.float64).reshape(-1, 3)
    if points.shape[0] == 0:
        raise DataFormatError(path, "point GT has no rows (an anomalous sample needs at least one point)")
    if not np.all(np.isfinite(points)):
        raise DataFormatError(path, "point GT has non-finite coordinates")
    return points


def write_pc_gt(path: str | Path, points: np.ndarray, overwrite: bool = False) -> None:
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if points.shape[0] == 0:
        raise DataFormatError(path, "refusing to write a point GT with no points")
    buffer = io.StringIO()
    buffer.write(PC_GT_HEADER + "\n")
    np.savetxt(buffer, points, fmt="%.6f", delimiter=",")
    atomic_write_text(path, buffer.getvalue(), overwrite=overwrite)


@dataclass
class LabelTable:
    """The parsed content of one data.csv, plus every problem found while parsing it."""

    rows: dict[int, ModalityLabels]
    problems: list[str]
    order: list[int]


def parse_labels_csv(path: str | Path) -> LabelTable:
    """Parse data.csv keyed by the ``object`` stem; collect (not raise) every problem."""
    path = Path(path)
    problems: list[str] = []
    rows: dict[int, ModalityLabels] = {}
    order: list[int] = []
    try:
        raw = read_input(path, "csv")
    except DataFormatError as exc:
        return LabelTable({}, [exc.problem], [])
    if raw.startswith(b"\xef\xbb\xbf"):
        problems.append("csv starts with a UTF-8 BOM")
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return LabelTable({}, problems + ["csv is not UTF-8 text"], [])
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return LabelTable({}, problems + ["csv is empty (no header)"], [])
    clean = [h.strip() for h in header]
    if tuple(clean) != CSV_HEADER:
        if tuple(h.lower() for h in clean) == tuple(h.lower() for h in CSV_HEADER):
            problems.append(f"csv header differs in case/whitespace: {','.join(header)!r}")
        else:
            return LabelTable({}, problems + [
                f"csv header must be {','.join(CSV_HEADER)!r}, found {','.join(header)!r}"], [])
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 4:
            problems.append(f"csv line {line_no}: expected 4 columns, got {len(row)}")
            continue
        stem_text = Path(row[0].strip()).stem
        if not stem_text.isdigit():
            problems.append(f"csv line {line_no}: object {row[0]!r} is not an integer stem")
            continue
        try:
            values = [int(c.strip()) for c in row[1:]]
            labels = ModalityLabels(*values)
        except ValueError:
            problems.append(f"csv line {line_no}: labels must be 0 or 1, got {','.join(row[1:])!r}")
            continue
        stem = int(stem_text)
        if stem in rows:
            problems.append(f"csv line {line_no}: duplicate object {stem}")
            continue
        rows[stem] = labels
        order.append(stem)
    if order != sorted(order):
        problems.append("csv rows are not sorted by integer object (the official loader joins by row order)")
    return LabelTable(rows, problems, order)


def read_labels_csv(path: str | Path) -> dict[int, ModalityLabels]:
    """Strict variant for readers: raise on the first problem."""
    table = parse_labels_csv(path)
    fatal = [p for p in table.problems if "BOM" not in p and "not sorted" not in p and "case/whitespace" not in p]
    if fatal:
        raise DataFormatError(path, fatal[0])
    return table.rows


def write_labels_csv(path: str | Path, rows: dict[int, ModalityLabels]) -> None:
    """Write data.csv: exact header, LF endings, no BOM, rows sorted by integer object."""
    lines = [",".join(CSV_HEADER)]
    lines += [f"{stem},{lab.rgb},{lab.infrared},{lab.pointcloud}" for stem, lab in sorted(rows.items())]
    atomic_write_text(path, "\n".join(lines) + "\n", overwrite=True)
