"""Fusion and decision: score normalisation, the decision gating unit, thresholds.

Scores are normalised with statistics of *held-out* training normals (never the samples that built the
banks); the gate (``SGDOneClassSVM(nu=0.5, max_iter=1000, random_state=42)``, a learned linear weighting)
is fitted on those held-out scores divided by their spread, or with ``gate_fit="paper"`` as the original
code does: on the bank samples' own (in-sample) raw scores, its ``score_samples`` the fused score.
Columns are score columns (``DetectorConfig.score_columns``): the modalities, and with the paper's bank
views each combination's own scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mulsen.core.errors import ConfigError, MulsenError

from .config import FUSIONS, MODALITY_KEYS, DetectorConfig


def gate_weights(scores: np.ndarray) -> np.ndarray:
    """Fit the paper's decision gating unit on positive anomaly scores; its ``score_samples`` is ``x @ coef_``.

    The one-class SVM separates the data from the origin, so it needs the scores as the paper feeds them:
    positive (raw distances, here divided by their spread). On centred z-scores its optimum is w = 0 and on
    negative ones w < 0, which ranks anomalies *below* normals; such fits are refused, never used.
    """
    from sklearn.linear_model import SGDOneClassSVM

    svm = SGDOneClassSVM(nu=0.5, max_iter=1000, random_state=42)
    svm.fit(scores)
    weights = np.asarray(svm.coef_, np.float64).ravel()
    if not np.all(np.isfinite(weights)) or not np.all(weights > 1e-9 * np.abs(weights).max(initial=1.0)):
        raise MulsenError(f"the decision gate fit is degenerate (weights {np.round(weights, 6).tolist()}, all must "
                          "be positive): train with --fusion zmean, or with more held-out normals")
    return weights


@dataclass
class Calibration:
    """Object scores of normals the banks never saw (rows: samples, columns: score columns); without
    held-out normals (hold-out fraction 0, the paper's way) the bank samples' own scores."""

    columns: tuple[str, ...]
    holdout_scores: np.ndarray
    insample_scores: np.ndarray  # bank samples' own scores: the paper's gate input, else a diagnostic
    _gates: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def norm_mean(self) -> np.ndarray:
        return self.holdout_scores.mean(axis=0) if len(self.holdout_scores) else np.zeros(len(self.columns))

    @property
    def norm_std(self) -> np.ndarray:
        if not len(self.holdout_scores):
            return np.ones(len(self.columns))
        return self.holdout_scores.std(axis=0) + 1e-6 * (np.abs(self.norm_mean) + 1)

    def normalise(self, scores: dict[str, float]) -> dict[str, float]:
        mean, std = self.norm_mean, self.norm_std
        idx = {c: i for i, c in enumerate(self.columns)}
        return {c: float((s - mean[idx[c]]) / std[idx[c]]) for c, s in scores.items() if c in idx}

    def fuse(self, scores: dict[str, float], combo: tuple[str, ...], config: DetectorConfig,
             fusion: str | None = None) -> float:
        """Fused anomaly score of a modality combination (single modality: its raw score, as the paper);
        ``scores`` holds every score column (``scoring.score_row``)."""
        fusion = fusion or config.fusion
        if len(combo) == 1:
            return float(scores[combo[0]])
        columns = [config.column(m, combo) for m in combo]
        if fusion in ("zmean", "max"):
            z = self.normalise({c: scores[c] for c in columns})
            vec = np.array([z[c] for c in columns])
            return float(vec.mean() if fusion == "zmean" else vec.max())
        if fusion == "gate":  # a positive weighting of the (spread-scaled, or raw) scores
            return float(self._gate_inputs(np.array([[scores[c] for c in columns]]), combo, config)[0]
                         @ self.gate(combo, config))
        raise ConfigError(f"unknown fusion {fusion!r} (use {', '.join(FUSIONS)})")

    def _gate_inputs(self, rows: np.ndarray, combo: tuple[str, ...], config: DetectorConfig) -> np.ndarray:
        """Score rows of a combination's columns as the gate sees them: times each modality's lambda, and
        (holdout fit) divided by the held-out spread; the paper's fit takes the raw scores."""
        weights = np.array([config.gate_lambda[MODALITY_KEYS.index(m)] for m in combo])
        if config.gate_fit == "paper":
            return rows * weights
        idx = [self.columns.index(config.column(m, combo)) for m in combo]
        return rows * weights / self.norm_std[idx]

    def gate(self, combo: tuple[str, ...], config: DetectorConfig) -> np.ndarray:
        """Gate weights of a combination, fitted once on the calibration scores."""
        if combo not in self._gates:
            idx = [self.columns.index(config.column(m, combo)) for m in combo]
            source = self.insample_scores if config.gate_fit == "paper" else self.holdout_scores
            self._gates[combo] = gate_weights(self._gate_inputs(source[:, idx], combo, config))
        return self._gates[combo]

    def threshold(self, combo: tuple[str, ...], config: DetectorConfig, fusion: str | None = None,
                  false_alarm_rate: float | None = None) -> float:
        """Decision threshold: the (1 - FAR) quantile of the held-out normals' fused scores."""
        rate = config.false_alarm_rate if false_alarm_rate is None else false_alarm_rate
        if not 0 < rate < 1:
            raise ConfigError(f"false-alarm rate must be in (0, 1), got {rate:g}")
        fused = [self.fuse(dict(zip(self.columns, row, strict=True)), combo, config, fusion)
                 for row in self.holdout_scores]
        return float(np.quantile(fused, 1 - rate))
