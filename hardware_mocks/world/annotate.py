"""Simulated annotators: what a human would save for each modality of a planted defect."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import cv2
import numpy as np


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Outer contours of a binary mask as (K, 2) pixel polygons (x, y), as traced in LabelMe."""
    contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(float) for c in contours]


def labelme_document(masks: dict[str, np.ndarray], image_path: str, image_size: tuple[int, int]) -> dict:
    """A LabelMe 5.x document with one polygon per connected region of each labelled mask.

    ``image_size`` is (width, height); ``image_path`` is stored relative to the JSON, POSIX style.
    Regions too thin to trace as a polygon (fewer than 3 contour points) become lines or points.
    """
    shapes = []
    for label, mask in masks.items():
        for poly in mask_polygons(mask):
            shape_type = "polygon" if len(poly) >= 3 else ("line" if len(poly) == 2 else "point")
            shapes.append({"label": label, "points": poly.tolist(), "group_id": None, "description": "",
                           "shape_type": shape_type, "flags": {}, "mask": None})
    width, height = image_size
    return {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": str(PurePosixPath(image_path)),
            "imageData": None, "imageHeight": int(height), "imageWidth": int(width)}


def merged_vertex_region(scene, vertices_scanner: np.ndarray, surface_tolerance_mm: float = 0.3) -> np.ndarray:
    """Which vertices of a merged scan (in scan A's scanner frame) lie on the part's geometric defect.

    The curator selects defect points on the top surface: a vertex counts when it sits on the surface
    (within ``surface_tolerance_mm`` of the height field) inside the point-cloud defect region.
    """
    from .scanner import SCANNER_OFFSET_MM, SCANNER_ROTATION

    bench = (np.asarray(vertices_scanner, float) - SCANNER_OFFSET_MM) @ SCANNER_ROTATION
    u, v = scene.world_to_part(bench[:, 0], bench[:, 1])
    on_top = np.abs(bench[:, 2] - scene.height(u, v)) < surface_tolerance_mm
    return scene.region(u, v, "pointcloud") & on_top & (bench[:, 2] > surface_tolerance_mm)


def annotate_capture(capture: Path, out: Path) -> dict:
    """Play the curator for one simulated capture: LabelMe files where the defect shows, point selection.

    Reads the virtual part from ``capture.json``; the merged mesh must exist (``mulsen dataset merge``).
    Writes nothing for a defect-free part. Returns which modalities were annotated.
    """
    import json

    from mulsen.core.atomic import atomic_write_text
    from mulsen.dataset.captures import CAPTURE_FILE, CaptureRecord
    from mulsen.dataset.formats import read_ir, read_rgb, write_pc_gt
    from mulsen.dataset.meshio import read_stl
    from mulsen.hardware_mocks.rig import rgb_view
    from mulsen.hardware_mocks.sim_cameras import BenchPart

    from .render_rgb import render_rgb
    from .scene import camera_for, trace

    record = CaptureRecord.read(capture / CAPTURE_FILE)
    part_text = record.simulated_part
    if not part_text or record.steps.arm is None:
        raise ValueError(f"{capture}: not a simulated capture (no simulated_part in capture.json)")
    part = BenchPart.parse(part_text)
    if part.defect is None:
        return {}
    scene = part.scene()
    rgb_shape, ir_shape = read_rgb(capture / "rgb.png").shape[:2], read_ir(capture / "infrared.png").shape
    size = "full" if rgb_shape[1] == 1280 else "small"
    view = rgb_view(record.steps.arm.reached_pose, size)
    _, rgb_mask = render_rgb(scene, view, np.random.default_rng(0))
    ir_camera = camera_for("ir", "full")  # infrared.png is always the MulSen 640x480 frame
    hit = trace(scene, ir_camera)
    ir_mask = scene.region(hit.u, hit.v, "infrared") & hit.on_part
    assert ir_mask.shape == ir_shape and rgb_mask.shape == rgb_shape
    out.mkdir(parents=True, exist_ok=True)
    done = {}
    for name, mask, image in (("rgb", rgb_mask, "rgb.png"), ("infrared", ir_mask, "infrared.png")):
        if mask.any():
            relative = os.path.relpath(capture.resolve() / image, out.resolve())
            document = labelme_document({part.defect: mask}, relative, (mask.shape[1], mask.shape[0]))
            atomic_write_text(out / f"{name}.json", json.dumps(document, indent=1))
            done[name] = int(mask.sum())
    mesh = read_stl(capture / "pointcloud.stl")
    selected = merged_vertex_region(scene, mesh.vertices)
    if selected.any():
        write_pc_gt(out / "pointcloud.txt", mesh.vertices[selected])
        done["pointcloud"] = int(selected.sum())
    if done and set(done) == {"pointcloud"}:
        atomic_write_text(out / "sample.json", json.dumps({"defect": part.defect}))
    return done
