"""Fusion and decision: score normalisation, the decision gating unit, thresholds.

Scores are normalised with statistics of *held-out* training normals (never the samples that built the
banks); the gate (``SGDOneClassSVM(nu=0.5, max_iter=1000, random_state=42)``, a learned linear weighting)
is fitted on those held-out scores, or in-sample with ``gate_fit="paper"`` as the original code does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mulsen.core.errors import ConfigError, MulsenError

from .config import FUSIONS, DetectorConfig


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
    """Per-modality object scores of normals the banks never saw (rows: samples, columns: modalities)."""

    modalities: tuple[str, ...]
    holdout_scores: np.ndarray
    insample_scores: np.ndarray  # bank samples' own scores: the paper's gate input, else a diagnostic
    _gates: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def norm_mean(self) -> np.ndarray:
        return self.holdout_scores.mean(axis=0) if len(self.holdout_scores) else np.zeros(len(self.modalities))

    @property
    def norm_std(self) -> np.ndarray:
        if not len(self.holdout_scores):
            return np.ones(len(self.modalities))
        return self.holdout_scores.std(axis=0) + 1e-6 * (np.abs(self.norm_mean) + 1)

    def normalise(self, scores: dict[str, float]) -> dict[str, float]:
        mean, std = self.norm_mean, self.norm_std
        idx = {m: i for i, m in enumerate(self.modalities)}
        return {m: float((s - mean[idx[m]]) / std[idx[m]]) for m, s in scores.items()}

    def fuse(self, scores: dict[str, float], combo: tuple[str, ...], config: DetectorConfig,
             fusion: str | None = None) -> float:
        """Fused anomaly score of a modality combination (single modality: its raw score, as the paper)."""
        fusion = fusion or config.fusion
        if len(combo) == 1:
            return float(scores[combo[0]])
        z = self.normalise({m: scores[m] for m in combo})
        vec = np.array([z[m] for m in combo])
        if fusion == "zmean":
            return float(vec.mean())
        if fusion == "max":
            return float(vec.max())
        if fusion == "gate":  # a positive weighting of the scores scaled by their held-out spread
            idx = [self.modalities.index(m) for m in combo]
            scaled = np.array([scores[m] for m in combo]) / self.norm_std[idx]
            return float(scaled @ self.gate(combo, config))
        raise ConfigError(f"unknown fusion {fusion!r} (use {', '.join(FUSIONS)})")

    def gate(self, combo: tuple[str, ...], config: DetectorConfig) -> np.ndarray:
        """Gate weights of a combination, fitted once on the calibration scores."""
        if combo not in self._gates:
            idx = [self.modalities.index(m) for m in combo]
            source = self.insample_scores if config.gate_fit == "paper" else self.holdout_scores
            self._gates[combo] = gate_weights(source[:, idx] / self.norm_std[idx])
        return self._gates[combo]

    def threshold(self, combo: tuple[str, ...], config: DetectorConfig, fusion: str | None = None,
                  false_alarm_rate: float | None = None) -> float:
        """Decision threshold: the (1 - FAR) quantile of the held-out normals' fused scores."""
        rate = config.false_alarm_rate if false_alarm_rate is None else false_alarm_rate
        if not 0 < rate < 1:
            raise ConfigError(f"false-alarm rate must be in (0, 1), got {rate:g}")
        fused = [self.fuse(dict(zip(self.modalities, row, strict=True)), combo, config, fusion)
                 for row in self.holdout_scores]
        return float(np.quantile(fused, 1 - rate))
