"""The same model and the same evaluation on every backend: in process, local worker processes, and a local
Ray runtime (issue 19's equivalence test; loopback only, ports chosen by Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mulsen.core.parallel import InProcess, LocalPool, RayCluster, executor
from mulsen.dataset.reader import MulsenDataset
from mulsen.detection.config import DetectorConfig, all_combinations
from mulsen.detection.evaluate import evaluate_category
from mulsen.detection.model import TripleADModel
from mulsen.hardware_mocks.world.generate import GenerationConfig, generate_dataset


@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _model_arrays(model: TripleADModel) -> dict[str, np.ndarray]:
    out = {"holdout": model.holdout_scores, "insample": model.insample_scores}
    for m, bank in model.banks.items():
        out[f"{m}.features"], out[f"{m}.tolerance"] = bank.features, bank.tolerance
        out[f"{m}.mean"], out[f"{m}.scale"] = bank.mean, bank.scale
    return out


def test_models_and_evaluations_are_identical_on_every_backend(tmp_path: Path, ray_runtime):
    generate_dataset(tmp_path / "ds", GenerationConfig(categories=("cube",), train=8, test_good=2, test_bad=3,
                                                       size="small", seed=11))
    ds = MulsenDataset(tmp_path / "ds")
    records = ds.records("cube", "train")
    results = {}
    for run in (InProcess(), LocalPool(2), RayCluster()):
        model = TripleADModel("cube", DetectorConfig()).fit(ds.load, records, workers=run)
        model.save(tmp_path / run.name)
        evaluation = evaluate_category(ds, model, all_combinations(), jobs=run)
        results[run.name] = (_model_arrays(model), evaluation)
    reference, ref_eval = results["inprocess"]
    for name in ("local", "ray"):
        arrays, evaluation = results[name]
        for key, value in reference.items():
            assert np.array_equal(arrays[key], value), (name, key)
        assert evaluation.object_auroc == ref_eval.object_auroc
        assert [s.scores for s in evaluation.samples] == [s.scores for s in ref_eval.samples]
    # the saved model files are byte for byte the same, whatever trained them
    for name in ("local", "ray"):
        for path in sorted((tmp_path / "inprocess").rglob("*")):
            if path.is_file() and path.suffix != ".json":
                assert path.read_bytes() == (tmp_path / name / path.relative_to(tmp_path / "inprocess")).read_bytes()


def test_executor_choices():
    assert isinstance(executor("local", 1), InProcess) and executor("local", 3) == LocalPool(3)
    assert executor("ray", address="auto") == RayCluster("auto")
    with pytest.raises(ValueError):
        executor("dask")
