"""Scale-out: train and evaluate every category of one generated dataset on the in-process, local-pool and Ray
backends; wall time each, the pool's speed-up over one process and Ray's overhead against the pool.

``--size full`` gives published-size samples; the default (small) keeps the run within minutes on 2 cores.
Ray runs as a local runtime here (``--address`` to use a cluster). Results must be identical across backends.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from mulsen.core.parallel import Executor, InProcess, LocalPool, RayCluster, available_cores
from mulsen.dataset.reader import MulsenDataset
from mulsen.detection.config import DetectorConfig, all_combinations
from mulsen.detection.evaluate import evaluate_category
from mulsen.detection.model import TripleADModel
from mulsen.hardware_mocks.world.generate import GenerationConfig, generate_dataset
from mulsen.hardware_mocks.world.parts import CATEGORIES


def run(ds: MulsenDataset, executor: Executor) -> tuple[float, list[dict[str, float]]]:
    start = time.perf_counter()
    aurocs = []
    for category in ds.categories:
        model = TripleADModel(category, DetectorConfig()).fit(ds.load, ds.records(category, "train"),
                                                              workers=executor)
        aurocs.append(evaluate_category(ds, model, all_combinations(), jobs=executor).object_auroc)
    return time.perf_counter() - start, aurocs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, help="reuse (or create) the generated dataset here")
    parser.add_argument("--size", choices=("small", "full"), default="small")
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--test", type=int, default=10)
    parser.add_argument("--address", help="a Ray cluster (default: a local Ray runtime)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "ds"
        if not root.exists():
            config = GenerationConfig(categories=CATEGORIES, train=args.train, test_good=args.test // 2,
                                      test_bad=args.test - args.test // 2, size=args.size, seed=21)
            generate_dataset(root, config, jobs=available_cores())
        ds = MulsenDataset(root)
        samples = sum(len(ds.records(c, s)) for c in ds.categories for s in ("train", "test"))
        print(f"scale_dataset: {len(ds.categories)} categories, {samples} samples ({args.size})")
        times, results = {}, {}
        with threadpool_limits(1):  # one core: in process, BLAS would use every core for the kNN and coresets
            times["one_core"], results["one_core"] = run(ds, InProcess())
        print(f"train_evaluate_s_one_core: {times['one_core']:.1f} s")
        for executor in (InProcess(), LocalPool(), RayCluster(args.address)):
            times[executor.name], results[executor.name] = run(ds, executor)
            print(f"train_evaluate_s_{executor.name}: {times[executor.name]:.1f} s")
        print(f"speedup_local_over_one_core: {times['one_core'] / times['local']:.2f} x ({available_cores()} cores)")
        print(f"speedup_local_over_inprocess: {times['inprocess'] / times['local']:.2f} x (in process, BLAS threaded)")
        print(f"ray_overhead_over_local: {100 * (times['ray'] / times['local'] - 1):.1f} %")
        same = results["one_core"] == results["inprocess"] == results["local"] == results["ray"]
        print(f"identical_results: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
