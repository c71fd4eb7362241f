"""The detector's parameters: modalities, combinations and ``DetectorConfig`` (validated on construction).

Every default is defined here once; the command line takes its defaults from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Literal

from mulsen.core.errors import ConfigError, MulsenError
from mulsen.core.parallel import Executor, InProcess, LocalPool, as_executor

from .features import ImageFeatureConfig, PointFeatureConfig
from .memory_bank import DEFAULT_MAX_BANK_SIZE, DEFAULT_PROJECTION_DIM

MODALITY_KEYS = ("rgb", "infrared", "pointcloud")
SHORT = {"rgb": "RGB", "infrared": "IR", "pointcloud": "PC"}
Fusion = Literal["gate", "zmean", "max"]
GateFit = Literal["holdout", "paper"]
FUSIONS: tuple[Fusion, ...] = ("gate", "zmean", "max")
GATE_FITS: tuple[GateFit, ...] = ("holdout", "paper")


def parse_modalities(text: str) -> tuple[str, ...]:
    alias = {"rgb": "rgb", "ir": "infrared", "infrared": "infrared", "pc": "pointcloud", "pointcloud": "pointcloud"}
    try:
        chosen = {alias[t.strip().lower()] for t in text.split(",") if t.strip()}
    except KeyError as exc:
        raise MulsenError(f"unknown modality {exc.args[0]!r} (use rgb, ir, pc)") from None
    if not chosen:
        raise MulsenError("no modality given (use rgb, ir, pc)")
    return tuple(m for m in MODALITY_KEYS if m in chosen)


def all_combinations(modalities: tuple[str, ...] = MODALITY_KEYS) -> list[tuple[str, ...]]:
    """Single, dual and triple combinations in the order of the paper's Table 5."""
    order = [("rgb",), ("infrared",), ("pointcloud",), ("pointcloud", "rgb"), ("pointcloud", "infrared"),
             ("rgb", "infrared"), ("rgb", "infrared", "pointcloud")]
    present = set(modalities)
    return [c for c in order if set(c) <= present] or [tuple(c) for r in (1, 2, 3) for c in combinations(modalities, r)]


def combo_name(combo: tuple[str, ...]) -> str:
    return "Triple" if len(combo) == 3 else "+".join(SHORT[m] for m in combo)


@dataclass(frozen=True)
class DetectorConfig:
    modalities: tuple[str, ...] = MODALITY_KEYS
    coreset_ratio: float = 0.1  # share of the normals' patches kept in each bank, capped at max_bank_size
    max_bank_size: int = DEFAULT_MAX_BANK_SIZE
    # Coreset selection runs on randomly projected features: each greedy step streams all N candidates
    # through memory, so fewer dimensions means proportionally faster selection (the bank keeps full ones).
    coreset_projection_dim: int = DEFAULT_PROJECTION_DIM
    # each bank entry scores relative to how far other samples' normal patches lie from it (memory_bank)
    bank_tolerance: bool = True
    holdout_fraction: float = 0.2
    min_holdout: int = 3
    image_topk: int = 1  # object score = mean of the k largest patch scores (1 = PatchCore max)
    point_topk: int = 10
    fusion: Fusion = "zmean"
    gate_fit: GateFit = "holdout"  # holdout | paper (in-sample, as the original code)
    false_alarm_rate: float = 0.05
    seed: int = 0
    image: ImageFeatureConfig = field(default_factory=ImageFeatureConfig)
    # IR's own extractor (None: the same as RGB). The handcrafted descriptors are the default for both (raw
    # pixel blocks did slightly better on upright parts but fall apart when parts turn), IR with specular
    # glints filtered out first, its gain drift divided out and its descriptors log-compressed (bench/README.md).
    infrared: ImageFeatureConfig | None = field(default_factory=lambda: ImageFeatureConfig(
        glint_filter=0.03, gain_percentile=99.0, compress="log"))
    points: PointFeatureConfig = field(default_factory=PointFeatureConfig)

    def __post_init__(self) -> None:
        if not self.modalities or not set(self.modalities) <= set(MODALITY_KEYS) \
                or len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"modalities {self.modalities} must be distinct ones of {', '.join(MODALITY_KEYS)}")
        if not 0 < self.coreset_ratio <= 1:
            raise ConfigError(f"coreset ratio must be in (0, 1], got {self.coreset_ratio:g}")
        if self.max_bank_size < 1:
            raise ConfigError(f"maximum bank size must be at least 1, got {self.max_bank_size}")
        if self.coreset_projection_dim < 0:
            raise ConfigError(f"coreset projection dimension must be >= 0 (0: none), got {self.coreset_projection_dim}")
        if not 0 < self.holdout_fraction < 1:
            raise ConfigError(f"hold-out fraction must be in (0, 1), got {self.holdout_fraction:g}")
        if self.min_holdout < 2:
            raise ConfigError(f"at least 2 held-out normals are needed to normalise scores, got {self.min_holdout}")
        if self.image_topk < 1 or self.point_topk < 1:
            raise ConfigError("top-k object scores need k >= 1")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion {self.fusion!r} (use {', '.join(FUSIONS)})")
        if self.gate_fit not in GATE_FITS:
            raise ConfigError(f"unknown gate fit {self.gate_fit!r} (use {', '.join(GATE_FITS)})")
        if not 0 < self.false_alarm_rate < 1:
            raise ConfigError(f"false-alarm rate must be in (0, 1), got {self.false_alarm_rate:g}")

    @property
    def process_safe(self) -> bool:
        """Whether extraction may run in forked worker processes: not with torch networks (a forked torch
        can deadlock in its thread pool, CUDA does not survive a fork, and torch uses the cores itself)."""
        return all(self.extractor(m).backbone in ("handcrafted", "raw_patches", "fpfh") for m in self.modalities)

    def runner(self, workers: int | Executor) -> Executor:
        """``workers`` (a process count or an executor) as the executor this configuration may use: a local
        pool becomes in-process work when torch networks extract (``process_safe``); Ray tasks stay."""
        run = as_executor(workers)
        return InProcess() if not self.process_safe and isinstance(run, LocalPool) else run

    def extractor(self, modality: str) -> ImageFeatureConfig | PointFeatureConfig:
        if modality == "rgb":
            return self.image
        if modality == "infrared":
            return self.infrared or self.image
        return self.points
