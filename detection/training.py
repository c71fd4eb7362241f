"""Training orchestration: hold-out split, feature extraction on worker processes, banks, calibration.

The computation itself is in ``scoring`` (pure functions); this module decides which normals build the
banks and which calibrate, and keeps both cores busy (anomalib's ``lightning_model`` role).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar

import numpy as np

from mulsen.core.errors import MulsenError
from mulsen.core.parallel import Executor, available_cores
from mulsen.dataset.records import SampleData

from .config import DetectorConfig
from .detect import BACKGROUND_QUANTILE, InputProfile, SampleShape
from .fusion import Calibration
from .memory_bank import MemoryBank
from .scoring import bank_candidates, extract, fit_bank, view_scores, views

WORKERS = available_cores()  # processes for loading and extraction, the banks, and scoring
# in-sample rows kept when the gate does not need them all: a diagnostic (how much lower than held-out scores
# they lie), so a few suffice; each costs a full scoring (20 cost 1.3 s of a 100-normal training on 2 cores)
INSAMPLE_DIAGNOSTIC = 6
T = TypeVar("T")
Progress = Callable[[Iterable[T], int], Iterable[T]]


def holdout_split(count: int, config: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    """(held-out indices, bank indices) of ``count`` training normals, drawn from the config's seed; with a
    hold-out fraction of 0 (the paper's) every normal builds the banks and none is held out."""
    if config.holdout_fraction == 0:
        if count < 2:
            raise MulsenError(f"{count} training samples are too few (need at least 2)")
        return np.zeros(0, np.int64), np.arange(count)
    if count < config.min_holdout + 2:
        raise MulsenError(f"{count} training samples are too few (need at least {config.min_holdout + 2}: "
                          f"{config.min_holdout} held out to calibrate, 2 for the banks)")
    order = np.random.default_rng(config.seed).permutation(count)
    n_hold = max(config.min_holdout, round(count * config.holdout_fraction))
    return order[:n_hold], order[n_hold:]


Extracted = tuple[SampleShape, dict[str, tuple[np.ndarray, Any]], dict[str, np.ndarray]]


def extract_sample(load: Callable[[T], SampleData], config: DetectorConfig, task: tuple[T, bool]) -> Extracted:
    """A worker's task: the input's shape, every modality's (features, geometry) of one sample and, for a
    bank sample, the patches it offers to each bank."""
    record, for_bank = task
    data = load(record)
    per = {m: extract(m, data, config, maps=False) for m in config.modalities}
    offered = {m: bank_candidates(per[m][0], config) for m in config.modalities} if for_bank else {}
    return SampleShape.of(data), per, offered


def _fit_one(features: list[list[np.ndarray]], candidates: list[list[np.ndarray]], config: DetectorConfig,
             index: int) -> MemoryBank:
    return fit_bank(features[index], config, index, candidates[index])


def train_banks(load: Callable[[T], SampleData], records: Sequence[T], config: DetectorConfig,
                progress: Progress | None = None, workers: int | Executor = WORKERS
                ) -> tuple[dict[str, MemoryBank], Calibration, InputProfile]:
    """Banks from most training normals, calibration scores from the held-out rest, and the range of inputs
    seen; results keep record order, and are the same on any number of ``workers`` (processes) or any
    executor (``mulsen.core.parallel``)."""
    hold_idx, bank_idx = holdout_split(len(records), config)
    modalities = config.modalities
    run = config.runner(workers)
    order = [int(i) for i in bank_idx] + [int(i) for i in hold_idx]
    tasks = [(records[i], k < len(bank_idx)) for k, i in enumerate(order)]
    extracted = run.map(partial(extract_sample, load, config), tasks, progress)
    profile_shapes = [e[0] for _, e in sorted(zip(order, extracted, strict=True), key=lambda p: p[0])]
    bank_cache = [per for _, per, _ in extracted[:len(bank_idx)]]
    offered = [o for _, _, o in extracted[:len(bank_idx)]]
    held = [per for _, per, _ in extracted[len(bank_idx):]]
    del extracted
    features = [[per[m][0] for per in bank_cache] for m in modalities]
    candidates = [[o[m] for o in offered] for m in modalities]
    # one bank per process: each greedy coreset is a sequential loop of short numpy steps
    built = run.map(partial(_fit_one, features, candidates, config), range(len(modalities)))
    banks = dict(zip(modalities, built, strict=True))
    del features, candidates

    columns = views(banks, config)
    names = config.score_columns

    def scored(per: dict[str, tuple[np.ndarray, Any]]) -> tuple[list[float], list[float]]:
        """Scores of every column and the map's background level (``BACKGROUND_QUANTILE`` of the patches of
        the column the maps come from) per modality."""
        row: dict[str, float] = {}
        levels = []
        for m in modalities:
            got = view_scores(banks[m], *per[m], config, m, {c: v for c, v in columns.items() if v.modality == m})
            row.update({c: score for c, (score, _) in got.items()})
            levels.append(float(np.quantile(got[config.column(m, modalities)][1], BACKGROUND_QUANTILE)))
        return [row[c] for c in names], levels

    # In-sample scores: the paper's gate is fitted on all of them, and without held-out normals they
    # calibrate; otherwise a few are kept as a diagnostic (how much lower than held-out scores they are).
    every = config.gate_fit == "paper" or not len(held)
    sampled = bank_cache if every else bank_cache[:INSAMPLE_DIAGNOSTIC]
    rows = run.map(scored, sampled + held)
    del bank_cache
    insample = np.array([r[0] for r in rows[:len(sampled)]])
    # without held-out normals (the paper's way) the bank samples' own scores stand in: biased low, so
    # thresholds from them let more normals through as anomalous than the false-alarm rate says
    rows = rows[len(sampled):] or rows[:len(sampled)]
    holdout = np.array([r[0] for r in rows])
    levels = np.array([r[1] for r in rows])
    background = {m: (float(levels[:, k].mean()), float(levels[:, k].std())) for k, m in enumerate(modalities)}
    profile = InputProfile.of(profile_shapes, background)
    return banks, Calibration(names, holdout, insample), profile
