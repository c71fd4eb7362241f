"""Inspecting one part: the ``Detection`` a model returns, its JSON report, capture folders and overlays."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mulsen.core.errors import MulsenError
from mulsen.core.records import Record
from mulsen.dataset.records import SampleData

CAPTURE_FILES = ("rgb.png", "infrared.png", "pointcloud.stl")
# how far an input may stray from the training data before its verdict is flagged unreliable
VERTEX_FACTOR = 2.0  # vertex count within [min / 2, max * 2] of the training meshes
RADIUS_TOLERANCE = 0.25  # part radius (RMS, mm) within 25 % of the training range
# a map whose lower quartile (its background: a defect raises the peak, even a large one rarely three
# quarters of the map) lies this many held-out standard deviations above the normals' and at least twice
# as high: the whole input differs from the training data
BACKGROUND_QUANTILE = 0.25
FAR_BACKGROUND_Z = 10.0
FAR_BACKGROUND_RATIO = 2.0


@dataclass(frozen=True)
class SampleShape:
    """What one sample looks like to the detector: image sizes, mesh size and part radius (RMS, mm)."""

    rgb_size: tuple[int, int]  # height, width
    ir_size: tuple[int, int]
    vertices: int
    radius_mm: float

    @classmethod
    def of(cls, data: SampleData) -> SampleShape:
        vertices = np.asarray(data.mesh.vertices, float)
        centred = vertices - vertices.mean(axis=0) if len(vertices) else vertices
        radius = float(np.sqrt((centred ** 2).sum(axis=1).mean())) if len(vertices) else 0.0
        return cls((int(data.rgb.shape[0]), int(data.rgb.shape[1])),
                   (int(data.infrared.shape[0]), int(data.infrared.shape[1])), len(vertices), radius)


@dataclass(frozen=True)
class InputProfile:
    """The range of inputs a model was trained on (``model.json``), to flag inputs unlike them."""

    rgb_sizes: tuple[tuple[int, int], ...]
    ir_sizes: tuple[tuple[int, int], ...]
    vertices: tuple[int, int]  # min, max
    radius_mm: tuple[float, float]  # min, max
    # per modality: mean and standard deviation of the held-out normals' background patch score
    background: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def of(cls, shapes: list[SampleShape], background: dict[str, tuple[float, float]] | None = None
           ) -> InputProfile:
        if not shapes:
            raise MulsenError("no training samples to profile")
        return cls(tuple(sorted({s.rgb_size for s in shapes})), tuple(sorted({s.ir_size for s in shapes})),
                   (min(s.vertices for s in shapes), max(s.vertices for s in shapes)),
                   (round(min(s.radius_mm for s in shapes), 4), round(max(s.radius_mm for s in shapes), 4)),
                   dict(background or {}))

    def warnings(self, shape: SampleShape, modalities: tuple[str, ...],
                 maps: dict[str, np.ndarray] | None = None) -> list[str]:
        """One line per way the sample differs from every training sample."""
        out = []
        for m, amap in (maps or {}).items():
            if m not in self.background or not amap.size:
                continue
            mean, std = self.background[m]
            level = float(np.quantile(amap, BACKGROUND_QUANTILE))
            if level > mean + FAR_BACKGROUND_Z * max(std, 1e-9) and level > FAR_BACKGROUND_RATIO * mean:
                out.append(f"the whole {m} anomaly map is raised ({level:.3g} against {mean:.3g} on normals): "
                           "input unlike the training data")
        if "rgb" in modalities and shape.rgb_size not in self.rgb_sizes:
            out.append(f"RGB image is {_size(shape.rgb_size)}, the model was trained on {_sizes(self.rgb_sizes)}")
        if "infrared" in modalities and shape.ir_size not in self.ir_sizes:
            out.append(f"IR image is {_size(shape.ir_size)}, the model was trained on {_sizes(self.ir_sizes)}")
        if "pointcloud" in modalities:
            low, high = self.vertices
            if not low / VERTEX_FACTOR <= shape.vertices <= high * VERTEX_FACTOR:
                out.append(f"mesh has {shape.vertices} vertices, the training meshes {low}-{high}")
            low_r, high_r = self.radius_mm
            if not low_r * (1 - RADIUS_TOLERANCE) <= shape.radius_mm <= high_r * (1 + RADIUS_TOLERANCE):
                out.append(f"part radius {shape.radius_mm:.3g} mm, the training parts {low_r:.3g}-{high_r:.3g} mm "
                           "(another part, or another length unit?)")
        return out


def _size(size: tuple[int, int]) -> str:
    return f"{size[1]}x{size[0]}"


def _sizes(sizes: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(_size(s) for s in sizes)


@dataclass(frozen=True)
class Detection:
    """A model's verdict on one sample."""

    sample: str
    category: str
    modalities: tuple[str, ...]
    scores: dict[str, float]  # raw object score per modality
    normalised: dict[str, float]  # z-scores against the held-out normals
    fused: float
    fusion: str
    threshold: float
    false_alarm_rate: float
    maps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # anomaly maps: pixels or vertices
    warnings: tuple[str, ...] = ()  # why the verdict may not be trusted (input unlike the training data)

    @property
    def reliable(self) -> bool:
        return not self.warnings

    @property
    def anomalous(self) -> bool:
        return self.fused > self.threshold

    @property
    def decision(self) -> str:
        return "anomalous" if self.anomalous else "normal"

    def report(self, files: dict[str, str] | None = None, model: ModelIdentity | None = None) -> DetectionReport:
        return DetectionReport(self.sample, self.category, self.modalities, self.scores, self.normalised, self.fused,
                               self.fusion, self.threshold, self.false_alarm_rate, self.decision, files or {},
                               self.reliable, self.warnings, model)


