"""Weight-free image feature candidates on the synthetic benchmark: object AUROC of the RGB-only and
IR-only detectors (mean over 6 categories of `mulsen sim dataset --size small`) and time per image.

usage: python bench/compare_image_features.py [DATASET]   (generates one when not given)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mulsen.cli import main as cli
from mulsen.detection.features import ImageFeatureConfig, image_features

CANDIDATES = ("handcrafted", "raw_patches", "random_conv")


def main() -> None:
    os.environ.setdefault("MULSEN_NO_PROGRESS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp) / "sim"
        if not data.exists():
            assert cli(["sim", "dataset", str(data), "--size", "small", "--seed", "0"]) == 0
        rows = []
        image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
        for candidate in CANDIDATES:
            config = ImageFeatureConfig(backbone=candidate)
            image_features(image, config)  # warm-up
            start = time.perf_counter()
            features, _ = image_features(image, config)
            seconds = time.perf_counter() - start
            models, results = Path(tmp) / f"models_{candidate}", Path(tmp) / f"results_{candidate}"
            assert cli(["train", str(data), "--all", "--out", str(models), "--modalities", "rgb,ir",
                        "--image-backbone", candidate, "--device", "cpu"]) == 0
            assert cli(["evaluate", str(data), "--models", str(models), "--modalities", "rgb,ir", "--all-combinations",
                        "--out",
                        str(results)]) == 0
            summary = json.loads((results / "results.json").read_text())
            rows.append((candidate, features.shape[1], seconds, summary))
    print("\n| candidate | dim | s/image (320x240) | RGB AUROC | IR AUROC | RGB+IR AUROC |")
    print("|---|---|---|---|---|---|")
    for candidate, dim, seconds, summary in rows:
        means = {name: value for name, value in _means(summary).items()}
        print(f"| {candidate} | {dim} | {seconds:.3f} | {means.get('rgb', float('nan')):.3f} | "
              f"{means.get('ir', float('nan')):.3f} | {means.get('rgb+ir', float('nan')):.3f} |")
        for name, value in means.items():
            print(f"image_features_{candidate}_{name.replace('+', '_')}_object_auroc: {value:.3f} auroc")


def _means(summary: list) -> dict:
    """Mean object AUROC over categories per combination (RGB, IR, RGB+IR) from evaluate's results.json."""
    names = {"RGB": "rgb", "IR": "ir", "RGB+IR": "rgb+ir"}
    out = {}
    for key, name in names.items():
        values = [row["object_auroc"][key] for row in summary if key in row["object_auroc"]]
        if values:
            out[name] = float(np.nanmean(values))
    return out


if __name__ == "__main__":
    main()
