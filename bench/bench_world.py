"""Seconds per sample for each renderer of the virtual world, and for `mulsen sim dataset --size small`."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from mulsen.hardware_mocks.world import sample_defect, sample_part
from mulsen.hardware_mocks.world.generate import GenerationConfig, generate_dataset
from mulsen.hardware_mocks.world.render_rgb import render_rgb
from mulsen.hardware_mocks.world.scanner import grid_spacing_for, part_mesh, partial_scan
from mulsen.hardware_mocks.world.scene import Scene, camera_for
from mulsen.hardware_mocks.world.thermal import HeatingSchedule, render_ir_sequence, thermal_maps


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    part = sample_part("capsule", rng)
    scene = Scene(part, [sample_defect(rng, part.inside, part.half_extent_mm, part.spec.thermal_length_mm,
                                       part.base_height, kind="broken")])
    print(f"rgb_full_s_per_image: {best_of(lambda: render_rgb(scene, camera_for('rgb'), rng)):.2f} s")
    maps = thermal_maps(scene, camera_for("ir"))
    print(f"ir_lockin_maps_full_s: {best_of(lambda: thermal_maps(scene, camera_for('ir'))):.2f} s")
    schedule = HeatingSchedule(maps.frequency_hz, 0.0)
    times = np.arange(300) / 10.0
    seq = best_of(lambda: sum(1 for _ in render_ir_sequence(maps, schedule, times, rng)), 1)
    print(f"ir_sequence_300_frames_640x480_s: {seq:.2f} s")
    mesh = part_mesh(scene, grid_spacing_for(scene, 60000))
    scan_s = best_of(lambda: partial_scan(scene, mesh, rng))
    print(f"scan_points: {len(partial_scan(scene, mesh, rng).vertices)} points")
    print(f"scan_s_per_scan: {scan_s + best_of(lambda: part_mesh(scene, grid_spacing_for(scene, 60000))):.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        counts = generate_dataset(Path(tmp) / "ds", GenerationConfig(train=12, test_good=4, test_bad=12), jobs=2)
        total = time.perf_counter() - t
    n = counts["train"] + counts["test_good"] + counts["test_bad"]
    print(f"sim_dataset_small_total_s: {total:.1f} s")
    print(f"sim_dataset_small_s_per_sample: {total / n:.3f} s")


if __name__ == "__main__":
    main()
