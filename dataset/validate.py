"""Validator of the MulSen-AD contract: reports every violation as ``path: problem``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from mulsen.core.errors import DataFormatError
from mulsen.core.parallel import Executor, as_executor

from . import layout
from .formats import open_image, parse_labels_csv, read_pc_gt
from .meshio import dedup_vertices, read_stl_corners
from .records import (
    GOOD,
    GT_EXT,
    IR_SIZE,
    MODALITIES,
    MODALITY_DIRS,
    RGB_SIZE,
    SAMPLE_EXT,
    ModalityLabels,
)

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    path: Path
    kind: str
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        tag = "" if self.severity == ERROR else f"[{self.severity}] "
        return f"{self.path}: {tag}{self.message} ({self.kind})"


@dataclass
class ValidationReport:
    root: Path
    problems: list[Problem] = field(default_factory=list)
    samples: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    def counts(self) -> Counter:
        return Counter(p.kind for p in self.problems)


@dataclass(frozen=True)
class SampleCheck:
    """Everything needed to check one sample's files in a worker process."""

    name: str
    files: dict[str, Path]
    labels: ModalityLabels
    gts: dict[str, Path | None]
    check_published_size: bool
    point_tolerance: float


def _check_image(path: Path, modality: str, strict_size: bool) -> tuple[list[Problem], tuple[int, int] | None]:
    problems: list[Problem] = []
    try:
        img = open_image(path)
    except DataFormatError as exc:
        return [Problem(path, "unreadable-file", exc.problem)], None
    size = img.size
    if modality == "rgb":
        if img.mode != "RGBA":
            problems.append(Problem(path, "image-format", f"RGB image mode is {img.mode}, expected RGBA", WARNING))
        elif np.asarray(img.getchannel("A")).min() < 255:
            problems.append(Problem(path, "image-format", "RGBA alpha is not 255 everywhere"))
        expected = RGB_SIZE
    else:
        if img.mode.startswith("I"):
            wide = np.asarray(img)
            if wide.size and (int(wide.min()) < 0 or int(wide.max()) > 255):
                problems.append(Problem(path, "image-format", f"{img.mode} IR image with values {int(wide.min())}.."
                                        f"{int(wide.max())} does not fit the 8-bit MulSen-AD format"))
        if img.mode != "RGB":
            problems.append(Problem(path, "image-format", f"IR image mode is {img.mode}, expected RGB", WARNING))
        else:
            arr = np.asarray(img)
            spread = arr.max(axis=2).astype(np.int16) - arr.min(axis=2)
            if spread.any():
                share = float((spread > 0).mean()) * 100
                problems.append(Problem(path, "ir-not-gray", f"IR channels differ on {share:.2f}% of pixels "
                                        f"(max spread {int(spread.max())})", WARNING))
        expected = IR_SIZE
    if size != expected:
        severity = ERROR if strict_size else WARNING
        problems.append(Problem(path, "image-size", f"size {size[0]}x{size[1]} differs from the published "
                                f"{expected[0]}x{expected[1]}", severity))
    return problems, size


def _check_mask(path: Path, image_size: tuple[int, int] | None) -> list[Problem]:
    try:
        img = open_image(path)
    except DataFormatError as exc:
        return [Problem(path, "unreadable-file", exc.problem)]
    problems = []
    if img.mode != "L":
        problems.append(Problem(path, "mask-format", f"mask mode is {img.mode}, expected L", WARNING))
    arr = np.asarray(img.convert("L"))
    if image_size is not None and img.size != image_size:
        problems.append(Problem(path, "mask-size", f"mask size {img.size[0]}x{img.size[1]} differs from its "
                                f"image {image_size[0]}x{image_size[1]}"))
    values = np.unique(arr)
    if not set(values.tolist()) <= {0, 255}:
        problems.append(Problem(path, "mask-not-binary", f"mask has {len(values)} distinct values, expected 0/255"))
    if not (arr > 127).any():
        problems.append(Problem(path, "mask-empty", "mask marks no pixel although its label is 1"))
    return problems


