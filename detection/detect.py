"""Inspecting one part: the ``Detection`` a model returns, its JSON report, capture folders and overlays."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mulsen.core.errors import MulsenError
from mulsen.core.records import Record
from mulsen.dataset.records import SampleData

CAPTURE_FILES = ("rgb.png", "infrared.png", "pointcloud.stl")


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

    @property
    def anomalous(self) -> bool:
        return self.fused > self.threshold

    @property
    def decision(self) -> str:
        return "anomalous" if self.anomalous else "normal"

    def report(self, files: dict[str, str] | None = None) -> DetectionReport:
        return DetectionReport(self.sample, self.category, self.modalities, self.scores, self.normalised, self.fused,
                               self.fusion, self.threshold, self.false_alarm_rate, self.decision, files or {})


@dataclass(frozen=True)
class DetectionReport(Record):
    """``<name>.json`` written by ``mulsen detect``."""

    FORMAT = "mulsen-detection"
    VERSION = 1
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
    overlays: dict[str, str] = field(default_factory=dict)  # modality -> overlay PNG


def load_capture(folder: Path) -> SampleData:
    """A capture folder (rgb.png, infrared.png, pointcloud.stl) -> SampleData without ground truth."""
    from mulsen.dataset.formats import read_ir, read_rgb
    from mulsen.dataset.meshio import read_stl
    from mulsen.dataset.records import ModalityLabels, SampleKey, SampleRecord, Split

    paths = {name: folder / name for name in CAPTURE_FILES}
    if not folder.is_dir():
        raise MulsenError(f"{folder}: capture folder not found")
    missing = [n for n, p in paths.items() if not (p.exists() or p.is_symlink())]  # the readers judge the rest
    if missing:
        raise MulsenError(f"{folder}: capture folder lacks {', '.join(missing)}")
    rgb, ir, mesh = read_rgb(paths["rgb.png"]), read_ir(paths["infrared.png"]), read_stl(paths["pointcloud.stl"])
    record = SampleRecord(SampleKey("capture", Split.TEST, "unknown", 0), paths["rgb.png"], paths["infrared.png"],
                          paths["pointcloud.stl"], ModalityLabels())
    return SampleData(record, rgb, ir, mesh, np.zeros(rgb.shape[:2], bool), np.zeros(ir.shape, bool),
                      np.zeros(len(mesh.vertices), bool))


def overlay(image: np.ndarray, anomaly_map: np.ndarray, threshold: float) -> np.ndarray:
    """Red overlay of map values above ``threshold`` (scaled) on the image."""
    base = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    level = np.clip(anomaly_map / max(threshold, 1e-9) - 1, 0, 1)[..., None]
    red = np.array([255, 0, 0], np.float32)
    return np.round(base * (1 - 0.6 * level) + red * 0.6 * level).astype(np.uint8)
