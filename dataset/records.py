"""Typed records of the MulSen-AD data contract (see shared/docs/mulsen-ad-format.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

MODALITIES: tuple[str, ...] = ("rgb", "infrared", "pointcloud")
MODALITY_DIRS: dict[str, str] = {"rgb": "RGB", "infrared": "Infrared", "pointcloud": "Pointcloud"}
SAMPLE_EXT: dict[str, str] = {"rgb": ".png", "infrared": ".png", "pointcloud": ".stl"}
GT_EXT: dict[str, str] = {"rgb": ".png", "infrared": ".png", "pointcloud": ".txt"}
CSV_HEADER: tuple[str, ...] = ("object", "RGB", "infrared", "pointcloud")
GOOD = "good"
RGB_SIZE = (1280, 960)  # (width, height) of the published RGB images
IR_SIZE = (640, 480)

# Official category order (mulsen_classes()).
MULSEN_CATEGORIES: tuple[str, ...] = (
    "capsule", "cotton", "cube", "spring_pad", "screw", "screen", "piggy", "nut",
    "flat_pad", "plastic_cylinder", "zipper", "button_cell", "toothbrush", "solar_panel", "light",
)


class Split(str, Enum):
    TRAIN = "train"
    TEST = "test"


class LabelRule(str, Enum):
    """Which labels make a test sample anomalous."""

    MULTI_SENSOR = "or"  # RGB or infrared or pointcloud (MulSen-AD setting)
    SINGLE_3D = "pc"  # pointcloud label only (dataset_3D.py setting)


@dataclass(frozen=True, order=True)
class SampleKey:
    """Identity of one sample: (category, split, defect type, stem). Train samples have defect type ``good``."""

    category: str
    split: Split
    defect_type: str
    stem: int

    def __str__(self) -> str:
        if self.split is Split.TRAIN:
            return f"{self.category}/train/{self.stem}"
        return f"{self.category}/test/{self.defect_type}/{self.stem}"


@dataclass(frozen=True)
class ModalityLabels:
    """Per-modality labels: 1 means the defect is visible and annotated in that modality."""

    rgb: int = 0
    infrared: int = 0
    pointcloud: int = 0

    def __post_init__(self) -> None:
        for name in MODALITIES:
            if getattr(self, name) not in (0, 1):
                raise ValueError(f"label {name} must be 0 or 1, got {getattr(self, name)!r}")

    @property
    def label_or(self) -> int:
        return int(self.rgb or self.infrared or self.pointcloud)

    @property
    def label_pc(self) -> int:
        return self.pointcloud

    def object_label(self, rule: LabelRule = LabelRule.MULTI_SENSOR) -> int:
        return self.label_or if rule is LabelRule.MULTI_SENSOR else self.label_pc

    def of(self, modality: str) -> int:
        return int(getattr(self, modality))

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.rgb, self.infrared, self.pointcloud)


@dataclass(frozen=True)
class SampleRecord:
    """Where one sample's files live and what its labels are. GT paths are ``None`` when absent."""

    key: SampleKey
    rgb_path: Path
    ir_path: Path
    pc_path: Path
    labels: ModalityLabels
    rgb_gt: Path | None = None
    ir_gt: Path | None = None
    pc_gt: Path | None = None

    def path_of(self, modality: str) -> Path:
        return {"rgb": self.rgb_path, "infrared": self.ir_path, "pointcloud": self.pc_path}[modality]

    def gt_of(self, modality: str) -> Path | None:
        return {"rgb": self.rgb_gt, "infrared": self.ir_gt, "pointcloud": self.pc_gt}[modality]


@dataclass
class Mesh:
    """A triangle mesh in scanner millimetres; vertices are unique (dedup order = file order)."""

    vertices: np.ndarray  # (N, 3) float64
    faces: np.ndarray  # (F, 3) int64

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float64).reshape(-1, 3)
        self.faces = np.asarray(self.faces, dtype=np.int64).reshape(-1, 3)


@dataclass
class SampleData:
    """The loaded content of one sample: images, mesh, per-modality ground truth (never merged)."""

    record: SampleRecord
    rgb: np.ndarray  # (H, W, 3) uint8
    infrared: np.ndarray  # (H, W) uint8 gray
    mesh: Mesh
    rgb_mask: np.ndarray  # (H, W) bool, all False unless the RGB label is 1
    ir_mask: np.ndarray  # (H, W) bool
    pc_mask: np.ndarray  # (N,) bool over deduplicated vertices


@dataclass
class SampleContent:
    """What the writer needs to write one sample. Masks/points are ``None`` for an unlabelled modality."""

    rgb: np.ndarray
    infrared: np.ndarray
    mesh: Mesh
    rgb_mask: np.ndarray | None = None
    ir_mask: np.ndarray | None = None
    pc_anomalous_points: np.ndarray | None = None  # (K, 3) scanner-frame mm
    provenance: dict = field(default_factory=dict)

    @property
    def labels(self) -> ModalityLabels:
        def present(mask: np.ndarray | None) -> int:
            return int(mask is not None and bool(np.any(mask)))

        return ModalityLabels(present(self.rgb_mask), present(self.ir_mask), present(self.pc_anomalous_points))
