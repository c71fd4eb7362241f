"""Pure computation of the detector: features -> banks -> per-modality patch and object scores.

No threads, files or state beyond the banks passed in (anomalib's ``torch_model`` role).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mulsen.core.errors import MulsenError
from mulsen.dataset.records import SampleData

from .config import DetectorConfig
from .features import ImageFeatureConfig, PatchGrid, PointGroups, image_features, point_features, upsample_scores
from .memory_bank import MemoryBank, preselect


@dataclass(frozen=True)
class ModalityResult:
    score: float
    anomaly_map: np.ndarray  # (H, W) for images, (N,) per vertex for point clouds


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


def patch_scores(bank: MemoryBank, features: np.ndarray, geometry: PatchGrid | PointGroups) -> np.ndarray:
    """Nearest-neighbour distance of every patch to the bank (point-cloud centres: averaged over neighbours)."""
    patch = bank.score(features)
    return geometry.smooth(patch) if isinstance(geometry, PointGroups) else patch


def fit_bank(feature_sets: list[np.ndarray], config: DetectorConfig, index: int,
             candidates: list[np.ndarray] | None = None) -> MemoryBank:
    """The memory bank of the ``index``-th modality from its normals' features (``candidates``: each
    sample's ``bank_candidates``)."""
    return MemoryBank.fit(feature_sets, config.coreset_ratio, config.max_bank_size, seed=config.seed + index,
                          projection_dim=config.coreset_projection_dim, tolerance=config.bank_tolerance,
                          candidates=candidates)


def bank_candidates(features: np.ndarray, config: DetectorConfig) -> np.ndarray:
    """The patches of one sample offered to its modality's bank (first round of the coreset)."""
    return preselect(features, config.coreset_ratio, config.seed, config.coreset_projection_dim)


def score_sample(banks: Mapping[str, MemoryBank], data: SampleData, config: DetectorConfig,
                 modalities: tuple[str, ...]) -> dict[str, ModalityResult]:
    """Object score and anomaly map (pixels or vertices) per modality."""
    out = {}
    for m in modalities:
        if m not in banks:
            raise MulsenError(f"the model has no {m} bank (has: {', '.join(banks)})")
        feats, geometry = extract(m, data, config)
        patch = patch_scores(banks[m], feats, geometry)
        if isinstance(geometry, PointGroups):
            assert geometry.vertex_to_group is not None
            amap = patch[geometry.vertex_to_group]
        else:
            amap = upsample_scores(patch, geometry)
        out[m] = ModalityResult(object_score(m, patch, config), amap)
    return out
