"""The process-pool seam: same results in item order as in process, errors raised in the caller."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from mulsen.core.errors import DataFormatError, DeviceError, MulsenError
from mulsen.core.parallel import available_cores, map_ordered
from mulsen.core.records import RecordError


def _square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise DataFormatError(f"/data/{x}.stl", "binary STL is truncated")
    return x


def test_results_come_back_in_item_order_from_other_processes():
    items = list(range(23))
    serial = map_ordered(_square_and_pid, items, 1)
    pooled = map_ordered(_square_and_pid, items, 2)
    assert [r for r, _ in pooled] == [r for r, _ in serial] == [x * x for x in items]
    assert {pid for _, pid in serial} == {os.getpid()}
    assert os.getpid() not in {pid for _, pid in pooled}
    seen: list[int] = []

    def progress(results, total):
        seen.append(total)
        yield from results

    map_ordered(_square_and_pid, items, 2, progress=progress)
    assert seen == [23]
    with pytest.raises(ValueError):
        map_ordered(_square_and_pid, items, 0)
    assert available_cores() >= 1


def test_a_worker_error_reaches_the_caller_as_the_same_one_line_error():
    with pytest.raises(DataFormatError) as info:
        map_ordered(_fail_on_three, list(range(8)), 2)
    assert str(info.value) == "/data/3.stl: binary STL is truncated"
    assert info.value.problem == "binary STL is truncated"


@pytest.mark.parametrize("error", [DataFormatError("/a/b.png", "not a PNG"), DeviceError("heater", "no answer"),
                                   MulsenError("plain"), RecordError("steps.arm", "not a pose")])
def test_errors_pickle_with_their_message(error):
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error)


def test_training_gives_the_same_model_on_one_or_two_processes(tmp_path):
    """Extraction order and reductions do not depend on how many processes ran them."""
    from mulsen.dataset.reader import MulsenDataset
    from mulsen.detection.config import DetectorConfig
    from mulsen.detection.model import TripleADModel
    from mulsen.hardware_mocks.world.generate import GenerationConfig, generate_dataset

    generate_dataset(tmp_path / "ds", GenerationConfig(categories=("capsule",), train=7, test_good=1, test_bad=1,
                                                       size="small", seed=5))
    ds = MulsenDataset(tmp_path / "ds")
    records = ds.records("capsule", "train")
    one = TripleADModel("capsule", DetectorConfig()).fit(ds.load, records, workers=1)
    two = TripleADModel("capsule", DetectorConfig()).fit(ds.load, records, workers=2)
    for m in one.banks:
        assert np.array_equal(one.banks[m].features, two.banks[m].features)
        assert np.array_equal(one.banks[m].tolerance, two.banks[m].tolerance)
    assert np.array_equal(one.holdout_scores, two.holdout_scores)
    assert one.inputs == two.inputs
