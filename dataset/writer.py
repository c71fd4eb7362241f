"""Writer for the MulSen-AD layout: exact names, atomic files, never overwrites a sample."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from pathlib import Path

import numpy as np

from mulsen.core.errors import DataFormatError, MulsenError
from mulsen.core.files import read_input

from . import layout
from .formats import (
    parse_labels_csv,
    read_mask,
    read_pc_gt,
    write_ir,
    write_labels_csv,
    write_mask,
    write_pc_gt,
    write_rgb,
)
from .meshio import stable_mesh, write_stl
from .reader import match_points_to_vertices
from .records import GOOD, MODALITIES, MODALITY_DIRS, SAMPLE_EXT, ModalityLabels, SampleContent, SampleKey, Split

PROVENANCE_DIR = "_provenance"
logger = logging.getLogger(__name__)
CUT_CAPTURE = re.compile(r'"capture": "([^"]+)"')  # what a cut provenance entry still names (keys are sorted)


class DatasetWriter:
    """Append samples to a dataset; stems restart at 0 per folder and continue after existing ones."""

    def __init__(self, root: str | Path, point_tolerance: float = 0.01) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.point_tolerance = point_tolerance

    def _next_stem(self, category: str, split: Split, defect_type: str) -> int:
        sub = ("train",) if split is Split.TRAIN else ("test", defect_type)
        used: set[int] = set()
        for m in MODALITIES:
            folder = self.root.joinpath(category, MODALITY_DIRS[m], *sub)
            used |= set(layout.integer_stems(folder, SAMPLE_EXT[m])[0])
        return max(used) + 1 if used else 0

    def add(self, category: str, split: Split | str, defect_type: str, content: SampleContent) -> SampleKey:
        """Write one sample and return its key. Train and ``good`` samples must carry no GT."""
        split = Split(split)
        if split is Split.TRAIN:
            defect_type = GOOD
        labels = content.labels
        if (split is Split.TRAIN or defect_type == GOOD) and labels.label_or:
            raise MulsenError(f"{category}/{split.value}/{defect_type}: a normal sample cannot carry ground truth")
        if split is Split.TEST and defect_type != GOOD and not labels.label_or:
            raise MulsenError(f"{category}/test/{defect_type}: a defect sample needs ground truth in at least "
                              "one modality (a sample with no visible defect belongs in test/good)")
        if content.infrared.ndim != 2:
            raise MulsenError("infrared image must be a 2-D gray array")
        key = SampleKey(category, split, defect_type, self._next_stem(category, split, defect_type))
        self._skeleton(key)
        mesh = stable_mesh(content.mesh)
        written: list[Path] = []

        def target(path: Path) -> Path:
            if path.exists():
                raise FileExistsError(f"{path}: already exists, refusing to overwrite")
            written.append(path)
            return path

        try:
            write_rgb(target(layout.sample_path(self.root, key, "rgb")), content.rgb)
            write_ir(target(layout.sample_path(self.root, key, "infrared")), content.infrared)
            write_stl(target(layout.sample_path(self.root, key, "pointcloud")), mesh)
            if labels.rgb:
                rgb_mask = self._check_mask(content.rgb_mask, content.rgb.shape[:2], "rgb")
                write_mask(target(layout.gt_path(self.root, key, "rgb")), rgb_mask)
            if labels.infrared:
                ir_mask = self._check_mask(content.ir_mask, content.infrared.shape[:2], "infrared")
                write_mask(target(layout.gt_path(self.root, key, "infrared")), ir_mask)
            if labels.pointcloud:
                points = self._snap_points(mesh.vertices, content.pc_anomalous_points, key)
                write_pc_gt(target(layout.gt_path(self.root, key, "pointcloud")), points)
            if split is Split.TEST:
                self._add_csv_row(key, labels)
        except BaseException:
            for path in written:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            raise
        if content.provenance:
            self.log_provenance(key, content.provenance)
        return key

    @staticmethod
    def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...], modality: str) -> np.ndarray:
        if mask is None or tuple(mask.shape) != tuple(shape):
            got = None if mask is None else tuple(mask.shape)
            raise MulsenError(f"{modality} mask shape {got} differs from its image {tuple(shape)}")
        return mask

    def _snap_points(self, vertices: np.ndarray, points: np.ndarray | None, key: SampleKey) -> np.ndarray:
        """GT rows are the mesh vertices themselves, so they match exactly after the float32 round trip."""
        if points is None:
            raise MulsenError(f"{key}: labelled anomalous in the point cloud without anomalous points")
        index, dist = match_points_to_vertices(vertices, points)
        if np.any(dist > self.point_tolerance):
            raise DataFormatError(str(key), f"{int((dist > self.point_tolerance).sum())} anomalous points lie "
                                  f"farther than {self.point_tolerance} mm from the mesh")
        return vertices[np.unique(index)]

    def replace_ground_truth(self, key: SampleKey, content: SampleContent, vertices: np.ndarray) -> bool:
        """Rewrite a built defect sample's ground truth in place (same stem, same folders) from corrected
        annotations; ``vertices`` are the sample's mesh as written. Returns whether anything changed."""
        labels = content.labels
        if key.split is not Split.TEST or key.defect_type == GOOD or not labels.label_or:
            raise MulsenError(f"{key}: only a defect sample's ground truth can be replaced, and it must keep some")
        new: dict[str, np.ndarray | None] = {
            "rgb": self._check_mask(content.rgb_mask, content.rgb.shape[:2], "rgb") if labels.rgb else None,
            "infrared": self._check_mask(content.ir_mask, content.infrared.shape[:2], "infrared")
            if labels.infrared else None,
            "pointcloud": self._snap_points(vertices, content.pc_anomalous_points, key) if labels.pointcloud
            else None,
        }
        changed = False
        for m, value in new.items():
            path = layout.gt_path(self.root, key, m)
            old = None if not path.exists() else (read_pc_gt(path) if m == "pointcloud" else read_mask(path))
            same = (old is None and value is None) or (
                old is not None and value is not None and old.shape == value.shape and np.array_equal(old, value))
            if same:
                continue
            changed = True
            if value is None:
                path.unlink()
            elif m == "pointcloud":
                write_pc_gt(path, value, overwrite=True)
            else:
                write_mask(path, value, overwrite=True)
        if changed:
            self._add_csv_row(key, labels)
        return changed

    def _skeleton(self, key: SampleKey) -> None:
        """Every folder the layout requires for this sample, in all three modalities: a defect seen in RGB
        only still has Infrared/GT and Pointcloud/GT folders, so the dataset validates as built."""
        for m in MODALITIES:
            mdir = self.root / key.category / MODALITY_DIRS[m]
            for sub in ("train", "test", "GT"):
                (mdir / sub).mkdir(parents=True, exist_ok=True)
            if key.split is Split.TEST:
                (mdir / "test" / key.defect_type).mkdir(exist_ok=True)
                if key.defect_type != GOOD:
                    (mdir / "GT" / key.defect_type).mkdir(exist_ok=True)

    def _add_csv_row(self, key: SampleKey, labels: ModalityLabels) -> None:
        path = layout.csv_path(self.root, key.category, key.defect_type)
        rows = parse_labels_csv(path).rows if path.exists() else {}
        rows[key.stem] = labels
        write_labels_csv(path, rows)

    def log_provenance(self, key: SampleKey, provenance: dict) -> None:
        """Append one entry for ``key`` to its category's provenance log (a line cut by a crash is replaced)."""
        path = self.root / PROVENANCE_DIR / f"{key.category}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"sample": str(key), **provenance}
        line = json.dumps(entry, sort_keys=True, default=_jsonable) + "\n"
        with open(path, "a+b") as handle:
            handle.seek(0)
            text = handle.read()
            if text and not text.endswith(b"\n"):  # an entry cut by an earlier crash: replaced, never continued
                start = text.rfind(b"\n") + 1
                handle.truncate(start)
                found = CUT_CAPTURE.search(text[start:].decode("utf-8", errors="replace"))
                if found:
                    line = json.dumps({"capture": found.group(1), "recovered": "entry cut by a crash"}) + "\n" + line
            handle.write(line.encode("utf-8"))  # one write: a crash cuts at most this line


def _jsonable(value: object) -> object:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def read_provenance(root: Path) -> tuple[list[dict], set[str]]:
    """Every entry of a dataset's provenance logs, in order, and the captures named by a last line that a crash
    cut mid-append (those count as built; ``log_provenance`` replaces the line before its next append). Any
    other line that is not a JSON object was edited by hand: an error naming the log and the line."""
    entries: list[dict] = []
    cut: set[str] = set()
    folder = root / PROVENANCE_DIR
    for log in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        text = read_input(log, "provenance log").decode("utf-8", errors="replace")
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
            except ValueError:
                if number == len(lines) and not text.endswith("\n"):
                    found = CUT_CAPTURE.search(line)  # its capture name comes first (sorted keys)
                    logger.warning("%s: last line is cut short (an interrupted build)%s", log,
                                   f"; {found.group(1)} counts as built" if found else "")
                    if found:
                        cut.add(found.group(1))
                    continue
                raise DataFormatError(log, f"line {number} is not a JSON object (edited by hand?)") from None
            entries.append(entry)
    return entries, cut
