"""PatchCore memory bank: greedy coreset with random projection, exact nearest-neighbour scoring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# The one definition of each bank parameter's default (DetectorConfig and the CLI take them from here).
DEFAULT_MAX_BANK_SIZE = 10000  # 4 % of 100 full-size normals' patches: scoring time is linear in it
DEFAULT_PROJECTION_DIM = 16  # dimensions the greedy coreset selection works in (random projection)

# One block of query-to-bank squared distances: small enough to stay in cache while it is reduced.
KNN_BLOCK_BYTES = 4 << 20
# Banks this narrow are searched with a k-d tree (exact): on the image banks (12-28 dims, 10k entries, features
# on a low-dimensional manifold) it answers 3072 queries in 4-7 ms against 15-21 ms for the blocked products;
# on the 66-dim point bank it is 3x slower than them (measured, bench_detector.py's data)
KDTREE_MAX_DIMS = 32


def standardise(features: np.ndarray, scalar: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of patch features: per-dimension spread with a floor, so that a dimension that never
    varies on normals does not turn tiny test deviations into huge distances; ``scalar``: the official code's
    one mean and one (unbiased, as ``torch.std``) standard deviation over every element, as (D,) arrays."""
    if scalar:  # accumulated in float64 without a float64 copy of the patches (the same values)
        x = np.asarray(features)
        dims = features.shape[1]
        return (np.full(dims, x.mean(dtype=np.float64), np.float32),
                np.full(dims, x.std(ddof=1, dtype=np.float64) or 1.0, np.float32))
    std = features.std(axis=0)
    return features.mean(axis=0), std + 0.05 * float(std.mean()) + 1e-6


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
    return greedy_order(x, size, int(rng.integers(n)))


PAPER_CORESET_EPS = 0.9  # the official code's coreset_eps


def paper_coreset(features: np.ndarray, ratio: float, seed: int = 0, eps: float = PAPER_CORESET_EPS) -> np.ndarray:
    """The official code's coreset (``get_coreset_idx_randomp``), indices in selection order.

    ``int(ratio x rows)`` rows; scikit-learn's ``SparseRandomProjection(eps)`` (its Johnson-Lindenstrauss
    dimension for this many rows, ~270-290 for MulSen banks) seeded with ``seed`` where the original draws
    a new one each run; where that dimension exceeds the features' (low-dimensional weight-free features)
    the projection fails and the original goes on unprojected, as here. Greedy from row 0. Because the
    start is fixed, a smaller coreset is a prefix of a larger one (the paper bank views rely on it).
    """
    from sklearn.random_projection import SparseRandomProjection

    x = np.asarray(features, np.float32)
    size = int(ratio * len(x))
    if size < 1:
        raise ValueError(f"{ratio:g} of {len(x)} patches is no patch: the bank would be empty")
    try:
        x = SparseRandomProjection(eps=eps, random_state=seed).fit_transform(x).astype(np.float32)
    except ValueError:  # more target dimensions than features: unprojected, as the original
        pass
    return greedy_order(x, min(size, len(x)), 0)


def greedy_order(x: np.ndarray, size: int, start: int) -> np.ndarray:
    """``size`` rows of ``x`` in greedy k-center order (farthest from those chosen first), from ``start``."""
    n, dims = x.shape
    # squared distances to a centre c as one product along contiguous rows, [-2 c, 1, |c|^2] . [x^T; |x|^2; 1]:
    # about 2.5x faster than x @ c (a short dot per row) followed by the passes that scale and shift it
    rows = np.empty((dims + 2, n), np.float32)
    rows[:dims] = x.T
    rows[dims] = np.einsum("ij,ij->i", x, x)
    rows[dims + 1] = 1
    centre = np.ones(dims + 2, np.float32)
    chosen = np.empty(size, dtype=np.int64)
    chosen[0] = start
    min_dist = np.full(n, np.inf, dtype=np.float32)
    d = np.empty(n, dtype=np.float32)
    for k in range(1, size + 1):
        c = chosen[k - 1]
        np.multiply(x[c], -2, out=centre[:dims])
        centre[dims + 1] = rows[dims, c]
        np.dot(centre, rows, out=d)  # in place: each step is a few passes over N, no allocations
        np.minimum(min_dist, d, out=min_dist)
        if k == size:
            break
        chosen[k] = int(np.argmax(min_dist))
    return chosen


