"""Per-sample feature extraction with the paper's networks (ViT-B/8 for RGB and IR, Point-MAE for the
point cloud) at the published sizes, random weights (timing only), on this machine's CPU (or CUDA)."""

from __future__ import annotations

import sys
import time

import numpy as np

from mulsen.detection.backbones import PointMAEExtractor, ViTExtractor, farthest_point_sample


def main() -> None:
    device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (960, 1280, 3), dtype=np.uint8)
    ir = rng.integers(0, 255, (480, 640), dtype=np.uint8)
    cloud = rng.normal(0, 10, (94000, 3))
    vit = ViTExtractor("random", device)
    points = PointMAEExtractor("random", device)
    vit(rgb)  # warm-up
    points(cloud[:5000])
    timings = {}
    for name, fn in (("vit_rgb", lambda: vit(rgb)), ("vit_ir", lambda: vit(ir)), ("point_mae", lambda: points(cloud)),
                     ("fps_1024_of_94k", lambda: farthest_point_sample(cloud, 1024))):
        start = time.perf_counter()
        fn()
        timings[name] = time.perf_counter() - start
    for name, seconds in timings.items():
        print(f"{name}_{device}_s: {seconds:.2f} s")
    total = timings["vit_rgb"] + timings["vit_ir"] + timings["point_mae"]
    print(f"pretrained_features_{device}_s_per_sample: {total:.2f} s")


if __name__ == "__main__":
    main()
