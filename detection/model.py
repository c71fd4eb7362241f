"""MulSen-TripleAD: one PatchCore memory bank per modality plus a decision gating unit.

The torch-free core works on arrays: features -> banks -> per-modality scores -> fusion. Scores are
normalised with statistics of *held-out* training normals (never the samples that built the banks);
the gate (``SGDOneClassSVM(nu=0.5, max_iter=1000, random_state=42)``, a learned linear weighting)
is fitted on those held-out scores, or in-sample with ``gate_fit="paper"`` as the original code does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from mulsen import __version__
from mulsen.core.atomic import atomic_path, atomic_write_text
from mulsen.core.errors import MulsenError
from mulsen.dataset.records import SampleData

from .features import ImageFeatureConfig, PointFeatureConfig, image_features, point_features, upsample_scores
from .memory_bank import MemoryBank

MODALITY_KEYS = ("rgb", "infrared", "pointcloud")
SHORT = {"rgb": "RGB", "infrared": "IR", "pointcloud": "PC"}
FORMAT_VERSION = 1
FUSIONS = ("gate", "zmean", "max")


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
    coreset_ratio: float = 0.1
    max_bank_size: int = 10000  # 4 % of 100 full-size normals' patches: scoring time is linear in it
    # Coreset selection runs on randomly projected features: each greedy step streams all N candidates
    # through memory, so fewer dimensions means proportionally faster selection (the bank keeps full ones).
    coreset_projection_dim: int = 16
    holdout_fraction: float = 0.2
    min_holdout: int = 3
    image_topk: int = 1  # object score = mean of the k largest patch scores (1 = PatchCore max)
    point_topk: int = 10
    fusion: str = "zmean"
    gate_fit: str = "holdout"  # holdout | paper (in-sample, as the original code)
    false_alarm_rate: float = 0.05
    seed: int = 0
    image: ImageFeatureConfig = field(default_factory=ImageFeatureConfig)
    # IR's own extractor (None: the same as RGB). Raw pixel blocks suit IR's smooth amplitude defects best
    # among the weight-free candidates (bench/README.md).
    infrared: ImageFeatureConfig | None = field(default_factory=lambda: ImageFeatureConfig(backbone="raw_patches"))
    points: PointFeatureConfig = field(default_factory=PointFeatureConfig)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> DetectorConfig:
        data = dict(data)
        data["modalities"] = tuple(data["modalities"])
        data["image"] = ImageFeatureConfig(**{k: tuple(v) if isinstance(v, list) else v
                                              for k, v in data["image"].items()})
        data["points"] = PointFeatureConfig(**{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in data["points"].items()})
        data.setdefault("infrared", None)  # models saved before IR had its own extractor used RGB's
        if data["infrared"] is not None:
            data["infrared"] = ImageFeatureConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                     for k, v in data["infrared"].items()})
        return cls(**data)


@dataclass
class ModalityResult:
    score: float
    anomaly_map: np.ndarray  # (H, W) for images, (N,) per vertex for point clouds


def extract(modality: str, data: SampleData, config: DetectorConfig):
    if modality == "rgb":
        return image_features(data.rgb, config.image)
    if modality == "infrared":
        return image_features(data.infrared, config.infrared or config.image)
    return point_features(data.mesh.vertices, config.points)


def topk_mean(values: np.ndarray, k: int) -> float:
    k = max(1, min(k, len(values)))
    return float(np.partition(values, len(values) - k)[-k:].mean())


def gate_weights(scores: np.ndarray) -> np.ndarray:
    """Fit the paper's decision gating unit; its ``score_samples`` is ``x @ coef_``."""
    from sklearn.linear_model import SGDOneClassSVM

    svm = SGDOneClassSVM(nu=0.5, max_iter=1000, random_state=42)
    svm.fit(scores)
    return np.asarray(svm.coef_, np.float64).ravel()


WORKERS = 2
INSAMPLE_DIAGNOSTIC = 20


