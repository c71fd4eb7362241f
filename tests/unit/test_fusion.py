"""Fusion that helps: positive gate weights, monotone fused scores, degenerate gates refused."""

from __future__ import annotations

import numpy as np
import pytest

from mulsen.core.errors import MulsenError
from mulsen.detection.config import DetectorConfig
from mulsen.detection.fusion import Calibration, gate_weights

MODALITIES = ("rgb", "infrared", "pointcloud")


def _calibration(seed: int = 0) -> Calibration:
    rng = np.random.default_rng(seed)
    scale = np.array([4.0, 2.0, 60.0])  # raw object scores live on very different scales per modality
    holdout = scale * rng.lognormal(0, 0.15, (12, 3))
    insample = 0.7 * scale * rng.lognormal(0, 0.15, (20, 3))
    return Calibration(MODALITIES, holdout, insample)


@pytest.mark.parametrize("gate_fit", ["holdout", "paper"])
def test_gate_weights_are_positive_on_either_calibration_set(gate_fit: str):
    calibration, config = _calibration(), DetectorConfig(fusion="gate", gate_fit=gate_fit)
    for combo in (MODALITIES, ("rgb", "pointcloud")):
        weights = calibration.gate(combo, config)
        assert weights.shape == (len(combo),) and np.all(weights > 0)


@pytest.mark.parametrize("fusion", ["zmean", "max", "gate"])
def test_a_fused_score_never_decreases_when_one_modality_rises(fusion: str):
    calibration, config = _calibration(1), DetectorConfig(fusion=fusion)
    rng = np.random.default_rng(2)
    for _ in range(200):
        base = dict(zip(MODALITIES, calibration.holdout_scores[rng.integers(12)] * rng.uniform(0.5, 3, 3),
                        strict=True))
        fused = calibration.fuse(base, MODALITIES, config)
        for m in MODALITIES:
            raised = {**base, m: base[m] * rng.uniform(1.0, 5.0)}
            assert calibration.fuse(raised, MODALITIES, config) >= fused - 1e-12
    # and a clear anomaly in one modality lifts the fused score above the held-out threshold
    threshold = calibration.threshold(MODALITIES, config)
    typical = dict(zip(MODALITIES, np.median(calibration.holdout_scores, axis=0), strict=True))
    assert calibration.fuse({**typical, "infrared": 10 * typical["infrared"]}, MODALITIES, config) > threshold


def test_a_degenerate_gate_is_refused_not_used():
    centred = np.random.default_rng(3).normal(size=(30, 3))  # z-scores: what the old code fed the SVM
    with pytest.raises(MulsenError, match="gate fit is degenerate"):
        gate_weights(centred - centred.mean(axis=0))
