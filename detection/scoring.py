"""Pure computation of the detector: features -> banks -> per-modality patch and object scores.

No threads, files or state beyond the banks passed in (anomalib's ``torch_model`` role).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from mulsen.core.errors import MulsenError
from mulsen.dataset.records import SampleData

from .config import DetectorConfig, all_combinations
from .features import ImageFeatureConfig, PatchGrid, PointGroups, image_features, point_features, upsample_scores
from .memory_bank import MemoryBank, WorstPatch, nearest_neighbours, preselect


@dataclass(frozen=True)
class ModalityResult:
    score: float
    anomaly_map: np.ndarray  # (H, W) for images, (N,) per vertex for point clouds
    # with paper bank views: the modality's score in each combination's own method ("rgb@Triple" -> score)
    views: dict[str, float] = field(default_factory=dict)


def score_row(results: Mapping[str, ModalityResult]) -> dict[str, float]:
    """Every score column of a sample's results (the modalities' own scores and their views)."""
    row = {m: r.score for m, r in results.items()}
    for r in results.values():
        row.update(r.views)
    return row


@dataclass(frozen=True)
class View:
    """How one score column reads a bank: its first ``size`` entries, every distance times ``factor``."""

    modality: str
    size: int
    factor: float


# The official code's methods each standardise their banks with one std, not always their own
# (tripleAD-reference.md section 4): PC+RGB by the RGB bank's, PC+IR and RGB+IR by the IR bank's, Triple by RGB's.
PAPER_STD_SOURCE = {("pointcloud", "rgb"): "rgb", ("pointcloud", "infrared"): "infrared",
                    ("rgb", "infrared"): "infrared", ("rgb", "infrared", "pointcloud"): "rgb"}


def views(banks: Mapping[str, MemoryBank], config: DetectorConfig) -> dict[str, View]:
    """Every score column of the configuration and how it reads the banks (``config.bank_views``)."""
    out = {m: View(m, len(banks[m].features), 1.0) for m in config.modalities if m in banks}
    if config.bank_views == "own":
        return out
    for combo in all_combinations(config.modalities):
        if len(combo) < 2 or not set(combo) <= set(banks):
            continue
        source = banks[PAPER_STD_SOURCE[combo]].scale[0]
        for m in combo:
            size = len(banks[m].features)
            if len(combo) == 3 and m != "pointcloud":  # M3DM's chained size: 10 % of the *reduced* PC bank
                size = max(1, min(size, int(config.coreset_ratio * len(banks["pointcloud"].features))))
            out[config.column(m, combo)] = View(m, size, float(banks[m].scale[0] / source))
    return out


def extract(modality: str, data: SampleData, config: DetectorConfig, maps: bool = True
            ) -> tuple[np.ndarray, PatchGrid | PointGroups]:
    """(P, D) features of one modality of a sample and the geometry that maps them back (``maps=False``:
    without the per-vertex mapping, which only anomaly maps need)."""
    extractor = config.extractor(modality)
    if modality == "pointcloud":
        assert not isinstance(extractor, ImageFeatureConfig)
        return point_features(data.mesh.vertices, extractor, data.mesh.faces, map_vertices=maps)
    assert isinstance(extractor, ImageFeatureConfig)
    return image_features(data.rgb if modality == "rgb" else data.infrared, extractor)


def topk_mean(values: np.ndarray, k: int) -> float:
    k = max(1, min(k, len(values)))
    return float(np.partition(values, len(values) - k)[-k:].mean())


def object_score(modality: str, patch_scores: np.ndarray, config: DetectorConfig) -> float:
    """A sample's score for one modality: the mean of its k largest patch scores."""
    return topk_mean(patch_scores, config.point_topk if modality == "pointcloud" else config.image_topk)


def view_scores(bank: MemoryBank, features: np.ndarray, geometry: PatchGrid | PointGroups, config: DetectorConfig,
                modality: str, wanted: Mapping[str, View]) -> dict[str, tuple[float, np.ndarray]]:
    """(object score, patch scores) of each wanted column of one modality: one search per bank prefix."""
    out: dict[str, tuple[float, np.ndarray]] = {}
    for size in sorted({v.size for v in wanted.values()}):
        worst = None
        if config.object_score == "paper":
            worst = WorstPatch.of(bank.normalise(features), bank.features[:size])
            dist = worst.distances
        elif size == len(bank.features):
            dist = bank.score(features)  # with the entries' tolerances, if any
        else:  # a prefix view (never with tolerances: DetectorConfig refuses them)
            dist = nearest_neighbours(bank.normalise(features), bank.features[:size], 1)[0][:, 0]
        base = geometry.smooth(dist) if isinstance(geometry, PointGroups) else dist
        for column, view in wanted.items():
            if view.size == size:
                patch = base * view.factor
                score = worst.score(features.shape[1], view.factor) if worst is not None \
                    else object_score(modality, patch, config)
                out[column] = (score, patch)
    return out


def fit_bank(feature_sets: list[np.ndarray], config: DetectorConfig, index: int,
             candidates: list[np.ndarray] | None = None) -> MemoryBank:
    """The memory bank of the ``index``-th modality from its normals' features (``candidates``: each
    sample's ``bank_candidates``)."""
    # the official code projects every bank with one random_state: the paper coreset seeds all banks alike, so
    # a bank is the same whichever other modalities the model has (a Triple model holds the single methods' banks)
    seed = config.seed if config.coreset == "paper" else config.seed + index
    return MemoryBank.fit(feature_sets, config.coreset_ratio, config.max_bank_size, seed=seed,
                          projection_dim=config.coreset_projection_dim, tolerance=config.bank_tolerance,
                          candidates=candidates, paper=config.coreset == "paper",
                          scalar=config.extractor(config.modalities[index]).normalisation == "scalar")


def bank_candidates(features: np.ndarray, config: DetectorConfig) -> np.ndarray:
    """The patches of one sample offered to its modality's bank (first round of the coreset; the paper
    coreset has one round over every patch)."""
    if config.coreset == "paper":
        return np.arange(len(features))
    return preselect(features, config.coreset_ratio, config.seed, config.coreset_projection_dim)


def score_sample(banks: Mapping[str, MemoryBank], data: SampleData, config: DetectorConfig,
                 modalities: tuple[str, ...]) -> dict[str, ModalityResult]:
    """Object score and anomaly map (pixels or vertices) per modality; with paper bank views also the
    modality's score in every combination's method, and its map from the model's own method (the
    combination of all its modalities, e.g. Triple's smaller RGB/IR banks)."""
    out = {}
    columns = views(banks, config)
    for m in modalities:
        if m not in banks:
            raise MulsenError(f"the model has no {m} bank (has: {', '.join(banks)})")
        feats, geometry = extract(m, data, config)
        wanted = {c: v for c, v in columns.items() if v.modality == m}
        scored = view_scores(banks[m], feats, geometry, config, m, wanted)
        patch = scored[config.column(m, config.modalities)][1]
        if isinstance(geometry, PointGroups):
            amap = geometry.vertex_map(patch)
        else:
            amap = upsample_scores(patch, geometry, config.map_protocol)
        out[m] = ModalityResult(scored[m][0], amap, {c: s for c, (s, _) in scored.items() if c != m})
    return out

