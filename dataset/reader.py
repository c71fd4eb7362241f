"""Reader for the MulSen-AD layout: pairs modalities by stem and joins data.csv by ``object``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from mulsen.core.errors import DataFormatError, MulsenError

from . import layout
from .formats import read_ir, read_labels_csv, read_mask, read_pc_gt, read_rgb
from .meshio import read_stl
from .records import (
    GOOD,
    MODALITIES,
    MODALITY_DIRS,
    SAMPLE_EXT,
    Mesh,
    ModalityLabels,
    SampleData,
    SampleKey,
    SampleRecord,
    Split,
)

log = logging.getLogger(__name__)

# GT points are written with 6 decimals from float32 vertices; anything farther is not on the mesh.
DEFAULT_POINT_TOLERANCE_MM = 0.01


def match_points_to_vertices(
    vertices: np.ndarray, points: np.ndarray, tolerance: float = DEFAULT_POINT_TOLERANCE_MM,
    tree: cKDTree | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest vertex of every point; return (vertex indices, distances). Pure function."""
    tree = tree if tree is not None else cKDTree(vertices)
    distances, index = tree.query(np.asarray(points, dtype=np.float64).reshape(-1, 3), k=1)
    return index.astype(np.int64), distances


def point_mask(vertices: np.ndarray, points: np.ndarray, tolerance: float, source: Path) -> np.ndarray:
    index, distances = match_points_to_vertices(vertices, points, tolerance)
    far = distances > tolerance
    if far.any():
        raise DataFormatError(source, f"{int(far.sum())} of {len(points)} GT points lie farther than "
                              f"{tolerance} mm from any mesh vertex (max {distances.max():.4f} mm)")
    mask = np.zeros(len(vertices), dtype=bool)
    mask[index] = True
    return mask


class MulsenDataset:
    """A dataset in the MulSen-AD layout.

    ``strict=True`` raises on the first inconsistency (a stem missing in one modality, a label 1
    without its GT file, a csv that names no file). ``strict=False`` skips such samples and lists
    each problem in :attr:`problems`, so the published archive with its known missing masks stays
    usable without ever attaching a wrong label.
    """

    def __init__(self, root: str | Path, strict: bool = True,
                 point_tolerance: float = DEFAULT_POINT_TOLERANCE_MM) -> None:
        given = Path(root)
        if not given.is_dir():
            raise MulsenError(f"{given}: dataset folder not found")
        self.root, self.nested = layout.find_root(given)
        self.strict = strict
        self.point_tolerance = point_tolerance
        self.problems: list[str] = []
        names = [p.name for p in self.root.iterdir() if layout.is_category_dir(p)]
        if not names:
            raise MulsenError(f"{given}: no category folders (expected <category>/RGB, Infrared, Pointcloud)")
        self.categories = layout.category_order(names)
        self._records: dict[str, list[SampleRecord]] = {}

    def _problem(self, path: Path, text: str) -> None:
        if self.strict:
            raise DataFormatError(path, text)
        self.problems.append(f"{path}: {text}")
        log.warning("%s: %s", path, text)

    def _folder_records(self, category: str, split: Split, defect_type: str) -> list[SampleRecord]:
        sub = ("train",) if split is Split.TRAIN else ("test", defect_type)
        per_modality = {
            m: layout.integer_stems(self.root.joinpath(category, MODALITY_DIRS[m], *sub), SAMPLE_EXT[m])[0]
            for m in MODALITIES
        }
        all_stems = set().union(*per_modality.values())
        labels_by_stem: dict[int, ModalityLabels] = {}
        if split is Split.TEST and defect_type != GOOD:
            csv = layout.csv_path(self.root, category, defect_type)
            if not csv.is_file():
                self._problem(csv, "data.csv missing: labels of this defect folder are unknown")
                return []
            labels_by_stem = read_labels_csv(csv)
            for stem in sorted(set(labels_by_stem) - all_stems):
                self._problem(csv, f"row object {stem} names no sample file")
        records = []
        for stem in sorted(all_stems):
            key = SampleKey(category, split, defect_type if split is Split.TEST else GOOD, stem)
            missing = [m for m in MODALITIES if stem not in per_modality[m]]
            if missing:
                self._problem(layout.sample_path(self.root, key, missing[0]),
                              f"sample {key} has no {', '.join(missing)} file")
                continue
            if split is Split.TRAIN or defect_type == GOOD:
                labels = ModalityLabels()
            elif stem not in labels_by_stem:
                self._problem(layout.csv_path(self.root, category, defect_type), f"no row for object {stem}")
                continue
            else:
                labels = labels_by_stem[stem]
            gts: dict[str, Path | None] = {}
            ok = True
            for m in MODALITIES:
                gts[m] = None
                if labels.of(m):
                    gt = layout.gt_path(self.root, key, m)
                    if not gt.is_file():
                        self._problem(gt, f"{m} label is 1 but its ground truth file is missing")
                        ok = False
                    gts[m] = gt
            if not ok:
                continue
            records.append(SampleRecord(
                key, per_modality["rgb"][stem], per_modality["infrared"][stem], per_modality["pointcloud"][stem],
                labels, gts["rgb"], gts["infrared"], gts["pointcloud"]))
        return records

    def records(self, category: str, split: Split | str | None = None) -> list[SampleRecord]:
        """All samples of a category (train first, then test folders with ``good`` first), by stem."""
        if category not in self.categories:
            raise MulsenError(f"{self.root}: no category {category!r} (have: {', '.join(self.categories)})")
        if category not in self._records:
            recs = self._folder_records(category, Split.TRAIN, GOOD)
            for dtype in layout.defect_types(self.root, category):
                recs += self._folder_records(category, Split.TEST, dtype)
            self._records[category] = recs
        recs = self._records[category]
        if split is not None:
            recs = [r for r in recs if r.key.split is Split(split)]
        return recs

    def __iter__(self) -> Iterator[SampleRecord]:
        for category in self.categories:
            yield from self.records(category)

    def load(self, record: SampleRecord, ground_truth: bool = True) -> SampleData:
        """Load images, the deduplicated mesh and per-modality GT (zeros where the label is 0);
        ``ground_truth=False``: only the three sensor files, as an inspector judging the sample reads it (the
        masks are then all zeros)."""
        rgb = read_rgb(record.rgb_path)
        ir = read_ir(record.ir_path)
        mesh = read_stl(record.pc_path)
        rgb_mask = self._load_mask(record.rgb_gt if ground_truth else None, rgb.shape[:2])
        ir_mask = self._load_mask(record.ir_gt if ground_truth else None, ir.shape[:2])
        pc_mask = np.zeros(len(mesh.vertices), dtype=bool)
        if record.pc_gt is not None and ground_truth:
            pc_mask = point_mask(mesh.vertices, read_pc_gt(record.pc_gt), self.point_tolerance, record.pc_gt)
        return SampleData(record, rgb, ir, mesh, rgb_mask, ir_mask, pc_mask)

    @staticmethod
    def _load_mask(path: Path | None, shape: tuple[int, int]) -> np.ndarray:
        if path is None:
            return np.zeros(shape, dtype=bool)
        mask = read_mask(path)
        if mask.shape != shape:
            raise DataFormatError(path, f"mask size {mask.shape[1]}x{mask.shape[0]} differs from its image "
                                  f"{shape[1]}x{shape[0]}")
        return mask

    def load_mesh(self, record: SampleRecord) -> Mesh:
        return read_stl(record.pc_path)
