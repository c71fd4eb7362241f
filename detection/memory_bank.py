"""PatchCore memory bank: greedy coreset with random projection, exact nearest-neighbour scoring."""

from __future__ import annotations

import importlib
import threading
from typing import Any

import numpy as np

# The one definition of each bank parameter's default (DetectorConfig and the CLI take them from here).
DEFAULT_MAX_BANK_SIZE = 10000  # 4 % of 100 full-size normals' patches: scoring time is linear in it
DEFAULT_PROJECTION_DIM = 16  # dimensions the greedy coreset selection works in (random projection)

faiss: Any
try:
    faiss = importlib.import_module("faiss")
except ImportError:  # pragma: no cover - faiss-cpu is a declared dependency of the detect extra
    faiss = None


def greedy_coreset(features: np.ndarray, size: int, projection_dim: int = DEFAULT_PROJECTION_DIM, seed: int = 0
                   ) -> np.ndarray:
    """Indices of a greedy k-center coreset (farthest point first), memory O(N): never an N x N matrix.

    Features are randomly projected to ``projection_dim`` (Johnson-Lindenstrauss) to make each
    iteration one GEMV-like pass; the start point is drawn from ``seed``.
    """
    n = len(features)
    if size <= 0:
        raise ValueError("coreset size must be positive")
    if projection_dim < 0:
        raise ValueError("projection dimension must be >= 0 (0: no projection)")
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    x = np.asarray(features, np.float32)
    if projection_dim and x.shape[1] > projection_dim:
        proj = rng.normal(0, 1 / np.sqrt(projection_dim), (x.shape[1], projection_dim)).astype(np.float32)
        x = x @ proj
    sq = np.einsum("ij,ij->i", x, x)
    chosen = np.empty(size, dtype=np.int64)
    chosen[0] = int(rng.integers(n))
    min_dist = np.full(n, np.inf, dtype=np.float32)
    for k in range(1, size + 1):
        c = chosen[k - 1]
        d = sq + sq[c] - 2 * (x @ x[c])
        np.minimum(min_dist, d, out=min_dist)
        if k == size:
            break
        chosen[k] = int(np.argmax(min_dist))
    return chosen


def nearest_distances(queries: np.ndarray, bank: np.ndarray, chunk: int = 2048, index=None) -> np.ndarray:
    """Exact Euclidean distance of each query to its nearest bank row (faiss flat L2, else chunked numpy)."""
    return nearest_neighbours(queries, bank, 1, index, chunk)[0][:, 0]


