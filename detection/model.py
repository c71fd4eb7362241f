"""MulSen-TripleAD: one PatchCore memory bank per modality plus a decision gating unit.

``TripleADModel`` ties the parts together: ``scoring`` (pure computation), ``fusion`` (normalisation, gate,
threshold), ``training`` (split and workers) and ``persistence`` (model folders). ``detect`` returns a
``Detection``; the command line only prints and saves it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mulsen.core.errors import MulsenError
from mulsen.core.parallel import Executor
from mulsen.dataset.records import SampleData

from .config import (
    FUSIONS,
    MODALITY_KEYS,
    SHORT,
    DetectorConfig,
    all_combinations,
    combo_name,
    parse_modalities,
)
from .detect import Detection, InputProfile, ModelIdentity, SampleShape
from .fusion import Calibration, gate_weights
from .memory_bank import MemoryBank
from .persistence import load_model, save_model
from .scoring import ModalityResult, extract, score_row, score_sample, topk_mean
from .training import WORKERS, Progress, train_banks

__all__ = ["FUSIONS", "MODALITY_KEYS", "SHORT", "DetectorConfig", "ModalityResult", "TripleADModel",
           "all_combinations", "combo_name", "extract", "gate_weights", "parse_modalities", "score_row", "topk_mean"]


class TripleADModel:
    """A fitted detector for one category."""

    def __init__(self, category: str, config: DetectorConfig) -> None:
        self.category = category
        self.config = config
        self.banks: dict[str, MemoryBank] = {}
        columns = config.score_columns
        self.calibration = Calibration(columns, np.zeros((0, len(columns))), np.zeros((0, len(columns))))
        self.inputs: InputProfile | None = None  # what it was trained on (None: a model saved before profiles)
        self.identity: ModelIdentity | None = None  # set when loaded from a folder

    # -- training -----------------------------------------------------------------
    def fit(self, load: Callable[[Any], SampleData], records: Sequence[Any], progress: Progress | None = None,
            workers: int | Executor = WORKERS) -> TripleADModel:
        """Build the banks from most training normals, calibrate on the held-out rest."""
        try:
            self.banks, self.calibration, self.inputs = train_banks(load, records, self.config, progress, workers)
            if self.config.fusion == "gate" and len(self.config.modalities) > 1:  # refuse a degenerate gate now
                self.calibration.gate(self.config.modalities, self.config)
        except MulsenError as exc:
            raise MulsenError(f"{self.category}: {exc}") from None
        return self

    @property
    def holdout_scores(self) -> np.ndarray:
        return self.calibration.holdout_scores

    @property
    def insample_scores(self) -> np.ndarray:
        return self.calibration.insample_scores

    @property
    def norm_mean(self) -> np.ndarray:
        return self.calibration.norm_mean

    @property
    def norm_std(self) -> np.ndarray:
        return self.calibration.norm_std

    # -- scoring ------------------------------------------------------------------
    def score(self, data: SampleData, modalities: tuple[str, ...] | None = None) -> dict[str, ModalityResult]:
        return score_sample(self.banks, data, self.config, modalities or self.config.modalities)

    def normalise(self, scores: dict[str, float]) -> dict[str, float]:
        return self.calibration.normalise(scores)

    def fuse(self, scores: dict[str, float], combo: tuple[str, ...], fusion: str | None = None) -> float:
        """Fused anomaly score of a modality combination (single modality: its raw score, as the paper);
        ``scores``: every score column of a sample (``score_row``)."""
        return self.calibration.fuse(scores, combo, self.config, fusion)

    def threshold(self, combo: tuple[str, ...], fusion: str | None = None, false_alarm_rate: float | None = None
                  ) -> float:
        """Decision threshold: the (1 - FAR) quantile of the held-out normals' fused scores."""
        return self.calibration.threshold(combo, self.config, fusion, false_alarm_rate)

    def detect(self, data: SampleData, sample: str = "", false_alarm_rate: float | None = None) -> Detection:
        """The verdict on one sample with every modality of the model, at its calibrated false-alarm rate."""
        combo = self.config.modalities
        rate = self.config.false_alarm_rate if false_alarm_rate is None else false_alarm_rate
        results = self.score(data)
        row = score_row(results)
        raw = {m: row[self.config.column(m, combo)] for m in combo}  # as the model's own method scores them
        z = self.normalise({self.config.column(m, combo): raw[m] for m in combo})
        normalised = {m: z[self.config.column(m, combo)] for m in combo}
        maps = {m: r.anomaly_map for m, r in results.items()}
        warnings = self.inputs.warnings(SampleShape.of(data), combo, maps) if self.inputs else []
        return Detection(sample or str(data.record.rgb_path.parent), self.category, combo, raw, normalised,
                         self.fuse(row, combo), self.config.fusion, self.threshold(combo, false_alarm_rate=rate),
                         rate, maps, tuple(warnings))

    # -- persistence ---------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        return save_model(folder, self.category, self.config, self.banks, self.calibration, self.inputs)

    @classmethod
    def load(cls, folder: str | Path, modalities: tuple[str, ...] | None = None, device: str | None = None
             ) -> TripleADModel:
        """A saved model; ``device`` (cpu, cuda) overrides the one it was trained on."""
        loaded = load_model(folder, modalities, device)
        model = cls(loaded.category, loaded.config)
        model.banks, model.calibration, model.inputs = loaded.banks, loaded.calibration, loaded.inputs
        model.identity = ModelIdentity(str(folder), loaded.category, loaded.arrays_sha256, loaded.toolkit_version)
        return model
