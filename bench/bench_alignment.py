"""Dual-scan alignment: seconds per alignment and the error distribution against the exact flip transform.

Scans of the asymmetric reference block (the part turned over and put back anywhere within 5 mm and at
any yaw; 0.03 mm noise; each pass samples its own surface points), at two resolutions: ~10k points per
scan (a MulSen-AD 'small') and ~100k points per scan. ``python bench/bench_alignment.py [TRIALS]``
(default 100 trials at each resolution; about 5 minutes on 2 cores).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from mulsen.core.geometry import transform_error_deg
from mulsen.dataset.align import align_scans
from mulsen.hardware_mocks.world.parts import sample_part
from mulsen.hardware_mocks.world.scanner import flip_transform, grid_spacing_for, part_mesh, partial_scan
from mulsen.hardware_mocks.world.scene import Scene


def trials(top_vertices: int, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    seconds, angles, offsets, points = [], [], [], 0
    for _ in range(count):
        scene = Scene(sample_part("alignment_block", rng, pose_jitter_mm=10, yaw_jitter_deg=180))
        spacing = grid_spacing_for(scene, top_vertices)
        height = part_mesh(scene, spacing).vertices[:, 2].max()
        mesh = part_mesh(scene, spacing, wall_rows=int(np.ceil(height / spacing)))
        placement = (rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(-np.pi, np.pi))
        scan_a = partial_scan(scene, mesh, rng)
        scan_b = partial_scan(scene, mesh, rng, flipped=True, placement=placement)
        truth = flip_transform(scene, float(mesh.vertices[:, 2].max()), placement)
        start = time.perf_counter()
        result = align_scans(scan_a, scan_b)
        seconds.append(time.perf_counter() - start)
        angle, offset = transform_error_deg(result.transform, truth, scan_b.vertices.mean(0))
        angles.append(angle)
        offsets.append(offset)
        points = len(scan_a.vertices)
    return points, np.array(seconds), np.array(angles), np.array(offsets)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    for label, top, n in (("10k", 3000, count), ("100k", 32000, count)):
        points, seconds, angles, offsets = trials(top, n)
        ok = np.mean((angles < 0.05) & (offsets < 0.05))
        print(f"alignment_{label}_points_per_scan: {points} points")
        print(f"alignment_{label}_trials: {n} trials")
        print(f"alignment_{label}_s_mean: {seconds.mean():.2f} s")
        print(f"alignment_{label}_s_max: {seconds.max():.2f} s")
        print(f"alignment_{label}_rotation_error_max: {angles.max():.4f} deg")
        print(f"alignment_{label}_offset_error_max: {offsets.max():.4f} mm")
        print(f"alignment_{label}_rotation_error_median: {np.median(angles):.4f} deg")
        print(f"alignment_{label}_rotation_error_p99: {np.percentile(angles, 99):.4f} deg")
        print(f"alignment_{label}_offset_error_median: {np.median(offsets):.4f} mm")
        print(f"alignment_{label}_offset_error_p99: {np.percentile(offsets, 99):.4f} mm")
        print(f"alignment_{label}_within_0.05deg_0.05mm: {100 * ok:.0f} %")


if __name__ == "__main__":
    main()