class MemoryBank:
    """Nominal patch features of one modality, standardised with its own statistics."""

    def __init__(self, features: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                 tolerance: np.ndarray | None = None) -> None:
        self.features = np.ascontiguousarray(features, np.float32)
        self.mean = np.asarray(mean, np.float32)
        self.scale = np.asarray(scale, np.float32)
        # per bank entry: how far normal patches of other samples typically lie from it (None: all alike)
        self.tolerance = None if tolerance is None else np.asarray(tolerance, np.float32)
        if self.tolerance is not None and (self.tolerance.shape != (len(self.features),)
                                           or not np.all(np.isfinite(self.tolerance) & (self.tolerance > 0))):
            raise ValueError("bank tolerances must be positive and finite, one per entry")
        self._index: Any = None
        self._index_lock = threading.Lock()  # scoring runs on several threads; build the index once

    @classmethod
    def fit(cls, feature_sets: list[np.ndarray], coreset_ratio: float, max_size: int = DEFAULT_MAX_BANK_SIZE,
            seed: int = 0, projection_dim: int = DEFAULT_PROJECTION_DIM, tolerance: bool = False) -> MemoryBank:
        if not 0 < coreset_ratio <= 1 or max_size < 1:
            raise ValueError(f"coreset ratio {coreset_ratio} must be in (0, 1] and the bank size {max_size} >= 1")
        stacked = np.concatenate(feature_sets).astype(np.float32)
        mean = stacked.mean(axis=0)
        std = stacked.std(axis=0)
        # a dimension that never varies on normals must not turn tiny test deviations into huge distances
        scale = std + 0.05 * float(std.mean()) + 1e-6
        normed = (stacked - mean) / scale
        size = max(1, min(max_size, round(len(normed) * coreset_ratio)))
        keep = greedy_coreset(normed, size, projection_dim=projection_dim, seed=seed)
        source = np.repeat(np.arange(len(feature_sets)), [len(f) for f in feature_sets])
        tol = _entry_tolerance(normed, source, keep, seed) if tolerance and len(feature_sets) > 1 else None
        return cls(normed[keep], mean, scale, tol)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Nearest-neighbour distance of every patch to the bank."""
        normed = (np.asarray(features, np.float32) - self.mean) / self.scale
        index = None
        if faiss is not None:
            with self._index_lock:
                if self._index is None:
                    built = faiss.IndexFlatL2(self.features.shape[1])
                    built.add(self.features)
                    self._index = built  # published only when complete
                index = self._index
        if self.tolerance is None:
            return nearest_distances(normed, self.features, index=index)
        dist, nearest = nearest_neighbours(normed, self.features, 1, index=index)
        return dist[:, 0] / self.tolerance[nearest[:, 0]]


TOLERANCE_PATCHES = 20000  # patches drawn to measure the bank entries' tolerances
TOLERANCE_PRIOR = 5.0  # an entry's tolerance is shrunk towards the bank's as if it had this many more hits
TOLERANCE_NEIGHBOURS = 8  # nearest entries searched for one that comes from another sample


def _entry_tolerance(normed: np.ndarray, source: np.ndarray, keep: np.ndarray, seed: int) -> np.ndarray:
    """How far normal patches of *other* samples lie from each bank entry: the entry's tolerance.

    The industrial variation model in feature space: rims, edges and textured areas vary from part to part
    far more than flat interiors, so one global distance scale calls every rim anomalous first. Each drawn
    patch is matched to its nearest entry from another sample (leave one sample out, so a patch never meets
    its own copy); an entry's tolerance is the mean of those distances, shrunk towards the bank's mean where
    an entry has few hits, and never below a quarter of it.
    """
    rng = np.random.default_rng(seed + 7919)
    pool = np.setdiff1d(np.arange(len(normed)), keep)
    drawn = rng.choice(pool, min(len(pool), TOLERANCE_PATCHES), replace=False) if len(pool) else keep
    k = min(TOLERANCE_NEIGHBOURS, len(keep))
    dist, nearest = nearest_neighbours(normed[drawn], normed[keep], k)
    other = source[keep][nearest] != source[drawn][:, None]
    usable = other.any(axis=1)
    column = np.argmax(other, axis=1)[usable]  # the first neighbour from another sample
    rows = np.flatnonzero(usable)
    hit, d = nearest[rows, column], dist[rows, column]
    overall = float(d.mean()) if len(d) else 1.0
    hits = np.bincount(hit, minlength=len(keep))
    sums = np.bincount(hit, d, minlength=len(keep))
    tol = (sums + TOLERANCE_PRIOR * overall) / (hits + TOLERANCE_PRIOR)
    return np.maximum(tol, 0.25 * overall).astype(np.float32) if overall > 0 else np.ones(len(keep), np.float32)


def nearest_neighbours(queries: np.ndarray, bank: np.ndarray, k: int, index=None, chunk: int = 2048
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices), each (Q, k): the k nearest bank rows of each query, nearest first."""
    q = np.ascontiguousarray(queries, np.float32)
    b = np.ascontiguousarray(bank, np.float32)
    if faiss is not None:
        if index is None:
            index = faiss.IndexFlatL2(b.shape[1])
            index.add(b)
        dist, idx = index.search(q, k)
        return np.sqrt(np.clip(dist, 0, None)), idx.astype(np.int64)
    bsq = np.einsum("ij,ij->i", b, b)
    dists, idxs = [], []
    for start in range(0, len(q), chunk):
        part = q[start:start + chunk]
        d = np.einsum("ij,ij->i", part, part)[:, None] - 2 * part @ b.T + bsq[None, :]
        idx = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.arange(d.shape[1])[None].repeat(
            len(d), axis=0)
        idx = np.take_along_axis(idx, np.argsort(np.take_along_axis(d, idx, axis=1), axis=1), axis=1)
        dists.append(np.sqrt(np.clip(np.take_along_axis(d, idx, axis=1), 0, None)))
        idxs.append(idx)
    return np.concatenate(dists), np.concatenate(idxs).astype(np.int64)