class TripleADModel:
    """A fitted detector for one category."""

    def __init__(self, category: str, config: DetectorConfig) -> None:
        self.category = category
        self.config = config
        self.banks: dict[str, MemoryBank] = {}
        self.holdout_scores = np.zeros((0, len(config.modalities)))
        self.insample_scores = np.zeros((0, len(config.modalities)))
        self.norm_mean = np.zeros(len(config.modalities))
        self.norm_std = np.ones(len(config.modalities))
        self._gates: dict[tuple[str, ...], np.ndarray] = {}

    # -- training -----------------------------------------------------------------
    def fit(self, load: Callable[[object], SampleData], records: list, progress=None) -> TripleADModel:
        """Build the banks from most training normals, calibrate on the held-out rest."""
        cfg = self.config
        if len(records) < cfg.min_holdout + 2:
            raise MulsenError(f"{self.category}: {len(records)} training samples are too few "
                              f"(need at least {cfg.min_holdout + 2})")
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(len(records))
        n_hold = max(cfg.min_holdout, round(len(records) * cfg.holdout_fraction))
        hold_idx, bank_idx = order[:n_hold], order[n_hold:]
        features: dict[str, list[np.ndarray]] = {m: [] for m in cfg.modalities}

        def extract_all(i: int) -> dict[str, np.ndarray]:
            data = load(records[i])
            return {m: extract(m, data, cfg)[0] for m in cfg.modalities}

        # Loading and feature extraction release the GIL for most of their work (PIL, numpy, open3d,
        # torch): two threads keep both cores busy; results keep the record order.
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            extracted = pool.map(extract_all, list(bank_idx))
            bank_cache = list(progress(extracted, len(bank_idx)) if progress else extracted)
        for per in bank_cache:
            for m in cfg.modalities:
                features[m].append(per[m])

        def fit_bank(k: int) -> MemoryBank:
            m = cfg.modalities[k]
            return MemoryBank.fit(features[m], cfg.coreset_ratio, cfg.max_bank_size, seed=cfg.seed + k,
                                  projection_dim=cfg.coreset_projection_dim)

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:  # the greedy coreset is GEMV-bound
            for m, bank in zip(cfg.modalities, pool.map(fit_bank, range(len(cfg.modalities))), strict=True):
                self.banks[m] = bank
        # In-sample scores: the paper's gate is fitted on all of them; otherwise a few are kept as a
        # diagnostic (how much lower than held-out scores they are), which is much cheaper.
        sampled = bank_cache if cfg.gate_fit == "paper" else bank_cache[:INSAMPLE_DIAGNOSTIC]
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            self.insample_scores = np.array(list(pool.map(
                lambda per: [self._object_score(m, self.banks[m].score(per[m])) for m in cfg.modalities],
                sampled)))
        del bank_cache

        def holdout_row(i: int) -> list[float]:
            data = load(records[i])
            return [self._object_score(m, self.banks[m].score(extract(m, data, cfg)[0])) for m in cfg.modalities]

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            self.holdout_scores = np.array(list(pool.map(holdout_row, list(hold_idx))))
        self.norm_mean = self.holdout_scores.mean(axis=0)
        self.norm_std = self.holdout_scores.std(axis=0) + 1e-6 * (np.abs(self.norm_mean) + 1)
        self._gates.clear()
        return self

    # -- scoring ------------------------------------------------------------------
    def _object_score(self, modality: str, patch_scores: np.ndarray) -> float:
        k = self.config.point_topk if modality == "pointcloud" else self.config.image_topk
        return topk_mean(patch_scores, k)

    def score(self, data: SampleData, modalities: tuple[str, ...] | None = None) -> dict[str, ModalityResult]:
        out = {}
        for m in modalities or self.config.modalities:
            if m not in self.banks:
                raise MulsenError(f"model for {self.category} has no {m} bank (has: {', '.join(self.banks)})")
            feats, geometry = extract(m, data, self.config)
            patch = self.banks[m].score(feats)
            amap = patch[geometry.vertex_to_group] if m == "pointcloud" else upsample_scores(patch, geometry)
            out[m] = ModalityResult(self._object_score(m, patch), amap)
        return out

    def normalise(self, scores: dict[str, float]) -> dict[str, float]:
        idx = {m: i for i, m in enumerate(self.config.modalities)}
        return {m: (s - self.norm_mean[idx[m]]) / self.norm_std[idx[m]] for m, s in scores.items()}

    def fuse(self, scores: dict[str, float], combo: tuple[str, ...], fusion: str | None = None) -> float:
        """Fused anomaly score of a modality combination (single modality: its raw score, as the paper)."""
        fusion = fusion or self.config.fusion
        if len(combo) == 1:
            return float(scores[combo[0]])
        z = self.normalise({m: scores[m] for m in combo})
        vec = np.array([z[m] for m in combo])
        if fusion == "zmean":
            return float(vec.mean())
        if fusion == "max":
            return float(vec.max())
        if fusion == "gate":
            return float(vec @ self._gate(combo))
        raise MulsenError(f"unknown fusion {fusion!r} (use {', '.join(FUSIONS)})")

    def _gate(self, combo: tuple[str, ...]) -> np.ndarray:
        """Gate weights of a combination, fitted once on the calibration scores."""
        if combo not in self._gates:
            idx = [self.config.modalities.index(m) for m in combo]
            source = self.insample_scores if self.config.gate_fit == "paper" else self.holdout_scores
            self._gates[combo] = gate_weights((source[:, idx] - self.norm_mean[idx]) / self.norm_std[idx])
        return self._gates[combo]

    def threshold(self, combo: tuple[str, ...], fusion: str | None = None, false_alarm_rate: float | None = None
                  ) -> float:
        """Decision threshold: the (1 - FAR) quantile of the held-out normals' fused scores."""
        rate = self.config.false_alarm_rate if false_alarm_rate is None else false_alarm_rate
        fused = [self.fuse(dict(zip(self.config.modalities, row, strict=True)), combo, fusion)
                 for row in self.holdout_scores]
        return float(np.quantile(fused, 1 - rate))

    # -- persistence ---------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"holdout_scores": self.holdout_scores, "insample_scores": self.insample_scores,
                   "norm_mean": self.norm_mean, "norm_std": self.norm_std}
        for m, bank in self.banks.items():
            tensors[f"{m}.features"] = bank.features
            tensors[f"{m}.mean"] = bank.mean
            tensors[f"{m}.scale"] = bank.scale
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp))
        meta = {"format_version": FORMAT_VERSION, "toolkit_version": __version__, "category": self.category,
                "modalities": list(self.config.modalities), "config": self.config.to_json(),
                "bank_sizes": {m: len(b.features) for m, b in self.banks.items()}}
        atomic_write_text(folder / "model.json", json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, modalities: tuple[str, ...] | None = None) -> TripleADModel:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        folder = Path(folder)
        meta_path = folder / "model.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MulsenError(f"{meta_path}: model file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MulsenError(f"{meta_path}: not a valid model description ({exc})") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise MulsenError(f"{meta_path}: model format {meta.get('format_version')!r} is not supported by this "
                              f"toolkit (expects {FORMAT_VERSION}); retrain with 'mulsen train'")
        config = DetectorConfig.from_json(meta["config"])
        if modalities and not set(modalities) <= set(config.modalities):
            raise MulsenError(f"{meta_path}: model has modalities {', '.join(config.modalities)}, "
                              f"asked for {', '.join(modalities)}")
        try:
            tensors = load_file(str(folder / "model.safetensors"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise MulsenError(f"{folder / 'model.safetensors'}: unreadable or tampered model file ({exc})") from None
        model = cls(meta["category"], config)
        try:
            for m in config.modalities:
                model.banks[m] = MemoryBank(tensors[f"{m}.features"], tensors[f"{m}.mean"], tensors[f"{m}.scale"])
                if len(model.banks[m].features) != meta["bank_sizes"][m]:
                    raise KeyError(f"{m} bank size")
            model.holdout_scores = tensors["holdout_scores"]
            model.insample_scores = tensors["insample_scores"]
            model.norm_mean, model.norm_std = tensors["norm_mean"], tensors["norm_std"]
        except KeyError as exc:
            raise MulsenError(f"{folder}: model arrays do not match model.json ({exc})") from None
        return model
