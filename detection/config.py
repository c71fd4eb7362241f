"""The detector's parameters: modalities, combinations and ``DetectorConfig`` (validated on construction).

Every default is defined here once; the command line takes its defaults from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Any, Literal

import numpy as np

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
Preset = Literal["default", "paper"]
PRESETS: tuple[Preset, ...] = ("default", "paper")
CoresetMethod = Literal["fast", "paper"]
ObjectScore = Literal["topk", "paper"]
BankViews = Literal["own", "paper"]
MapProtocol = Literal["native", "paper"]
CHOICES = {"coreset": ("fast", "paper"), "object_score": ("topk", "paper"), "bank_views": ("own", "paper"),
           "map_protocol": ("native", "paper")}
Protocol = Literal["corrected", "paper"]  # how ``mulsen evaluate`` compares maps and computes AUPR
PROTOCOLS: tuple[Protocol, ...] = ("corrected", "paper")
UNCAPPED = 2 ** 31 - 1  # max_bank_size of the paper preset: the official code keeps 10 % whatever it comes to


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
    gate_fit: GateFit = "holdout"  # holdout | paper (in-sample, on raw scores, as the original code)
    # gate inputs multiplied per modality (rgb, infrared, pointcloud) before fitting and scoring: M3DM's DLF
    # used (0.1, 1, 1) (its rgb_s_lambda); MulSen-TripleAD's code feeds the scores unweighted
    gate_lambda: tuple[float, float, float] = (1.0, 1.0, 1.0)
    false_alarm_rate: float = 0.05
    seed: int = 0
    image: ImageFeatureConfig = field(default_factory=ImageFeatureConfig)
    # IR's own extractor (None: the same as RGB). The handcrafted descriptors are the default for both (raw
    # pixel blocks did slightly better on upright parts but fall apart when parts turn), IR with specular
    # glints filtered out first, its gain drift divided out and its descriptors log-compressed (bench/README.md).
    infrared: ImageFeatureConfig | None = field(default_factory=lambda: ImageFeatureConfig(
        glint_filter=0.03, gain_percentile=99.0, compress="log"))
    points: PointFeatureConfig = field(default_factory=PointFeatureConfig)
    # -- the paper's computation, item by item (``paper_config`` sets them all; README: deviations) --------
    preset: Preset = "default"  # what the settings came from (provenance; the fields below decide)
    # fast: Gaussian projection to coreset_projection_dim, seeded start, two rounds; paper: sklearn's
    # SparseRandomProjection (eps 0.9), start at row 0, int(ratio x rows), one round over every patch
    coreset: CoresetMethod = "fast"
    # topk: mean of the k largest patch scores; paper: the largest, times PatchCore's reweighting (3 neighbours)
    object_score: ObjectScore = "topk"
    # own: one bank per modality serves every combination; paper: each combination scores as the official
    # code's separate method (Triple: RGB/IR banks of int(ratio x PC bank) entries, every bank scaled by the
    # RGB bank's std; PC+RGB by std(RGB); PC+IR and RGB+IR by std(IR))
    bank_views: BankViews = "own"
    # native: maps bilinear to the image size, float blur sigma 4 px there; paper: 224 x 224 (bilinear,
    # align_corners), blurred as M3DM's KNNGaussianBlur (8-bit quantised, PIL radius 4)
    map_protocol: MapProtocol = "native"

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
        if not 0 <= self.holdout_fraction < 1:
            raise ConfigError(f"hold-out fraction must be in [0, 1) (0: every normal in the banks, calibration on "
                              f"their in-sample scores), got {self.holdout_fraction:g}")
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
        if len(self.gate_lambda) != 3 or not all(np.isfinite(v) and v > 0 for v in self.gate_lambda):
            raise ConfigError(f"gate lambdas must be three positive numbers (RGB, IR, PC), got {self.gate_lambda}")
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r} (use {', '.join(PRESETS)})")
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ConfigError(f"unknown {name.replace('_', ' ')} {value!r} (use {', '.join(choices)})")
        scalar = all(self.extractor(m).normalisation == "scalar" for m in self.modalities)
        if self.bank_views == "paper" and (self.coreset != "paper" or not scalar or self.bank_tolerance):
            # a view is a prefix of a greedy order from row 0 under one scalar scale: only then is the Triple's
            # smaller coreset the first entries of the larger one, and a std swap one factor on every distance
            raise ConfigError("paper bank views need the paper coreset, scalar normalisation and no bank tolerances")

    def column(self, modality: str, combo: tuple[str, ...]) -> str:
        """The score column a modality contributes to a combination: its own score, or with paper bank views
        the score of the official code's method for that combination (``"rgb@Triple"``)."""
        if self.bank_views == "own" or len(combo) == 1:
            return modality
        canonical = next((c for c in all_combinations() if set(c) == set(combo)), combo)  # "PC+RGB" in any order
        return f"{modality}@{combo_name(canonical)}"

    @property
    def score_columns(self) -> tuple[str, ...]:
        """Columns of the calibration scores: each modality's own score, then the paper views' columns."""
        views = [self.column(m, c) for c in all_combinations(self.modalities) if len(c) > 1 for m in c]
        return self.modalities + tuple(v for v in views if v not in self.modalities)

    @property
    def process_safe(self) -> bool:
        """Whether extraction may run in forked worker processes: not with torch networks (a forked torch
        can deadlock in its thread pool, CUDA does not survive a fork, and torch uses the cores itself)."""
        return all(self.extractor(m).backbone in ("handcrafted", "raw_patches", "fpfh") for m in self.modalities)

    def runner(self, workers: int | Executor) -> Executor:
        """``workers`` (a process count or an executor) as the executor this configuration may use: a local
        pool becomes in-process work when torch networks extract (``process_safe``); Ray tasks stay."""
        run = as_executor(workers)
        if not self.process_safe and isinstance(run, LocalPool):
            return InProcess()
        if isinstance(run, LocalPool) and "pointcloud" in self.modalities and self.points.backbone == "fpfh":
            # forked workers inherit what this process has imported: open3d once here (0.65 s) rather than
            # in every worker of every pool (train --all forks a pool per category and step)
            try:
                import open3d  # noqa: F401
            except ImportError:  # the optional geometry extra: point_features says what is missing
                pass
        return run

    def extractor(self, modality: str) -> ImageFeatureConfig | PointFeatureConfig:
        if modality == "rgb":
            return self.image
        if modality == "infrared":
            return self.infrared or self.image
        return self.points


