"""Training orchestration: hold-out split, feature extraction on worker threads, banks, calibration.

The computation itself is in ``scoring`` (pure functions); this module decides which normals build the
banks and which calibrate, and keeps both cores busy (anomalib's ``lightning_model`` role).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from mulsen.core.errors import MulsenError
from mulsen.dataset.records import SampleData

from .config import DetectorConfig
from .detect import BACKGROUND_QUANTILE, InputProfile, SampleShape
from .fusion import Calibration
from .memory_bank import MemoryBank
from .scoring import extract, fit_bank, object_score, patch_scores

WORKERS = 2  # loading and extraction release the GIL for most of their work (PIL, numpy, open3d, torch)
INSAMPLE_DIAGNOSTIC = 20  # in-sample rows kept when the gate does not need them all
T = TypeVar("T")
Progress = Callable[[Iterable[T], int], Iterable[T]]


def holdout_split(count: int, config: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    """(held-out indices, bank indices) of ``count`` training normals, drawn from the config's seed."""
    if count < config.min_holdout + 2:
        raise MulsenError(f"{count} training samples are too few (need at least {config.min_holdout + 2}: "
                          f"{config.min_holdout} held out to calibrate, 2 for the banks)")
    order = np.random.default_rng(config.seed).permutation(count)
    n_hold = max(config.min_holdout, round(count * config.holdout_fraction))
    return order[:n_hold], order[n_hold:]


def train_banks(load: Callable[[T], SampleData], records: Sequence[T], config: DetectorConfig,
                progress: Progress | None = None, workers: int = WORKERS
                ) -> tuple[dict[str, MemoryBank], Calibration, InputProfile]:
    """Banks from most training normals, calibration scores from the held-out rest, and the range of inputs
    seen; results keep record order."""
    hold_idx, bank_idx = holdout_split(len(records), config)
    modalities = config.modalities
    shapes: dict[int, SampleShape] = {}

    def extract_all(i: int) -> dict[str, tuple[np.ndarray, Any]]:
        data = load(records[i])
        shapes[i] = SampleShape.of(data)
        return {m: extract(m, data, config) for m in modalities}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        extracted = pool.map(extract_all, list(bank_idx))
        bank_cache = list(progress(extracted, len(bank_idx)) if progress else extracted)
    features = [[per[m][0] for per in bank_cache] for m in modalities]
    with ThreadPoolExecutor(max_workers=workers) as pool:  # the greedy coreset is GEMV-bound
        built = pool.map(fit_bank, features, [config] * len(modalities), range(len(modalities)))
        banks = dict(zip(modalities, built, strict=True))
    del features

    def row(per: dict[str, tuple[np.ndarray, Any]]) -> list[float]:
        return [object_score(m, patch_scores(banks[m], *per[m]), config) for m in modalities]

    # In-sample scores: the paper's gate is fitted on all of them; otherwise a few are kept as a
    # diagnostic (how much lower than held-out scores they are), which is much cheaper.
    sampled = bank_cache if config.gate_fit == "paper" else bank_cache[:INSAMPLE_DIAGNOSTIC]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        insample = np.array(list(pool.map(row, sampled)))
    del bank_cache
    def holdout_row(i: int) -> tuple[list[float], list[float]]:
        """Object scores and the map's background level (``BACKGROUND_QUANTILE`` of its patches) per modality."""
        per = extract_all(i)
        patches = [patch_scores(banks[m], *per[m]) for m in modalities]
        return ([object_score(m, p, config) for m, p in zip(modalities, patches, strict=True)],
                [float(np.quantile(p, BACKGROUND_QUANTILE)) for p in patches])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(holdout_row, list(hold_idx)))
    holdout = np.array([r[0] for r in rows])
    levels = np.array([r[1] for r in rows])
    background = {m: (float(levels[:, k].mean()), float(levels[:, k].std())) for k, m in enumerate(modalities)}
    profile = InputProfile.of([shapes[i] for i in sorted(shapes)], background)
    return banks, Calibration(modalities, holdout, insample), profile
