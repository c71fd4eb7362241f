"""Weight-free detector on published-size samples: training time, inference per sample, peak memory.

Trains one category from a generated full-size synthetic set (RGB 1280x960, IR 640x480, ~80k-vertex
meshes). ``--train N`` sets the number of normal training samples (the issue's figure uses 100). Inference includes
reading each sample's three files: its latency on one process, and the time per sample when every core
judges samples (``mulsen detect`` / ``evaluate`` with their default ``--jobs``); then where one sample's time goes
(``stage_*`` lines: reading each file, and per modality features, bank search and anomaly map). The machine is
shared and its speed drifts: ``--repeat N`` runs the measurement N times and prints each figure's median.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from mulsen.core.parallel import available_cores, map_ordered
from mulsen.dataset.reader import MulsenDataset
from mulsen.detection.model import DetectorConfig, TripleADModel
from mulsen.hardware_mocks.world.generate import GenerationConfig, generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=100)
    parser.add_argument("--test", type=int, default=12)
    parser.add_argument("--data", type=Path, help="reuse (or create) the generated dataset here")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the whole measurement; figures are medians")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "ds"
        if not root.exists():
            config = GenerationConfig(categories=("capsule",), train=args.train, test_good=args.test // 2,
                                      test_bad=args.test - args.test // 2, size="full", seed=1)
            t = time.perf_counter()
            generate_dataset(root, config, jobs=2)
            print(f"generate_full_s_per_sample: {(time.perf_counter() - t) / (args.train + args.test):.2f} s")
        ds = MulsenDataset(root)
        tests = ds.records("capsule", "test")
        runs: dict[str, list[float]] = {}
        model = None
        for _ in range(args.repeat):
            model = measure(ds, args.train, tests, runs)
        # the machine is shared and its speed drifts: with --repeat, each figure is the median of the runs
        for name, values in runs.items():
            digits = 1 if name.endswith("_normals") else 3
            spread = f" (median of {len(values)}: {min(values):.{digits}f}-{max(values):.{digits}f})" \
                if len(values) > 1 else ""
            print(f"{name}: {float(np.median(values)):.{digits}f} s{spread}")
        print(f"peak_rss: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        assert model is not None
        stages(model, tests)


def measure(ds: MulsenDataset, train: int, tests: list, runs: dict[str, list[float]]) -> TripleADModel:
    """One run: training, the first sample, latency on one process, and the time per sample on every core."""
    def add(name: str, value: float) -> None:
        runs.setdefault(name, []).append(value)

    t = time.perf_counter()
    model = TripleADModel("capsule", DetectorConfig()).fit(ds.load, ds.records("capsule", "train"))
    add(f"train_s_{train}_normals", time.perf_counter() - t)
    add("train_s_per_normal", (time.perf_counter() - t) / train)

    def judge(record) -> float:  # reading the three sensor files included (not the masks), as an inspector
        data = ds.load(record, ground_truth=False)
        return model.fuse({m: r.score for m, r in model.score(data).items()}, model.config.modalities)

    t = time.perf_counter()
    judge(tests[0])  # the first sample also pays the imports (open3d, scipy.sparse): a line's start-up
    if "inference_first_sample_s" not in runs:  # only the first run starts cold; later ones have imported all
        add("inference_first_sample_s", time.perf_counter() - t)
    t = time.perf_counter()
    for r in tests:
        judge(r)
    add("inference_latency_s_per_sample", (time.perf_counter() - t) / len(tests))
    # throughput: enough samples per worker that the pool's start-up is not what is measured (each sample
    # three times: a line judges a stream of parts)
    stream = list(tests) * 3
    t = time.perf_counter()
    map_ordered(judge, stream, available_cores())
    add(f"inference_s_per_sample_{available_cores()}_processes", (time.perf_counter() - t) / len(stream))
    return model


def stages(model: TripleADModel, tests: list) -> None:
    """Where one sample's time goes on one process: reading each file, and per modality its features, the bank
    search and the anomaly map (the pieces ``scoring.score_sample`` runs in turn, timed one by one)."""
    from mulsen.dataset.formats import read_ir, read_rgb
    from mulsen.dataset.meshio import read_stl
    from mulsen.dataset.records import SampleData
    from mulsen.detection.features import PointGroups, upsample_scores
    from mulsen.detection.scoring import extract, view_scores, views

    spent: dict[str, float] = {}

    def timed(name: str, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
        return out

    columns = views(model.banks, model.config)
    for record in tests:
        rgb = timed("read_rgb", read_rgb, record.rgb_path)
        ir = timed("read_ir", read_ir, record.ir_path)
        mesh = timed("read_stl", read_stl, record.pc_path)
        # what ds.load(record, ground_truth=False) returns, from the reads just timed
        data = SampleData(record, rgb, ir, mesh, np.zeros(rgb.shape[:2], bool), np.zeros(ir.shape, bool),
                          np.zeros(len(mesh.vertices), bool))
        for m in model.config.modalities:
            feats, geometry = timed(f"{m}_features", extract, m, data, model.config)
            wanted = {c: v for c, v in columns.items() if v.modality == m}
            scored = timed(f"{m}_search", view_scores, model.banks[m], feats, geometry, model.config, m, wanted)
            if isinstance(geometry, PointGroups):
                timed(f"{m}_map", geometry.vertex_map, scored[m][1])
            else:
                timed(f"{m}_map", upsample_scores, scored[m][1], geometry, model.config.map_protocol)
    for name, seconds in spent.items():
        print(f"stage_{name}_s: {seconds / len(tests):.4f} s")


if __name__ == "__main__":
    main()