PRESELECT_FACTOR = 3  # first round: each sample offers its own coreset of this many times the bank's ratio


def preselect(features: np.ndarray, coreset_ratio: float, seed: int = 0,
              projection_dim: int = DEFAULT_PROJECTION_DIM) -> np.ndarray:
    """First round of a two-round coreset: the rows of one sample's features worth offering to the bank.

    A greedy coreset of ``PRESELECT_FACTOR x coreset_ratio`` of the sample's patches, standardised with the
    sample's own statistics. Run per sample where the sample is extracted (in parallel), it leaves the
    bank's sequential greedy a third of the patches; a patch not offered lies within the sample's own
    (much finer) coverage radius of one that was. Sorted row indices.
    """
    ratio = min(1.0, PRESELECT_FACTOR * coreset_ratio)
    n = len(features)
    if ratio >= 1 or n < 2:
        return np.arange(n)
    x = np.asarray(features, np.float32)
    mean, scale = standardise(x)
    keep = greedy_coreset((x - mean) / scale, max(1, round(n * ratio)), projection_dim=projection_dim, seed=seed)
    return np.sort(keep)


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
        self._tree: Any = None  # k-d tree of narrow banks (``nearest``), built on first use

    @classmethod
    def fit(cls, feature_sets: list[np.ndarray], coreset_ratio: float, max_size: int = DEFAULT_MAX_BANK_SIZE,
            seed: int = 0, projection_dim: int = DEFAULT_PROJECTION_DIM, tolerance: bool = False,
            candidates: list[np.ndarray] | None = None, paper: bool = False, scalar: bool = False) -> MemoryBank:
        """Standardise, keep a greedy coreset (``coreset_ratio`` of all patches, at most ``max_size``), and
        measure the entries' tolerances. ``candidates``: per feature set, the rows the coreset may choose
        from (``preselect``'s first round); the statistics and tolerances still use every row. ``paper``:
        the official coreset (``paper_coreset``) over every row; ``scalar``: one mean/std (``standardise``)."""
        if not 0 < coreset_ratio <= 1 or max_size < 1:
            raise ValueError(f"coreset ratio {coreset_ratio} must be in (0, 1] and the bank size {max_size} >= 1")
        stacked = np.concatenate(feature_sets).astype(np.float32)
        mean, scale = standardise(stacked, scalar)
        normed = (stacked - mean) / scale
        size = max(1, min(max_size, round(len(normed) * coreset_ratio)))
        if paper:
            whole = coreset_ratio == 1  # the original skips the coreset at ratio 1
            keep = np.arange(len(normed)) if whole else paper_coreset(normed, coreset_ratio, seed)[:max_size]
        elif candidates is None:
            keep = greedy_coreset(normed, size, projection_dim=projection_dim, seed=seed)
        else:
            if len(candidates) != len(feature_sets):
                raise ValueError("one candidate index array per feature set")
            offsets = np.cumsum([0] + [len(f) for f in feature_sets[:-1]])
            pool = np.concatenate([np.asarray(c, np.int64) + o for c, o in zip(candidates, offsets, strict=True)])
            keep = pool[greedy_coreset(normed[pool], min(size, len(pool)), projection_dim=projection_dim, seed=seed)]
        source = np.repeat(np.arange(len(feature_sets)), [len(f) for f in feature_sets])
        tol = _entry_tolerance(normed, source, keep, seed) if tolerance and len(feature_sets) > 1 else None
        return cls(normed[keep], mean, scale, tol)

    def normalise(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, np.float32) - self.mean) / self.scale

    def nearest(self, normed: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(distances, indices) of the k nearest entries of normalised patches, exact: a k-d tree for narrow
        banks (built once per bank and process), blocked products (``nearest_neighbours``) otherwise."""
        if self.features.shape[1] > KDTREE_MAX_DIMS or len(self.features) < 2:
            return nearest_neighbours(normed, self.features, k)
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.features)
        q = np.ascontiguousarray(normed, np.float32)
        if q.ndim != 2 or q.shape[1] != self.features.shape[1]:
            raise ValueError(f"queries {q.shape} do not match the bank's width {self.features.shape[1]}")
        k = max(1, min(k, len(self.features)))
        _, idx = self._tree.query(q, k=k)
        idx = np.asarray(idx, np.int64).reshape(len(q), k)
        return _distances(q, self.features, idx), idx

    def __getstate__(self) -> dict:  # the tree is rebuilt where it is needed, never shipped to workers
        return {**self.__dict__, "_tree": None}

    def score(self, features: np.ndarray) -> np.ndarray:
        """Nearest-neighbour distance of every patch to the bank."""
        dist, nearest = self.nearest(self.normalise(features), 1)
        if self.tolerance is None:
            return dist[:, 0]
        return dist[:, 0] / self.tolerance[nearest[:, 0]]


PAPER_REWEIGHT_NEIGHBOURS = 3  # the official code's n_reweight (the nearest is the entry itself)


@dataclass(frozen=True)
class WorstPatch:
    """What the official object score needs of a sample's patch distances to one bank (normalised units)."""

    distances: np.ndarray  # every patch's nearest-neighbour distance
    worst: float  # the largest of them
    around: np.ndarray  # the worst patch's distances to the next neighbours of its nearest entry

    @classmethod
    def of(cls, normed: np.ndarray, bank: np.ndarray) -> WorstPatch:
        dist, nearest = nearest_neighbours(normed, bank, 1)
        worst = int(np.argmax(dist[:, 0]))
        _, ring = nearest_neighbours(bank[nearest[worst]], bank, PAPER_REWEIGHT_NEIGHBOURS)
        around = np.linalg.norm(normed[worst].astype(np.float64) - bank[ring[0, 1:]], axis=1)
        return cls(dist[:, 0], float(dist[worst, 0]), around)

    def score(self, dims: int, factor: float = 1.0) -> float:
        """``w s*``: ``s* = max patch distance / 1000``, ``w = 1 - exp(s*/D) / sum_j exp(|m_test - m_j| / 1000
        / D)`` over the two bank neighbours m_j of the entry nearest the worst patch (D: the square root of
        the feature dimension). w is about 0.5 whatever the data: the reweighting is all but inert.
        ``factor``: every distance multiplied by it (the bank standardised by another bank's std)."""
        s_star = self.worst * factor / 1000
        if not len(self.around):  # a bank of one entry has no neighbours to reweight with
            return s_star
        root = np.sqrt(dims)
        return float((1 - np.exp(s_star / root) / np.exp(self.around * factor / 1000 / root).sum()) * s_star)


TOLERANCE_PATCHES = 20000  # patches drawn to measure the bank entries' tolerances
TOLERANCE_PRIOR = 5.0  # an entry's tolerance is shrunk towards the bank's as if it had this many more hits


def _entry_tolerance(normed: np.ndarray, source: np.ndarray, keep: np.ndarray, seed: int) -> np.ndarray:
    """How far normal patches of *other* samples lie from each bank entry: the entry's tolerance.

    The industrial variation model in feature space: rims, edges and textured areas vary from part to part
    far more than flat interiors, so one global distance scale calls every rim anomalous first. Each drawn
    patch is matched to its nearest entry from another sample (leave one sample out, so a patch never meets
    its own copy); an entry's tolerance is the mean of those distances, shrunk towards the bank's mean where
    an entry has few hits, and never below a quarter of it.
    """
    rng = np.random.default_rng(seed + 7919)
    outside = np.ones(len(normed), bool)
    outside[keep] = False
    pool = np.flatnonzero(outside)  # the rows not kept, in order (setdiff1d's answer without its sort)
    drawn = rng.choice(pool, min(len(pool), TOLERANCE_PATCHES), replace=False) if len(pool) else keep
    dist, nearest = nearest_neighbours(normed[drawn], normed[keep], 1, groups=(source[drawn], source[keep]))
    usable = np.isfinite(dist[:, 0])
    hit, d = nearest[usable, 0], dist[usable, 0]
    overall = float(d.mean()) if len(d) else 1.0
    hits = np.bincount(hit, minlength=len(keep))
    sums = np.bincount(hit, d, minlength=len(keep))
    tol = (sums + TOLERANCE_PRIOR * overall) / (hits + TOLERANCE_PRIOR)
    return np.maximum(tol, 0.25 * overall).astype(np.float32) if overall > 0 else np.ones(len(keep), np.float32)


def nearest_neighbours(queries: np.ndarray, bank: np.ndarray, k: int, block_rows: int | None = None,
                       groups: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices), each (Q, k): the k nearest bank rows of each query, nearest first (exact).

    Brute force in cache-sized blocks of ``q.b`` products (one BLAS call each), candidates ranked by
    ``|b|^2 - 2 q.b`` about the bank's mean, then the chosen neighbours' distances computed directly (the
    expanded form loses digits to cancellation). ``groups`` (query groups, bank groups): a query never
    meets bank rows of its own group (leave one sample out); a query whose group holds the whole bank gets
    an infinite distance. Written here rather than taken from faiss: on these low-dimensional banks
    (12-66 dims, 10k rows) faiss's flat index was 3-5x slower (0.15 s against 0.03 s per 3072 RGB patches
    on one core), and a flat index is all the exact search needs.
    """
    q = np.ascontiguousarray(queries, np.float32)
    b = np.ascontiguousarray(bank, np.float32)
    if q.ndim != 2 or b.ndim != 2 or q.shape[1] != b.shape[1] or not len(b):
        raise ValueError(f"queries {q.shape} and bank {b.shape} must be 2-D with the same width, bank non-empty")
    k = max(1, min(k, len(b)))
    centre = b.mean(axis=0)
    bc, qc = b - centre, q - centre
    # |b|^2 - 2 q.b as one product of augmented rows ([q, 1] . [-2 b, |b|^2]): the block is written once and
    # read once by the reduction, where scaling and shifting it took two more passes (-25 % on every bank)
    augmented = np.empty((b.shape[1] + 1, len(b)), np.float32)
    augmented[:-1] = bc.T
    augmented[:-1] *= -2
    augmented[-1] = np.einsum("ij,ij->i", bc, bc)
    lifted = np.empty((len(q), q.shape[1] + 1), np.float32)
    lifted[:, :-1] = qc
    lifted[:, -1] = 1
    rows = block_rows or max(16, KNN_BLOCK_BYTES // (4 * len(b)))
    idx = np.empty((len(q), k), np.int64)
    buffer = np.empty((min(rows, len(q)), len(b)), np.float32)  # one allocation: fresh pages cost a fault each
    for start in range(0, len(q), rows):
        block = buffer[:len(lifted[start:start + rows])]
        np.matmul(lifted[start:start + rows], augmented, out=block)
        if groups is not None:
            block[groups[0][start:start + rows, None] == groups[1][None, :]] = np.inf
        if k == 1:
            idx[start:start + rows, 0] = block.argmin(axis=1)
        else:
            idx[start:start + rows] = np.argpartition(block, k - 1, axis=1)[:, :k]
    dist = _distances(q, b, idx)
    if groups is not None:
        dist[groups[0][:, None] == groups[1][idx]] = np.inf
    if k > 1:
        order = np.argsort(dist, axis=1, kind="stable")
        dist, idx = np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)
    return dist, idx


def _distances(queries: np.ndarray, bank: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(Q, k) distances of each query to its chosen bank rows, computed directly (the expanded form the
    search ranks by loses digits to cancellation)."""
    diff = bank[idx] - queries[:, None, :]
    return np.sqrt(np.einsum("qkd,qkd->qk", diff, diff))
