"""HTML reports at demo scale: time to build each and its size.

Uses what ``make demo`` leaves in ``demo_out/`` (or ``--demo DIR``): the synthetic dataset and its models, the
fresh part, the captures. Each report is built into a temporary folder with the same API the commands use.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from mulsen.dataset.reader import MulsenDataset
from mulsen.detection.config import all_combinations
from mulsen.detection.evaluate import evaluate_category
from mulsen.detection.inspector import Detector, inspect_many
from mulsen.detection.model import TripleADModel
from mulsen.reports.capture import capture_index
from mulsen.reports.dataset import write_dataset_report
from mulsen.reports.detection import INDEX_PAGE, index_page, part_page
from mulsen.reports.evaluation import write_evaluation_report


def _size(path: Path) -> float:
    return sum(p.stat().st_size for p in ([path] if path.is_file() else path.rglob("*") if path.is_dir() else [])
               if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo", type=Path, default=Path("demo_out"), help="what 'make demo' wrote")
    args = parser.parse_args()
    data, models = args.demo / "sim_dataset", args.demo / "models"
    if not (data.is_dir() and models.is_dir()):
        print(f"skipped: {args.demo} has no sim_dataset/ and models/ (run 'make demo' first)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t = time.perf_counter()
        page, _ = write_dataset_report(data, out / "dataset", jobs=2)
        print(f"dataset_report_s: {time.perf_counter() - t:.1f} s")
        print(f"dataset_report_size: {_size(page):.2f} MB")

        ds = MulsenDataset(data)
        loaded = {c: TripleADModel.load(models / c) for c in ds.categories}
        results = [evaluate_category(ds, loaded[c], all_combinations(), jobs=2) for c in ds.categories]
        t = time.perf_counter()
        page = write_evaluation_report(results, ds, loaded, out / "evaluation")
        print(f"evaluation_report_s: {time.perf_counter() - t:.1f} s ({len(results)} categories, 8 gallery rows each)")
        print(f"evaluation_report_size: {_size(page):.2f} MB")

        detector = Detector.load(models / "capsule")
        part = args.demo / "fresh_part"
        t = time.perf_counter()
        judged = inspect_many(detector, [(part, out / "detections" / "part")],
                              after=lambda *a: part_page(*a, index=out / "detections" / INDEX_PAGE))
        index_page(out / "detections", [(judged[0], out / "detections" / "part")])
        print(f"detection_report_s_per_part: {time.perf_counter() - t:.2f} s (judging included)")
        print(f"detection_report_size: {_size(out / 'detections' / 'part' / 'report.html'):.2f} MB")

        captures = args.demo / "captures"
        if captures.is_dir():
            copy = out / "captures"
            shutil.copytree(captures, copy, ignore=shutil.ignore_patterns("preview.png", "index.html"))
            count = sum(1 for _ in copy.glob("*/*/capture.json"))
            t = time.perf_counter()
            page = capture_index(copy)
            print(f"capture_preview_s_per_capture: {(time.perf_counter() - t) / max(count, 1):.2f} s")
            print(f"capture_preview_size: {_size(next(copy.glob('*/*/preview.png'))):.2f} MB")
            print(f"capture_index_size: {_size(page):.3f} MB ({count} captures, pictures linked)")


if __name__ == "__main__":
    main()