def _check_mesh(path: Path, gt: Path | None, tolerance: float) -> list[Problem]:
    try:
        corners = read_stl_corners(path)
    except DataFormatError as exc:
        return [Problem(path, "stl-unreadable", exc.problem)]
    problems = []
    low, high = corners.min(axis=0), corners.max(axis=0)
    diagonal = float(np.linalg.norm(high - low))
    if not 1.0 <= diagonal <= 1000.0:
        problems.append(Problem(path, "stl-scale", f"bounding-box diagonal {diagonal:.4g} is not a plausible "
                                "size in millimetres (1-1000 mm): wrong unit?"))
    centre = (high + low) / 2
    if np.linalg.norm(centre) < 0.05 * max(diagonal, 1e-9):
        problems.append(Problem(path, "stl-centred", "mesh is centred at the origin; MulSen-AD keeps the "
                                "uncentred scanner frame", WARNING))
    if gt is None:
        return problems
    try:
        points = read_pc_gt(gt)
    except DataFormatError as exc:
        return [*problems, Problem(gt, "pc-gt-format", exc.problem)]
    if len(points) == 1:
        problems.append(Problem(gt, "pc-gt-single-row", "only one point: the official loader crashes on it",
                                WARNING))
    vertices, _ = dedup_vertices(corners)
    distances, _ = cKDTree(vertices).query(points, k=1)
    far = distances > tolerance
    if far.any():
        problems.append(Problem(gt, "pc-gt-mismatch", f"{int(far.sum())} of {len(points)} points lie farther "
                                f"than {tolerance} mm from any vertex of {path.name} "
                                f"(max {float(distances.max()):.4f} mm)"))
    return problems


def check_sample(check: SampleCheck) -> list[Problem]:
    """All per-file checks of one sample; pure apart from reading its files."""
    problems: list[Problem] = []
    sizes: dict[str, tuple[int, int] | None] = {}
    for modality in ("rgb", "infrared"):
        found, sizes[modality] = _check_image(check.files[modality], modality, check.check_published_size)
        problems += found
    problems += _check_mesh(check.files["pointcloud"], check.gts["pointcloud"], check.point_tolerance)
    for modality in ("rgb", "infrared"):
        gt = check.gts[modality]
        if gt is not None:
            problems += _check_mask(gt, sizes[modality])
    return problems


