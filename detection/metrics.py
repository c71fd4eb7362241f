"""Detection and localisation metrics: AUROC, AUPR, F1-max from scikit-learn; AUPRO (FPR limit 0.3), which it
lacks, here. One class only (or no positive) gives NaN, never an exception."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.integrate import trapezoid
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score


def _binary(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(labels).ravel().astype(bool), np.asarray(scores, np.float64).ravel()


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN when only one class is present."""
    y, s = _binary(labels, scores)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, s))


def aupr(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (step-wise area under the precision-recall curve); NaN without a positive."""
    y, s = _binary(labels, scores)
    if not y.any():
        return float("nan")
    return float(average_precision_score(y, s))


def aupr_trapezoid(labels: np.ndarray, scores: np.ndarray) -> float:
    """The official code's pixel AUPR: ``auc(recall, precision)``, the trapezoidal area under the
    precision-recall points (optimistic where precision jumps between thresholds, unlike average precision's
    steps); NaN without a positive."""
    y, s = _binary(labels, scores)
    if not y.any():
        return float("nan")
    precision, recall, _ = precision_recall_curve(y, s)
    return float(auc(recall, precision))


def f1_max(labels: np.ndarray, scores: np.ndarray, epsilon: float = 0.0) -> float:
    """Best F1 over all thresholds (``epsilon`` added to P + R: the official code's 1e-6); NaN without a
    positive."""
    y, s = _binary(labels, scores)
    if not y.any():
        return float("nan")
    precision, recall, _ = precision_recall_curve(y, s)
    return float((2 * precision * recall / np.clip(precision + recall + epsilon, 1e-12, None)).max())


def mesh_components(mask: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Connected regions of the masked vertices of a mesh (0: unmasked, 1..n: regions), joined by face edges."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    mask = np.asarray(mask, bool)
    faces = np.asarray(faces, np.int64)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]) if len(faces) else \
        np.zeros((0, 2), np.int64)
    edges = edges[mask[edges[:, 0]] & mask[edges[:, 1]]]
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(mask), len(mask)))
    _, component = connected_components(graph, directed=False)
    labels = np.zeros(len(mask), np.int64)
    _, labels[mask] = np.unique(component[mask], return_inverse=True)
    labels[mask] += 1
    return labels


def aupro(masks: list[np.ndarray], maps: list[np.ndarray], fpr_limit: float = 0.3, steps: int = 200,
          labelled: list[np.ndarray] | None = None) -> float:
    """Area under the per-region-overlap curve up to ``fpr_limit``, normalised to [0, 1].

    Regions are the connected components of each ground-truth mask (pixels: 4-connected ``ndimage.label``;
    meshes: pass ``labelled`` from ``mesh_components``); FPR is over all normal pixels or
    vertices.
    """
    regions = []
    for k, mask in enumerate(masks):
        if labelled is not None:
            components, count = labelled[k], int(labelled[k].max(initial=0))
        else:
            components, count = ndimage.label(mask)
        regions += [(k, components == r) for r in range(1, count + 1)]
    if not regions:
        return float("nan")
    normal_scores = np.concatenate([m[~g] for m, g in zip(maps, masks, strict=True)])
    if normal_scores.size == 0:
        return float("nan")
    thresholds = np.quantile(normal_scores, np.linspace(1, 1 - fpr_limit, steps))
    fprs = np.array([float((normal_scores > t).mean()) for t in thresholds])
    pros = np.array([float(np.mean([(maps[k][region] > t).mean() for k, region in regions])) for t in thresholds])
    # PRO as a function of FPR: best overlap reachable at each FPR, held constant up to the limit
    xs = np.unique(fprs)
    ys = np.maximum.accumulate(np.array([pros[fprs == x].max() for x in xs]))
    grid = np.linspace(0, fpr_limit, 301)
    return float(trapezoid(np.interp(grid, xs, ys), grid) / fpr_limit)
