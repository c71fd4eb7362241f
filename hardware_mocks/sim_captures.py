"""Capture folders rendered straight from the virtual world (no device simulators): the fast path for
testing and benchmarking the dataset builder. Same files and ``capture.json`` keys as a session."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mulsen.acquisition.lockin import mulsen_ir_image
from mulsen.acquisition.robot import ArmGeometry
from mulsen.core.atomic import atomic_folder
from mulsen.dataset.captures import CAPTURE_FILE, ArmStep, CaptureRecord, CaptureSteps, SampleRequest
from mulsen.dataset.formats import write_ir, write_rgb
from mulsen.dataset.scans import write_scan

from .rig import rgb_view
from .scanner_sim import scan_pair
from .sim_cameras import BenchPart
from .world.render_rgb import render_rgb
from .world.scene import camera_for
from .world.thermal import thermal_maps


def write_simulated_capture(root: Path, category: str, sample_id: str, part: BenchPart, size: str = "small") -> Path:
    """``root/<category>/<sample_id>/`` with rgb.png, infrared.png, scan_a.stl, scan_b.stl, capture.json."""
    scene = part.scene()
    rng = np.random.default_rng([part.seed, 7])
    geometry = ArmGeometry()
    pose = geometry.camera_pose_above(tuple(scene.part.pose_xy_mm))
    rgb, _ = render_rgb(scene, rgb_view(pose, size, geometry), rng)
    amplitude = thermal_maps(scene, camera_for("ir", size)).amplitude
    scan_a, scan_b, _ = scan_pair(part, size)
    with atomic_folder(root / category / sample_id) as folder:
        write_rgb(folder / "rgb.png", rgb)
        write_ir(folder / "infrared.png", mulsen_ir_image(amplitude))
        write_scan(folder / "scan_a.stl", scan_a.vertices, scan_a.faces, "stl")
        write_scan(folder / "scan_b.stl", scan_b.vertices, scan_b.faces, "stl")
        CaptureRecord(request=SampleRequest(category, sample_id, part=str(part)), finished="rendered",
                      operator="world", devices={"simulated_part": str(part)},
                      steps=CaptureSteps(arm=ArmStep(placement="rendered", reached_pose=tuple(map(float, pose)))),
                      files=("infrared.png", "rgb.png", "scan_a.stl", "scan_b.stl")).write(folder / CAPTURE_FILE)
    return root / category / sample_id