class _Walker:
    """Walks the folder structure, collecting structural problems and per-sample checks."""

    def __init__(self, root: Path, strict_size: bool, point_tolerance: float) -> None:
        self.root = root
        self.strict_size = strict_size
        self.point_tolerance = point_tolerance
        self.problems: list[Problem] = []
        self.checks: list[SampleCheck] = []

    def add(self, path: Path, kind: str, message: str, severity: str = ERROR) -> None:
        self.problems.append(Problem(path, kind, message, severity))

    def category(self, category: str) -> None:
        base = self.root / category
        for modality in MODALITIES:
            mdir = base / MODALITY_DIRS[modality]
            for sub in ("train", "test", "GT"):
                if not (mdir / sub).is_dir():
                    self.add(mdir / sub, "missing-folder", f"{MODALITY_DIRS[modality]}/{sub} folder is missing")
        types_by_modality = {
            m: {p.name for p in (base / MODALITY_DIRS[m] / "test").iterdir() if p.is_dir()}
            if (base / MODALITY_DIRS[m] / "test").is_dir() else set()
            for m in MODALITIES
        }
        all_types = sorted(set().union(*types_by_modality.values()))
        if GOOD not in all_types:
            self.add(base / "RGB" / "test" / GOOD, "missing-folder", "test/good folder is missing")
        for modality in MODALITIES:
            for dtype in all_types:
                if dtype not in types_by_modality[modality]:
                    self.add(base / MODALITY_DIRS[modality] / "test" / dtype, "missing-folder",
                             f"test/{dtype} exists in another modality but not in {MODALITY_DIRS[modality]}")
        for dtype in all_types:
            if not layout.DEFECT_FOLDER.fullmatch(dtype):
                self.add(base / "RGB" / "test" / dtype, "bad-type-name", f"defect type folder {dtype!r} is not a "
                         "plain lower-case name (letters, digits, underscores: 'crack', 'broken_inside')")
        self.folder(category, ("train",), None)
        normals = len(layout.integer_stems(base / "RGB" / "train", SAMPLE_EXT["rgb"])[0])
        if normals < layout.MIN_TRAINING_NORMALS:
            self.add(base / "RGB" / "train", "few-normals", f"{category} has {normals} training normal(s); the "
                     f"detector needs at least {layout.MIN_TRAINING_NORMALS} to be trained", WARNING)
        for dtype in all_types:
            self.folder(category, ("test", dtype), dtype)
        self.orphan_gt_folders(category, set(all_types))

    def _stems(self, category: str, sub: tuple[str, ...]) -> dict[str, dict[int, Path]]:
        stems: dict[str, dict[int, Path]] = {}
        for modality in MODALITIES:
            folder = self.root.joinpath(category, MODALITY_DIRS[modality], *sub)
            found, odd = layout.integer_stems(folder, SAMPLE_EXT[modality])
            stems[modality] = found
            for path in odd:
                if path.stem.isdigit():
                    self.add(path, "duplicate-stem", f"stem {path.stem!r} is zero-padded and duplicates or "
                             f"shadows stem {int(path.stem)}")
                else:
                    self.add(path, "extra-file", f"unexpected file (expected <integer>{SAMPLE_EXT[modality]})")
        return stems

    def folder(self, category: str, sub: tuple[str, ...], defect_type: str | None) -> None:
        stems = self._stems(category, sub)
        union = sorted(set().union(*stems.values()))
        for modality in MODALITIES:
            for stem in union:
                if stem not in stems[modality]:
                    path = self.root.joinpath(category, MODALITY_DIRS[modality], *sub, f"{stem}{SAMPLE_EXT[modality]}")
                    self.add(path, "missing-file", f"sample {stem} exists in another modality but not here")
        rgb_folder = self.root.joinpath(category, "RGB", *sub)
        if union and union != list(range(len(union))):
            self.add(rgb_folder, "numbering", f"stems are not contiguous from 0 ({len(union)} samples, "
                     f"max stem {union[-1]})")
        if defect_type is not None and not union:
            self.add(rgb_folder, "empty-folder", "test folder holds no samples")
        labels: dict[int, ModalityLabels] = {}
        if defect_type is not None:
            labels = self.csv(category, defect_type, set(union))
        complete = [s for s in union if all(s in stems[m] for m in MODALITIES)]
        for stem in complete:
            lab = labels.get(stem, ModalityLabels())
            gts: dict[str, Path | None] = {}
            for modality in MODALITIES:
                gts[modality] = None
                if defect_type is None:
                    continue
                gt = self.root / category / MODALITY_DIRS[modality] / "GT" / defect_type / f"{stem}{GT_EXT[modality]}"
                if lab.of(modality) and not gt.is_file():
                    self.add(gt, "missing-gt", f"{modality} label is 1 but this ground truth file is missing")
                elif not lab.of(modality) and gt.is_file():
                    self.add(gt, "gt-for-label-0", f"ground truth present but the {modality} label is 0")
                elif lab.of(modality):
                    gts[modality] = gt
            files = {m: stems[m][stem] for m in MODALITIES}
            name = f"{category}/{'/'.join(sub)}/{stem}"
            self.checks.append(SampleCheck(name, files, lab, gts, self.strict_size, self.point_tolerance))

    def csv(self, category: str, defect_type: str, stems: set[int]) -> dict[int, ModalityLabels]:
        path = layout.csv_path(self.root, category, defect_type)
        for other in ("Infrared", "Pointcloud"):
            extra = self.root / category / other / "GT" / defect_type / "data.csv"
            if extra.exists():
                self.add(extra, "extra-file", "data.csv belongs only under RGB/GT/<type>/")
        if not path.is_file():
            self.add(path, "missing-csv", "data.csv is missing")
            return {}
        table = parse_labels_csv(path)
        for text in table.problems:
            severity = WARNING if ("BOM" in text or "not sorted" in text or "case/whitespace" in text) else ERROR
            self.add(path, "csv-format", text, severity)
        for stem in sorted(set(table.rows) - stems):
            self.add(path, "csv-orphan-row", f"row object {stem} names no sample in test/{defect_type}")
        for stem in sorted(stems - set(table.rows)):
            self.add(path, "csv-missing-row", f"sample {stem} of test/{defect_type} has no row")
        for stem, lab in sorted(table.rows.items()):
            if defect_type == GOOD and lab.label_or:
                self.add(path, "good-labelled-anomalous", f"object {stem} in good has a label 1")
            elif defect_type != GOOD and not lab.label_or and stem in stems:
                self.add(path, "no-positive-label", f"object {stem} is in a defect folder but all labels are 0")
        return table.rows

    def orphan_gt_folders(self, category: str, test_types: set[str]) -> None:
        for modality in MODALITIES:
            gt_root = self.root / category / MODALITY_DIRS[modality] / "GT"
            if not gt_root.is_dir():
                continue
            for folder in sorted(p for p in gt_root.iterdir() if p.is_dir()):
                if folder.name not in test_types:
                    self.add(folder, "orphan-gt", f"GT folder {folder.name!r} has no matching test folder")
                    continue
                samples = layout.integer_stems(
                    self.root / category / MODALITY_DIRS[modality] / "test" / folder.name, SAMPLE_EXT[modality])[0]
                gt_files, odd = layout.integer_stems(folder, GT_EXT[modality])
                for stem, path in sorted(gt_files.items()):
                    if stem not in samples:
                        self.add(path, "orphan-gt", "ground truth with no matching sample")
                for path in odd:
                    if not (modality == "rgb" and path.name == "data.csv"):
                        self.add(path, "extra-file", "unexpected file in a GT folder")


