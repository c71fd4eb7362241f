"""Detection and localisation metrics: AUROC, AUPR, F1-max, AUPRO (FPR limit 0.3)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _sorted_counts(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order].astype(np.float64)
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    return tps, fps, s[distinct]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN when only one class is present."""
    labels = np.asarray(labels).ravel().astype(bool)
    scores = np.asarray(scores, np.float64).ravel()
    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    tps, fps, _ = _sorted_counts(labels, scores)
    tpr = np.r_[0, tps / pos]
    fpr = np.r_[0, fps / neg]
    return float(np.trapezoid(tpr, fpr))


def _precision_recall(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Precision and recall at every distinct threshold; None when there is no positive."""
    labels = np.asarray(labels).ravel().astype(bool)
    if labels.sum() == 0:
        return None
    tps, fps, _ = _sorted_counts(labels, np.asarray(scores, np.float64).ravel())
    return tps / (tps + fps), tps / labels.sum()


def aupr(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (step-wise area under the precision-recall curve)."""
    curve = _precision_recall(labels, scores)
    if curve is None:
        return float("nan")
    precision, recall = curve
    return float(np.sum(np.diff(np.r_[0, recall]) * precision))


def f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    curve = _precision_recall(labels, scores)
    if curve is None:
        return float("nan")
    precision, recall = curve
    return float((2 * precision * recall / np.clip(precision + recall, 1e-12, None)).max())


def aupro(masks: list[np.ndarray], maps: list[np.ndarray], fpr_limit: float = 0.3, steps: int = 200) -> float:
    """Area under the per-region-overlap curve up to ``fpr_limit``, normalised to [0, 1].

    Regions are the connected components of each ground-truth mask; FPR is over all normal pixels.
    """
    regions = []
    for k, mask in enumerate(masks):
        labelled, count = ndimage.label(mask)
        regions += [(k, labelled == r) for r in range(1, count + 1)]
    if not regions:
        return float("nan")
    normal_scores = np.concatenate([m[~g] for m, g in zip(maps, masks, strict=True)])
    if normal_scores.size == 0:
        return float("nan")
    thresholds = np.quantile(normal_scores, np.linspace(1, 1 - fpr_limit, steps))
    fprs, pros = [], []
    for t in thresholds:
        fprs.append(float((normal_scores > t).mean()))
        pros.append(float(np.mean([(maps[k][region] > t).mean() for k, region in regions])))
    # PRO as a function of FPR: best overlap reachable at each FPR, held constant up to the limit
    fprs, pros = np.asarray(fprs), np.asarray(pros)
    xs = np.unique(fprs)
    ys = np.maximum.accumulate(np.array([pros[fprs == x].max() for x in xs]))
    grid = np.linspace(0, fpr_limit, 301)
    return float(np.trapezoid(np.interp(grid, xs, ys), grid) / fpr_limit)
