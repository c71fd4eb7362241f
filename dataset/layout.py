"""Paths of the MulSen-AD layout, built from components (never by string replacement)."""

from __future__ import annotations

import re
from pathlib import Path

from .records import GOOD, GT_EXT, MODALITY_DIRS, MULSEN_CATEGORIES, SAMPLE_EXT, SampleKey, Split


def sample_path(root: Path, key: SampleKey, modality: str) -> Path:
    base = Path(root) / key.category / MODALITY_DIRS[modality]
    name = f"{key.stem}{SAMPLE_EXT[modality]}"
    if key.split is Split.TRAIN:
        return base / "train" / name
    return base / "test" / key.defect_type / name


def gt_path(root: Path, key: SampleKey, modality: str) -> Path:
    folder = Path(root) / key.category / MODALITY_DIRS[modality] / "GT" / key.defect_type
    return folder / f"{key.stem}{GT_EXT[modality]}"


def csv_path(root: Path, category: str, defect_type: str) -> Path:
    return Path(root) / category / "RGB" / "GT" / defect_type / "data.csv"


def is_category_dir(path: Path) -> bool:
    return path.is_dir() and any((path / d).is_dir() for d in MODALITY_DIRS.values())


def find_root(path: str | Path) -> tuple[Path, bool]:
    """Return the first directory (path itself, or up to two levels below) holding category folders.

    The second value tells whether an extra nesting level (``MulSen_AD/MulSen_AD``) was skipped.
    """
    path = Path(path)
    frontier = [path]
    for depth in range(3):
        for candidate in frontier:
            if candidate.is_dir() and any(is_category_dir(c) for c in candidate.iterdir()):
                return candidate, depth > 0
        frontier = [c for f in frontier if f.is_dir() for c in sorted(f.iterdir()) if c.is_dir()]
    return path, False


def category_order(names: list[str]) -> list[str]:
    """Official category order first, then any other categories alphabetically."""
    known = [c for c in MULSEN_CATEGORIES if c in names]
    return known + sorted(set(names) - set(known))


def integer_stems(folder: Path, suffix: str) -> tuple[dict[int, Path], list[Path]]:
    """Index files ``<int><suffix>`` of a folder by stem; return (stems, files with other names)."""
    stems: dict[int, Path] = {}
    odd: list[Path] = []
    if not folder.is_dir():
        return stems, odd
    for entry in folder.iterdir():
        if entry.is_dir() or entry.name.startswith("."):
            continue
        if entry.suffix.lower() == suffix and entry.stem.isdigit() and str(int(entry.stem)) == entry.stem:
            stems[int(entry.stem)] = entry
        elif entry.name != "data.csv":
            odd.append(entry)
    return stems, odd


def defect_types(root: Path, category: str) -> list[str]:
    """Test folder names of a category (``good`` first), from the RGB modality."""
    test = Path(root) / category / "RGB" / "test"
    names = sorted(p.name for p in test.iterdir() if p.is_dir()) if test.is_dir() else []
    return ([GOOD] if GOOD in names else []) + [n for n in names if n != GOOD]


# The fewest training normals a category needs to be trained on: the detector holds 3 out to calibrate its
# scores and needs 2 for the banks (detection.config.DetectorConfig's min_holdout + 2; a test keeps them equal).
MIN_TRAINING_NORMALS = 5

# A defect type folder name as MulSen-AD spells them ('crack', 'broken_inside'): what build writes and validate accepts.
DEFECT_FOLDER = re.compile(r"[a-z][a-z0-9_]{0,63}")