def validate_dataset(root: str | Path, jobs: int | Executor = 1, strict_size: bool = False,
                     point_tolerance: float = 0.01,
                     progress: Callable[[Iterable, int], Iterable] | None = None) -> ValidationReport:
    """Check every rule of the contract; return all problems (never raises on bad data)."""
    given = Path(root)
    report = ValidationReport(given)
    if not given.is_dir():
        report.problems.append(Problem(given, "missing-folder", "dataset folder not found"))
        return report
    found, nested = layout.find_root(given)
    report.root = found
    if nested:
        report.problems.append(Problem(found, "nested-root", "dataset sits one level deeper than given "
                                       "(tolerated)", WARNING))
    categories = [p.name for p in sorted(found.iterdir()) if layout.is_category_dir(p)]
    if not categories:
        report.problems.append(Problem(given, "no-categories", "no category folders with RGB/Infrared/Pointcloud"))
        return report
    walker = _Walker(found, strict_size, point_tolerance)
    for category in layout.category_order(categories):
        walker.category(category)
    report.problems += walker.problems
    report.samples = len(walker.checks)
    for found_problems in as_executor(jobs).map(check_sample, walker.checks, progress):
        report.problems += found_problems
    try:
        sources = captures_by_sample(found)
    except DataFormatError as exc:  # an edited provenance log is a problem of the dataset, reported like others
        report.problems.append(Problem(exc.path, "provenance", exc.problem))
        sources = {}
    if sources:  # a built dataset: say which capture each bad sample came from, where the fix belongs
        report.problems = [replace(p, message=f"{p.message} (from capture {sources[key]})")
                           if (key := sample_of(found, p.path)) in sources else p for p in report.problems]
    return report


def captures_by_sample(root: Path) -> dict[str, str]:
    """Sample key ("nut/test/crack/3") -> the capture it was built from, from the provenance logs."""
    from .writer import read_provenance

    entries, _ = read_provenance(root)
    return {e["sample"]: e["capture"] for e in entries
            if isinstance(e.get("sample"), str) and isinstance(e.get("capture"), str)}


def sample_of(root: Path, path: Path) -> str | None:
    """The sample key a file of the layout belongs to (its image, scan or ground truth), else None."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    stem = Path(parts[-1]).stem if parts else ""
    if len(parts) == 4 and parts[2] == "train" and stem.isdigit():
        return f"{parts[0]}/train/{int(stem)}"
    if len(parts) == 5 and parts[2] in ("test", "GT") and stem.isdigit():
        return f"{parts[0]}/test/{parts[3]}/{int(stem)}"
    return None