@dataclass(frozen=True)
class ModelIdentity:
    """Which model judged: its folder, category, arrays hash and the toolkit that trained it."""

    folder: str
    category: str
    arrays_sha256: str
    toolkit_version: str


@dataclass(frozen=True)
class DetectionReport(Record):
    """``<name>.json`` written by ``mulsen detect``."""

    FORMAT = "mulsen-detection"
    VERSION = 2  # 2: reliability, warnings and the model's identity
    WHAT = "detection report"

    sample: str
    category: str
    modalities: tuple[str, ...]
    scores: dict[str, float]
    normalised: dict[str, float]
    fused: float
    fusion: str
    threshold: float
    false_alarm_rate: float
    decision: str
    files: dict[str, str] = field(default_factory=dict)  # modality -> overlay PNG or per-vertex score PLY
    reliable: bool = True
    warnings: tuple[str, ...] = ()
    model: ModelIdentity | None = None


def capture_category(folder: Path) -> str | None:
    """The category a capture folder's ``capture.json`` names (None for a folder without one)."""
    from mulsen.dataset.captures import CAPTURE_FILE, CaptureRecord

    path = folder / CAPTURE_FILE
    return CaptureRecord.read(path).request.category if path.exists() else None


def load_capture(folder: Path, merge: bool = True) -> SampleData:
    """A capture folder (rgb.png, infrared.png, pointcloud.stl) -> SampleData without ground truth; a capture
    with only its two scans is merged first (``merge``)."""
    from mulsen.dataset.build import MERGED_CLOUD_NAME, merge_capture, read_merged_cloud
    from mulsen.dataset.formats import read_ir, read_rgb
    from mulsen.dataset.meshio import read_stl
    from mulsen.dataset.records import ModalityLabels, SampleKey, SampleRecord, Split

    paths = {name: folder / name for name in CAPTURE_FILES}
    if not folder.is_dir():
        raise MulsenError(f"{folder}: capture folder not found")
    cloud = folder / MERGED_CLOUD_NAME  # in place of pointcloud.stl when the scans were point clouds
    if merge and not paths["pointcloud.stl"].exists() and not cloud.exists() and any(folder.glob("scan_a.*")):
        merge_capture(folder)  # a fresh capture: the same aligner and gates as 'mulsen dataset merge'
    if not paths["pointcloud.stl"].exists() and cloud.exists():
        paths["pointcloud.stl"] = cloud
    missing = [n for n, p in paths.items() if not (p.exists() or p.is_symlink())]  # the readers judge the rest
    if missing:
        hint = " (merge its scan_a/scan_b with 'mulsen dataset merge')" if missing == ["pointcloud.stl"] else ""
        raise MulsenError(f"{folder}: capture folder lacks {', '.join(missing)}{hint}")
    rgb, ir = read_rgb(paths["rgb.png"]), read_ir(paths["infrared.png"])
    mesh = read_merged_cloud(cloud) if paths["pointcloud.stl"] == cloud else read_stl(paths["pointcloud.stl"])
    record = SampleRecord(SampleKey("capture", Split.TEST, "unknown", 0), paths["rgb.png"], paths["infrared.png"],
                          paths["pointcloud.stl"], ModalityLabels())
    return SampleData(record, rgb, ir, mesh, np.zeros(rgb.shape[:2], bool), np.zeros(ir.shape, bool),
                      np.zeros(len(mesh.vertices), bool))


def overlay(image: np.ndarray, anomaly_map: np.ndarray, threshold: float) -> np.ndarray:
    """Red overlay of map values above ``threshold`` (scaled) on the image."""
    base = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    if anomaly_map.shape != base.shape[:2]:  # the paper protocol's 224 x 224 maps
        from PIL import Image

        anomaly_map = np.asarray(Image.fromarray(anomaly_map.astype(np.float32), mode="F").resize(
            (base.shape[1], base.shape[0]), Image.Resampling.BILINEAR))
    level = np.clip(anomaly_map / max(threshold, 1e-9) - 1, 0, 1)[..., None]
    red = np.array([255, 0, 0], np.float32)
    return np.round(base * (1 - 0.6 * level) + red * 0.6 * level).astype(np.uint8)
