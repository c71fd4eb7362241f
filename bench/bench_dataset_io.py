"""Read and validate throughput of the data contract on a generated 15-category dataset.

Prints samples/s for reading and validating, and extrapolates validation of the full-size MulSen-AD
(2035 samples, 1280x960 RGB, 640x480 IR, ~94k-vertex meshes) from a timed full-size sample set.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from mulsen.dataset.reader import MulsenDataset
from mulsen.dataset.records import Mesh, SampleContent
from mulsen.dataset.validate import validate_dataset
from mulsen.dataset.writer import DatasetWriter


def synthetic_content(rng: np.random.Generator, rgb_size, ir_size, grid: int, defect: bool) -> SampleContent:
    rgb = rng.integers(0, 255, (rgb_size[1], rgb_size[0], 3), dtype=np.uint8)
    ir = rng.integers(0, 255, (ir_size[1], ir_size[0]), dtype=np.uint8)
    xs, ys = np.meshgrid(np.linspace(0, 20, grid), np.linspace(0, 15, grid))
    top = np.stack([xs, ys, 2 + 0.1 * np.sin(xs)], -1).reshape(-1, 3) + [-340, 5, 2080]
    i, j = np.meshgrid(np.arange(grid - 1), np.arange(grid - 1), indexing="ij")
    a = (i * grid + j).ravel()
    faces = np.concatenate([np.stack([a, a + 1, a + grid + 1], 1), np.stack([a, a + grid + 1, a + grid], 1)])
    mesh = Mesh(top + rng.normal(0, 0.01, top.shape), faces)
    if not defect:
        return SampleContent(rgb, ir, mesh)
    rgb_mask = np.zeros(rgb.shape[:2], bool)
    rgb_mask[10:40, 10:40] = True
    ir_mask = np.zeros(ir.shape, bool)
    ir_mask[5:20, 5:20] = True
    return SampleContent(rgb, ir, mesh, rgb_mask, ir_mask, mesh.vertices[:300])


def build(root: Path, categories: int, per_category: int, rgb_size, ir_size, grid: int) -> int:
    rng = np.random.default_rng(0)
    writer = DatasetWriter(root)
    n = 0
    for c in range(categories):
        for k in range(per_category):
            split, folder, defect = ("train", "good", False) if k < per_category * 0.7 else \
                (("test", "good", False) if k % 3 == 0 else ("test", "crack", True))
            writer.add(f"cat{c:02d}", split, folder, synthetic_content(rng, rgb_size, ir_size, grid, defect))
            n += 1
    return n


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "reduced"
        n = build(root, 15, 100, (320, 240), (160, 120), 100)
        t = time.perf_counter()
        ds = MulsenDataset(root)
        for rec in ds:
            ds.load(rec)
        read_s = time.perf_counter() - t
        t = time.perf_counter()
        report = validate_dataset(root, jobs=2)
        validate_s = time.perf_counter() - t
        assert report.ok
        print(f"reduced_samples: {n} samples")
        print(f"read_samples_per_s: {n / read_s:.1f} samples/s")
        print(f"validate_samples_per_s: {n / validate_s:.1f} samples/s")
        full = Path(tmp) / "full"
        m = build(full, 1, 30, (1280, 960), (640, 480), 217)  # 217^2 = 47k-vertex grids, 94k faces
        t = time.perf_counter()
        assert validate_dataset(full, jobs=2).ok
        per_sample = (time.perf_counter() - t) / m
        print(f"validate_full_size_s_per_sample: {per_sample:.3f} s")
        print(f"validate_mulsen_ad_2035_extrapolated: {per_sample * 2035:.0f} s")


if __name__ == "__main__":
    main()
