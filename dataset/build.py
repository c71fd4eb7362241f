"""Turn capture folders + curator annotations into a MulSen-AD dataset, incrementally.

Inputs:
- ``CAPTURES/<category>/<sample_id>/`` from ``mulsen capture``: ``rgb.png``, ``infrared.png``, ``scan_a.*``,
  ``scan_b.*`` (and ``pointcloud.stl`` + ``alignment.json`` once merged);
- ``ANNOTATIONS/<category>/<sample_id>/`` (absent for a part planned as normal): ``rgb.json`` /
  ``infrared.json`` (LabelMe, drawn only where the defect is visible in that modality), ``pointcloud.txt``
  (selected points of the merged mesh, ``# x, y, z`` + comma rows) and optionally ``sample.json``
  (``{"defect": TYPE}``, needed when only the point cloud is annotated; ``{"defect": "good"}`` declares a
  normal).

A modality is labelled 1 only if it has an annotation; the object label is their OR. A capture without
annotations is a normal only when it was captured as one (``CaptureRecord.intended``) or declared good.
Normal captures go to train or test/good by a stable hash of their id (``test_good_ratio``), so adding
captures never moves released samples; captures already in the dataset are skipped.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np

from mulsen.core.errors import DataFormatError, MulsenError
from mulsen.core.files import read_json
from mulsen.core.parallel import Executor, as_executor
from mulsen.core.records import Record

from . import layout
from .align import AlignmentGates, AlignmentResult, Candidate, align_scans, merge_scans
from .annotations import defect_mask, point_selection_labels, read_labelme
from .captures import CAPTURE_FILE, CaptureRecord
from .formats import read_ir, read_pc_gt, read_rgb
from .meshio import read_stl, stable_mesh, write_stl
from .records import GOOD, Mesh, SampleContent, SampleKey, Split
from .writer import DatasetWriter, read_provenance

logger = logging.getLogger(__name__)
MERGED_NAME = "pointcloud.stl"
MERGED_CLOUD_NAME = "pointcloud.ply"  # the merge of two point-cloud scans (no faces: not an STL)
ALIGNMENT_NAME = "alignment.json"


@dataclass(frozen=True)
class AlignmentRecord(Record):
    """``alignment.json`` beside a merged capture: how scan B was put onto scan A."""

    FORMAT = "mulsen-alignment"
    VERSION = 1
    WHAT = "alignment report"

    transform: tuple[tuple[float, ...], ...]  # 4x4, scan B -> scan A, scanner millimetres
    fitness: float
    inlier_rmse_mm: float
    overlap_ratio: float
    point_spacing_mm: float
    method: str
    candidates: tuple[Candidate, ...]
    scan_a: str
    scan_b: str
    merged: str
    merged_vertices: int
    source_units: str = "mm"  # the scans' unit as read ("m (...)": converted to millimetres, and why)

    @classmethod
    def of(cls, result: AlignmentResult, scan_a: str, scan_b: str, merged: Mesh,
           source_units: str = "mm", merged_name: str = MERGED_NAME) -> AlignmentRecord:
        return cls(tuple(map(tuple, np.round(result.transform, 9).tolist())), round(result.fitness, 5),
                   round(result.rmse, 6), round(result.overlap_ratio, 5), round(result.spacing, 5), result.method,
                   tuple(result.candidates), scan_a, scan_b, merged_name, len(merged.vertices), source_units)


SCAN_UNITS = ("auto", "mm", "m")
# Parts are 10-100 mm across: a scan whose largest extent is under this many units was exported in metres.
METRE_EXTENT = 2.0


def scan_units(scans: list[Mesh], units: str, where: Path) -> tuple[float, str]:
    """(factor to millimetres, what was decided) for a capture's scans: ``units`` m or mm as given, or auto
    from their extent (logged when it converts)."""
    if units not in SCAN_UNITS:
        raise MulsenError(f"unknown scan unit {units!r} (use {', '.join(SCAN_UNITS)})")
    if units != "auto":
        return (1000.0 if units == "m" else 1.0), units
    extent = max(float(np.ptp(m.vertices, axis=0).max()) for m in scans)
    if extent < METRE_EXTENT:
        logger.warning("%s: the scans are %.3g units across, too small for millimetres: read as metres "
                       "(--units mm to keep them as they are)", where, extent)
        return 1000.0, f"m (auto: {extent:.3g} units across)"
    return 1.0, "mm"


@dataclass(frozen=True)
class BuildConfig:
    test_good_ratio: float = 0.25
    point_tolerance_mm: float = 0.05  # a selected point must lie this close to a merged-mesh vertex
    gates: AlignmentGates = field(default_factory=AlignmentGates)
    units: str = "auto"  # the scans' unit: auto (from their extent), mm or m
    splits: dict[tuple[str, str], str] | None = None  # manifest policy: (category, sample_id) -> train|test


@dataclass
class BuildReport:
    added: dict[str, int] = field(default_factory=dict)  # "category/split/type" -> count
    skipped: int = 0
    samples: list[dict] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # "capture -> sample" whose ground truth was re-imported

    @property
    def total_added(self) -> int:
        return sum(self.added.values())


def find_scans(folder: Path) -> tuple[Path, Path]:
    found = {label: sorted(folder.glob(f"scan_{label}.*")) for label in ("a", "b")}
    if len(found["a"]) != 1 or len(found["b"]) != 1:
        raise DataFormatError(folder, "needs exactly one scan_a.* and one scan_b.* (the two passes of the part)")
    return found["a"][0], found["b"][0]


def merge_capture(folder: Path, gates: AlignmentGates | None = None, initial: np.ndarray | None = None,
                  units: str = "auto") -> Mesh:
    """The merged mesh of a capture, in millimetres: read ``pointcloud.stl`` if present, else align, merge and
    write it (``units``: the scans' unit, see ``scan_units``)."""
    from mulsen.dataset.scans import read_scan

    CaptureRecord.read(folder / CAPTURE_FILE)  # a capture whose record is cut or edited is not merged
    merged_path = folder / MERGED_NAME
    if merged_path.exists():
        return read_stl(merged_path)
    if (folder / MERGED_CLOUD_NAME).exists():
        return read_merged_cloud(folder / MERGED_CLOUD_NAME)
    path_a, path_b = find_scans(folder)
    read_a, read_b = read_scan(path_a), read_scan(path_b)
    no_faces = np.zeros((0, 3), np.int64)
    scan_a = read_a.mesh or Mesh(read_a.vertices, no_faces)
    scan_b = read_b.mesh or Mesh(read_b.vertices, no_faces)
    clouds = not len(scan_a.faces) or not len(scan_b.faces)
    factor, source_units = scan_units([scan_a, scan_b], units, folder)
    if factor != 1.0:
        scan_a, scan_b = Mesh(scan_a.vertices * factor, scan_a.faces), Mesh(scan_b.vertices * factor, scan_b.faces)
        if initial is not None:  # given in the scans' own unit
            initial = np.array(initial, float)
            initial[:3, 3] *= factor
    # point clouds: normals towards the scanner where the export says where it was (PCD VIEWPOINT), else outward
    views = (None if read_a.viewpoint is None else read_a.viewpoint * factor,
             None if read_b.viewpoint is None else read_b.viewpoint * factor)
    try:
        result = align_scans(scan_a, scan_b, gates, initial=initial, viewpoints=views if clouds else None)
    except MulsenError as exc:
        raise MulsenError(f"{folder}: {exc}") from None
    merged = merge_scans(scan_a, scan_b, result.transform, 1.5 * result.spacing)
    target = folder / (MERGED_CLOUD_NAME if clouds else MERGED_NAME)
    merged = merged if clouds else stable_mesh(merged)
    # the report first: the merged file is what marks a capture as merged
    AlignmentRecord.of(result, path_a.name, path_b.name, merged, source_units, target.name).write(
        folder / ALIGNMENT_NAME)
    if clouds:
        from mulsen.dataset.scans import write_scan

        write_scan(target, merged.vertices, None, "ply")
    else:
        write_stl(target, merged)
    return merged


def read_merged_cloud(path: Path) -> Mesh:
    """A merged point cloud (``pointcloud.ply``) as a mesh without faces."""
    from mulsen.dataset.scans import read_scan

    return Mesh(read_scan(path).vertices, np.zeros((0, 3), np.int64))


def capture_folders(root: Path) -> list[tuple[str, str, Path]]:
    if not root.is_dir():
        raise MulsenError(f"{root}: captures folder not found")
    out = []
    for category in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        for sample in sorted(p for p in category.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if (sample / CAPTURE_FILE).exists():
                out.append((category.name, sample.name, sample))
    return out


def load_annotations(folder: Path | None, rgb_shape: tuple[int, int], ir_shape: tuple[int, int],
                     mesh: Mesh, tolerance_mm: float) -> tuple[SampleContent, str, str | None]:
    """Masks and anomalous points of one capture from its annotation folder; returns (partial content, type,
    the type ``sample.json`` declares or None)."""
    rgb_mask = ir_mask = points = None
    labels: set[str] = set()
    declared_type = None
    if folder is not None and folder.is_dir():
        for name, shape in (("rgb.json", rgb_shape), ("infrared.json", ir_shape)):
            path = folder / name
            if not path.exists():
                continue
            document = read_labelme(path)
            # a file without imageHeight/imageWidth (2018-era, labelme 3.5) was drawn on the captured image
            declared = document.size(check_image=False) if document.image_size or document.image_data \
                else (int(shape[0]), int(shape[1]))
            if declared != tuple(shape):
                raise DataFormatError(path, f"annotated image is {declared[1]}x{declared[0]}, the captured one is "
                                            f"{shape[1]}x{shape[0]}")
            mask, found = defect_mask(document, declared)
            labels |= {defect_label(path, label) for label in found}
            if name == "rgb.json":
                rgb_mask = mask if mask.any() else None
            else:
                ir_mask = mask if mask.any() else None
        selection = folder / "pointcloud.txt"
        if selection.exists():
            selected = read_pc_gt(selection)
            flags = point_selection_labels(mesh.vertices, selected, tolerance_mm, selection)
            points = mesh.vertices[flags]
        extra = folder / "sample.json"
        if extra.exists():
            description = read_json(extra, "sample description")
            if not isinstance(description, dict) or set(description) - {"defect"}:
                raise DataFormatError(extra, 'a sample description is {"defect": TYPE}')
            declared_type = description.get("defect")
            if declared_type is not None and (not isinstance(declared_type, str) or not layout.DEFECT_FOLDER.fullmatch(
                    declared_type)):
                raise DataFormatError(extra, f"defect type must be a folder name like 'hole' or 'broken_inside', "
                                             f"got {declared_type!r}")
            if declared_type and declared_type != GOOD:
                labels.add(declared_type)
    content = SampleContent(np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.uint8), mesh, rgb_mask, ir_mask,
                            points)
    if declared_type == GOOD and content.labels.label_or:
        raise DataFormatError(folder or Path("annotations"), "sample.json says good, but the annotations mark a defect")
    if not content.labels.label_or:
        return content, GOOD, declared_type
    if len(labels) != 1:
        where = folder if folder is not None else "annotations"
        problem = "name different defect types " + ", ".join(sorted(labels)) if labels else \
            "do not name the defect type (add sample.json with {\"defect\": TYPE})"
        raise DataFormatError(where, f"the annotations {problem}")
    return content, labels.pop(), declared_type


def defect_label(path: Path, label: str) -> str:
    """An annotation's label as a defect folder name: case and surrounding whitespace folded, inner spaces and
    hyphens as underscores ('Crack ' -> 'crack', 'Broken inside' -> 'broken_inside'); anything else refused."""
    name = re.sub(r"[\s-]+", "_", label.strip().lower())
    if not layout.DEFECT_FOLDER.fullmatch(name):
        raise DataFormatError(path, f"label {label!r} is not a defect type name (letters, digits, underscores; "
                                    "e.g. 'crack', 'broken_inside')")
    return name


def _goes_to_test(category: str, sample_id: str, ratio: float) -> bool:
    digest = hashlib.sha256(f"{category}/{sample_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2 ** 32 < ratio


def already_built(out: Path) -> set[str]:
    """Captures (``category/sample_id``) recorded in the dataset's provenance logs."""
    entries, cut = read_provenance(out)
    return {e["capture"] for e in entries if isinstance(e.get("capture"), str) and e["capture"]} | cut


class BuildError(MulsenError):
    """Captures that cannot be built; ``problems`` has one line per capture, and nothing was written."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(problems)} problem(s), nothing added: {problems[0]}"
                         + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))

    def __reduce__(self):  # survive a trip from a worker process
        return type(self), (self.problems,)


@dataclass(frozen=True)
class _Planned:
    """A checked capture: where it goes and the ground truth its annotations gave (written as checked)."""

    category: str
    sample_id: str
    folder: Path
    defect_type: str
    split: Split
    rgb_mask: np.ndarray | None
    ir_mask: np.ndarray | None
    pc_anomalous_points: np.ndarray | None
    provenance: dict


def _intent_problem(capture: CaptureRecord, found: str, declared: str | None) -> str | None:
    """Why a capture's annotations disagree with what it was captured as (None: they agree). A capture with no
    annotations is a normal only when it was planned as one or ``sample.json`` says ``good``; ``sample.json``
    naming a type is the curator's decision and wins over the plan."""
    intended = capture.intended
    if declared is not None or intended == found:
        return None
    if found == GOOD:
        if intended is None:
            return ("no annotations, and nothing says it is a normal: plan it with expected=good (plan column "
                    "'expected', capture --expected good) or add annotations/<category>/<id>/sample.json "
                    '{"defect": "good"}')
        return f"planned as {intended} but has no annotations (annotate the defect, or sample.json to overrule)"
    if intended is not None:
        return f"planned as {intended} but annotated as {found} (fix the labels, or sample.json to overrule)"
    return None


def acquisition_summary(capture: CaptureRecord) -> dict[str, str]:
    """How a capture was taken, in a few comparable strings (the dataset card counts them): lock-in settings,
    the cameras' and the scanner's identities as the devices reported them."""
    out: dict[str, str] = {}
    lockin = capture.settings.get("lockin") or {}
    if lockin:
        out["lock-in"] = (f"{lockin.get('frequency_hz')} Hz, {lockin.get('periods')} periods + "
                          f"{lockin.get('settle_periods')} settling, {lockin.get('power_percent')} % heater power, "
                          f"{lockin.get('frame_rate_hz')} fps")
    for key, name in (("rgb_camera", "RGB camera"), ("ir_camera", "IR camera")):
        device = capture.devices.get(key)
        if isinstance(device, dict):
            size = device.get("settings", {}) if isinstance(device.get("settings"), dict) else {}
            out[name] = (f"{device.get('vendor', '?')} {device.get('model', '?')} (serial "
                         f"{device.get('serial_number', '?')}), {size.get('Width', '?')}x{size.get('Height', '?')} "
                         f"{device.get('pixel_format', '')}").rstrip()
    if capture.devices.get("heater"):
        out["heater"] = str(capture.devices["heater"])
    scans = capture.steps.scans
    if scans is not None:
        out["scanner"] = f"{scans.scan_a.format} exports, two passes (part turned over)"
    return out


def build_dataset(captures: Path, annotations: Path | None, out: Path, config: BuildConfig | None = None,
                  progress: Callable[[Iterable, int], Iterable] | None = None, update: bool = False,
                  jobs: int | Executor = 1) -> BuildReport:
    """Add every capture not yet in ``out`` to the dataset; return what was added.

    Every capture is checked first (merge, annotations, what it was planned as) and every problem is
    collected; with any problem nothing is added (``BuildError`` lists them all). Annotation folders that
    name no capture are problems too. ``update``: captures already built have their annotations read again
    and their ground truth rewritten in place where it changed (never renumbered; a change of defect type is
    a problem), recorded in the provenance log.
    """
    config = config or BuildConfig()
    done = already_built(out)
    found = capture_folders(captures)
    todo = [item for item in found if f"{item[0]}/{item[1]}" not in done]
    report = BuildReport(skipped=len(found) - len(todo))
    problems: list[str] = []
    if annotations is not None and annotations.is_dir():
        known = {f"{c}/{i}" for c, i, _ in found}
        for kind in sorted(p for p in annotations.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for sample in sorted(p for p in kind.iterdir() if p.is_dir() and not p.name.startswith(".")):
                if f"{kind.name}/{sample.name}" not in known:
                    problems.append(f"{sample}: annotations for a capture that does not exist "
                                    f"({kind.name}/{sample.name} is not under {captures})")
    planned: list[_Planned] = []
    # each capture checked (and merged) on its own worker: merging is the heavy part of a build
    for outcome in as_executor(jobs).map(partial(_plan_or_problem, annotations, config), todo, progress):
        if isinstance(outcome, str):
            problems.append(outcome)
        else:
            planned.append(outcome)
    updates = _plan_updates(out, [i for i in found if f"{i[0]}/{i[1]}" in done], annotations, config, problems) \
        if update else []
    if problems:
        raise BuildError(problems)
    writer = DatasetWriter(out)
    for capture_id, key, content in updates:
        if writer.replace_ground_truth(key, content, content.mesh.vertices):
            writer.log_provenance(key, {"capture": capture_id, "updated": datetime.now(timezone.utc).isoformat(
                timespec="seconds"), "reason": "annotations re-imported"})
            report.updated.append(f"{capture_id} -> {key}")
    for item in planned:  # images and the merged mesh read again, so that only one sample is in memory at a time
        folder = item.folder
        content = SampleContent(read_rgb(folder / "rgb.png"), read_ir(folder / "infrared.png"),
                                merge_capture(folder, config.gates, units=config.units), item.rgb_mask,
                                item.ir_mask, item.pc_anomalous_points, provenance=item.provenance)
        sample_key = writer.add(item.category, item.split, item.defect_type, content)
        bucket = f"{item.category}/{item.split.value}/{item.defect_type}"
        report.added[bucket] = report.added.get(bucket, 0) + 1
        report.samples.append({"capture": f"{item.category}/{item.sample_id}", "sample": str(sample_key),
                               "labels": asdict(content.labels)})
    return report


def _sample_key(text: str) -> SampleKey:
    parts = text.split("/")
    if len(parts) == 3 and parts[1] == "train":
        return SampleKey(parts[0], Split.TRAIN, GOOD, int(parts[2]))
    if len(parts) == 4 and parts[1] == "test":
        return SampleKey(parts[0], Split.TEST, parts[2], int(parts[3]))
    raise MulsenError(f"provenance names an unknown sample {text!r}")


def _plan_updates(out: Path, built: list[tuple[str, str, Path]], annotations: Path | None, config: BuildConfig,
                  problems: list[str]) -> list[tuple[str, SampleKey, SampleContent]]:
    """Corrected annotations of built captures, checked against the samples they became."""
    from .validate import captures_by_sample

    sample_of = {capture: sample for sample, capture in captures_by_sample(out).items()}
    updates = []
    for category, sample_id, _ in built:
        capture_id = f"{category}/{sample_id}"
        try:
            if capture_id not in sample_of:
                raise MulsenError("built, but no provenance entry names its sample")
            key = _sample_key(sample_of[capture_id])
            rgb = read_rgb(layout.sample_path(out, key, "rgb"))
            infrared = read_ir(layout.sample_path(out, key, "infrared"))
            mesh = read_stl(layout.sample_path(out, key, "pointcloud"))
            labelled, defect_type, _ = load_annotations(annotations / category / sample_id if annotations else None,
                                                        rgb.shape[:2], infrared.shape, mesh, config.point_tolerance_mm)
            if defect_type != key.defect_type:
                raise MulsenError(f"re-annotated as {defect_type}, but built as {key}: a sample does not move "
                                  "between folders (that would renumber a released sample); remove it and build "
                                  "again")
            if defect_type != GOOD:
                updates.append((capture_id, key, SampleContent(rgb, infrared, mesh, labelled.rgb_mask,
                                                               labelled.ir_mask, labelled.pc_anomalous_points)))
        except MulsenError as exc:
            problems.append(f"{capture_id}: {exc}")
    return updates


def _plan_or_problem(annotations: Path | None, config: BuildConfig, item: tuple[str, str, Path]
                     ) -> _Planned | str:
    category, sample_id, folder = item
    try:
        return _plan(category, sample_id, folder, annotations, config)
    except MulsenError as exc:
        text = str(exc)
        return text if text.startswith(str(folder)) else f"{category}/{sample_id}: {text}"


def _plan(category: str, sample_id: str, folder: Path, annotations: Path | None, config: BuildConfig) -> _Planned:
    """Everything about one capture that can fail, checked without writing into the dataset."""
    capture = CaptureRecord.read(folder / CAPTURE_FILE)
    rgb, infrared = read_rgb(folder / "rgb.png"), read_ir(folder / "infrared.png")
    mesh = merge_capture(folder, config.gates, units=config.units)
    if not len(mesh.faces):
        raise MulsenError(f"its scans are point clouds (merged into {MERGED_CLOUD_NAME}): the MulSen-AD layout "
                          "stores meshes (STL), so export meshes from the scanner software to build it into a "
                          "dataset ('mulsen detect' judges it as it is)")
    labelled, defect_type, declared = load_annotations(annotations / category / sample_id if annotations else None,
                                                       rgb.shape[:2], infrared.shape, mesh, config.point_tolerance_mm)
    problem = _intent_problem(capture, defect_type, declared)
    if problem:
        raise MulsenError(problem)
    if defect_type != GOOD:
        split = Split.TEST
    elif config.splits is not None:
        if (category, sample_id) not in config.splits:
            raise MulsenError("not listed in the splits manifest")
        split = Split(config.splits[(category, sample_id)])
    else:
        split = Split.TEST if _goes_to_test(category, sample_id, config.test_good_ratio) else Split.TRAIN
    policy = "manifest" if config.splits is not None else f"hash (test share of normals {config.test_good_ratio:g})"
    provenance = {"capture": f"{category}/{sample_id}", "captured": capture.finished, "operator": capture.operator,
                  "simulated_part": capture.simulated_part, "split_policy": policy,
                  "acquisition": acquisition_summary(capture)}
    return _Planned(category, sample_id, folder, defect_type, split, labelled.rgb_mask, labelled.ir_mask,
                    labelled.pc_anomalous_points, provenance)