def paper_config(image_weights: str | None = None, point_weights: str | None = None, device: str = "cpu",
                 **fields: Any) -> DetectorConfig:
    """MulSen-TripleAD as the official code computes it (``../shared/docs/tripleAD-reference.md``): DINO ViT-B/8
    for RGB and IR (one shared network), Point-MAE in train mode on the centred cloud in its own units, banks
    from every training normal, the paper coreset, scalar bank normalisation, reweighted max scores, per-method
    banks, maps at 224 x 224 and the gate fitted in-sample on raw scores. ``fields`` override any setting
    (e.g. weight-free backbones: the paper's computation around other features)."""
    points = PointFeatureConfig(backbone="point_mae", weights=point_weights, device=device, frame="centred",
                                train_mode=True, smoothing_neighbours=1, normalisation="scalar")
    base = DetectorConfig(
        image=ImageFeatureConfig(backbone="vit_base_patch8_224.dino", weights=image_weights, device=device,
                                 normalisation="scalar"),
        infrared=None, points=points, coreset_ratio=0.1, max_bank_size=UNCAPPED, holdout_fraction=0.0,
        bank_tolerance=False, image_topk=1, point_topk=1, fusion="gate", gate_fit="paper", preset="paper",
        coreset="paper", object_score="paper", bank_views="paper", map_protocol="paper")
    return replace(base, **fields)
