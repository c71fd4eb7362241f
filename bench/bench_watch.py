"""Inspection on the line: latency from a capture appearing (renamed into place) to its verdict line.

Trains one full-size category (RGB 1280x960, IR 640x480, ~80k-vertex meshes) on ``--train`` normals of a
generated set, starts ``watch`` on an empty captures folder, then moves fresh parts in one at a time.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from mulsen.dataset.formats import write_ir, write_rgb
from mulsen.dataset.meshio import write_stl
from mulsen.dataset.reader import MulsenDataset
from mulsen.detection.config import DetectorConfig
from mulsen.detection.inspector import Detector, Verdict, watch
from mulsen.hardware_mocks.world.generate import GenerationConfig, generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=20)
    parser.add_argument("--parts", type=int, default=6)
    parser.add_argument("--data", type=Path, help="reuse (or create) the generated full-size dataset here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = args.data or work / "ds"
        if not root.exists():
            generate_dataset(root, GenerationConfig(categories=("capsule",), train=args.train, test_good=args.parts,
                                                    test_bad=0, size="full", seed=1), jobs=2)
        dataset = MulsenDataset(root)
        records = dataset.records("capsule", "train")[: args.train]
        _fit(dataset, records).save(work / "models" / "capsule")
        staging, captures = work / "staging", work / "captures" / "capsule"
        captures.mkdir(parents=True)
        parts = [dataset.load(r) for r in dataset.records("capsule", "test")[: args.parts]]
        for i, data in enumerate(parts):
            folder = staging / f"{i:03d}"
            folder.mkdir(parents=True)
            write_rgb(folder / "rgb.png", data.rgb)
            write_ir(folder / "infrared.png", data.infrared)
            write_stl(folder / "pointcloud.stl", data.mesh)
            (folder / "capture.json").write_text(_capture_json(f"{i:03d}"))
        verdicts: list[Verdict] = []
        arrived = threading.Event()

        def report(verdict: Verdict) -> None:
            verdicts.append(verdict)
            arrived.set()

        stop = threading.Event()
        thread = threading.Thread(target=watch, args=(work / "captures", work / "models", work / "out", 0.05),
                                  kwargs={"stop": stop, "report": report})
        thread.start()
        latencies = []
        try:
            for i in range(len(parts)):
                arrived.clear()
                start = time.perf_counter()
                (staging / f"{i:03d}").rename(captures / f"{i:03d}")  # what the session does when a part is done
                arrived.wait(60)
                latencies.append(time.perf_counter() - start)
        finally:
            stop.set()
            thread.join()
        shutil.rmtree(work / "out")
        print(f"watch_latency_median: {statistics.median(latencies):.2f} s")
        print(f"watch_latency_max: {max(latencies):.2f} s")
        print(f"watch_judged: {len(verdicts)} parts")


def _fit(dataset: MulsenDataset, records) -> Detector:
    from mulsen.detection.model import TripleADModel

    return Detector(TripleADModel("capsule", DetectorConfig()).fit(dataset.load, records))


def _capture_json(sample_id: str) -> str:
    from mulsen.dataset.captures import CaptureRecord, SampleRequest

    return CaptureRecord(request=SampleRequest("capsule", sample_id), finished="bench", operator="bench",
                         files=("infrared.png", "pointcloud.stl", "rgb.png")).to_json()


if __name__ == "__main__":
    main()
