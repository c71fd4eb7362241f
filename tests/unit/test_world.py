"""The virtual world: reproducibility, exact ground truth, lock-in physics, partial scans, annotators."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mulsen.core.errors import MulsenError
from mulsen.dataset.meshio import vertex_normals
from mulsen.dataset.reader import MulsenDataset
from mulsen.dataset.stats import dataset_stats
from mulsen.dataset.validate import validate_dataset
from mulsen.hardware_mocks.world import sample_part
from mulsen.hardware_mocks.world.annotate import labelme_document
from mulsen.hardware_mocks.world.defects import DEFECT_TYPES, Defect, DefectConfig
from mulsen.hardware_mocks.world.generate import (
    GenerationConfig,
    SampleTask,
    generate_dataset,
    planned_kinds,
    render_sample,
)
from mulsen.hardware_mocks.world.parts import PART_SPECS
from mulsen.hardware_mocks.world.render_rgb import render_rgb
from mulsen.hardware_mocks.world.scanner import part_mesh, partial_scan
from mulsen.hardware_mocks.world.scene import Scene, camera_for
from mulsen.hardware_mocks.world.thermal import HeatingSchedule, render_ir_sequence, thermal_length_mm, thermal_maps


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_same_seed_gives_byte_identical_datasets(tmp_path: Path):
    config = GenerationConfig(categories=("nut", "capsule"), train=2, test_good=1, test_bad=3, seed=5)
    generate_dataset(tmp_path / "a", config, jobs=1)
    generate_dataset(tmp_path / "b", config, jobs=2)
    first, second = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert first == second and len(first) > 30
    generate_dataset(tmp_path / "c", GenerationConfig(categories=("nut",), train=2, test_good=1, test_bad=3, seed=6))
    assert _digest(tmp_path / "c") != {k: v for k, v in first.items() if "nut" in k}


@pytest.mark.slow
def test_generated_dataset_validates_and_shows_planted_proportions(tmp_path: Path):
    config = GenerationConfig(categories=("cube",), train=2, test_good=1, test_bad=25, seed=1)
    generate_dataset(tmp_path / "d", config)
    assert validate_dataset(tmp_path / "d").ok
    row = dataset_stats(MulsenDataset(tmp_path / "d"))[0]
    assert row.test_abnormal == 25
    # largest-remainder plan: 11 all, 3+3+3 two, 2 rgb, 2 ir, 1 pc
    assert row.visibility == {"all_three": 11, "two": 9, "rgb_only": 2, "ir_only": 2, "pc_only": 1}


def test_planned_kinds_follow_proportions():
    kinds = planned_kinds(100, DefectConfig().proportions, np.random.default_rng(0))
    visible = [DEFECT_TYPES[k] for k in kinds]
    assert sum(len(v) == 3 for v in visible) == 44
    assert sum(v == frozenset({"pointcloud"}) for v in visible) == 4


@pytest.mark.parametrize(("kind", "expected"), [
    ("color", {"rgb"}), ("detachment_inside", {"infrared"}), ("bent", {"pointcloud"}),
    ("crack", {"rgb", "infrared"}), ("foreign_body", {"rgb", "pointcloud"}),
    ("hole", {"rgb", "infrared", "pointcloud"}),
])
def test_masks_exist_exactly_in_the_visible_modalities(kind: str, expected: set[str]):
    task = SampleTask("capsule", "test", 0, kind, seed=11, size="small", defects=DefectConfig())
    content, planted = render_sample(task)
    got = {m for m, present in (("rgb", content.rgb_mask is not None), ("infrared", content.ir_mask is not None),
                                ("pointcloud", content.pc_anomalous_points is not None)) if present}
    assert got == expected
    defect = planted["defects"][0]
    if content.rgb_mask is not None:
        # the mask sits where the defect centre projects into the RGB camera
        part = sample_part("capsule", np.random.default_rng(11))
        scene = Scene(part, [])
        x, y = scene.part_to_world(np.array(defect["centre"][0]), np.array(defect["centre"][1]))
        cam = camera_for("rgb", "small", tuple(planted["rgb_camera_centre_mm"]))
        z = part.base_height(np.array([defect["centre"][0]]), np.array([defect["centre"][1]]))[0]
        col, row = cam.project(x, y, z)
        rows, cols = np.nonzero(content.rgb_mask)
        assert abs(cols.mean() - col) < 6 and abs(rows.mean() - row) < 6


def test_rgb_mask_is_the_region_of_the_surface_each_pixel_sees():
    rng = np.random.default_rng(3)
    part = sample_part("solar_panel", rng)
    defect = Defect("color", frozenset({"rgb"}), (2.0, 1.0), radius=1.5, colour=(0.2, 1.5, 0.2), colour_mix=1.0)
    clean, _ = render_rgb(Scene(part, []), camera_for("rgb", "small"), np.random.default_rng(0), noise_dn=0)
    image, mask = render_rgb(Scene(part, [defect]), camera_for("rgb", "small"), np.random.default_rng(0), noise_dn=0)
    changed = np.any(image != clean, axis=2)
    assert np.array_equal(changed, mask)  # pixels change exactly inside the annotated region


def _demodulate(frames: np.ndarray, times: np.ndarray, frequency: float) -> np.ndarray:
    """Reference least-squares lock-in: T = a + b t + c t^2 + I cos + Q sin -> complex I - iQ."""
    w = 2 * np.pi * frequency
    design = np.stack([np.ones_like(times), times, times ** 2, np.cos(w * times), np.sin(w * times)], axis=1)
    coef, *_ = np.linalg.lstsq(design, frames.reshape(len(times), -1), rcond=None)
    return (coef[3] - 1j * coef[4]).reshape(frames.shape[1:])


def _ir_scene(depth_factor: float):
    part = sample_part("cube", np.random.default_rng(2), pose_jitter_mm=0, yaw_jitter_deg=0)
    mu = thermal_length_mm(part.spec.thermal.diffusivity_m2s, part.spec.thermal.lockin_hz)
    defect = Defect("detachment_inside", frozenset({"infrared"}), (0.0, 0.0), radius=3.0, ir_radius=3.0,
                    depth_mm=depth_factor * mu)
    return Scene(part, [defect]), mu


def test_ir_sequence_demodulates_to_the_physics_and_defect_phase_lags():
    scene, _ = _ir_scene(0.4)
    camera = camera_for("ir", "small")
    maps = thermal_maps(scene, camera)
    f = maps.frequency_hz
    schedule = HeatingSchedule(f, t_on=2.0)
    fs = 8.0
    times = np.arange(0, 2.0 + 5 / f, 1 / fs)
    frames = np.stack(list(render_ir_sequence(maps, schedule, times, np.random.default_rng(0))))
    assert frames.dtype == np.uint16 and frames.shape == (len(times), camera.height, camera.width)
    keep = times >= schedule.t_on + 1 / f  # drop the first period
    kelvin = frames[keep].astype(np.float64) / 100
    # reference = the heating fundamental, a sine starting at t_on
    z = _demodulate(kelvin, times[keep] - schedule.t_on - 0.25 / f, f)
    on = maps.amplitude > 1.0
    expected = maps.harmonics[1]
    amp_err = np.abs(np.abs(z[on]) - np.abs(expected[on])) / np.abs(expected[on])
    phase_err = np.rad2deg(np.abs(np.angle(z[on] / expected[on])))
    assert np.median(amp_err) < 0.02 and np.median(phase_err) < 1.0
    sound = np.median(np.rad2deg(np.angle(z[on & ~maps.mask])))
    assert sound == pytest.approx(-45.0, abs=1.0)
    defect_phase = np.rad2deg(np.angle(z[maps.mask])).mean()
    assert defect_phase < sound - 10  # a shallow air gap adds phase lag
    rows, cols = np.nonzero(maps.mask)
    contrast = np.abs(np.angle(z / np.median(z[on & ~maps.mask])))
    peak = np.unravel_index(np.argmax(np.where(on, contrast, 0)), contrast.shape)
    assert abs(peak[0] - rows.mean()) < 4 and abs(peak[1] - cols.mean()) < 4


def test_ir_contrast_fades_with_depth():
    contrasts = []
    for factor in (0.2, 0.5, 1.0, 2.5):
        scene, _ = _ir_scene(factor)
        maps = thermal_maps(scene, camera_for("ir", "small"))
        sound = np.median(maps.phase_deg[(maps.amplitude > 1.0) & ~maps.mask])
        contrasts.append(abs(maps.phase_deg[maps.mask].mean() - sound))
    assert contrasts[0] > contrasts[1] > contrasts[2] > contrasts[3]
    assert contrasts[3] < 2.0


def test_partial_scans_see_only_surfaces_facing_the_scanner_and_overlap_partly():
    part = sample_part("capsule", np.random.default_rng(4))
    scene = Scene(part, [])
    mesh = part_mesh(scene, 0.3)
    rng = np.random.default_rng(0)
    scan_a = partial_scan(scene, mesh, rng, flipped=False, noise_mm=0.0, jitter=0.0)
    scan_b = partial_scan(scene, mesh, rng, flipped=True, noise_mm=0.0, jitter=0.0)
    for scan in (scan_a, scan_b):
        tri = scan.vertices[scan.faces]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        # scanner frame z points away from the scanner: faces turned to the bench (normal z > 0.6) are unseen
        assert np.all(-normal[:, 2] > -0.6 - 1e-9)
    normals = vertex_normals(mesh.vertices, mesh.faces)
    upward = normals[:, 2] > 0.9
    downward = normals[:, 2] < -0.9
    assert len(scan_a.vertices) < len(mesh.vertices) and len(scan_b.vertices) < len(mesh.vertices)
    assert len(scan_a.vertices) + len(scan_b.vertices) > len(mesh.vertices)  # they overlap on the walls
    assert upward.sum() > 0 and downward.sum() > 0


def test_labelme_polygons_rasterise_back_to_the_mask():
    mask = np.zeros((120, 160), bool)
    yy, xx = np.mgrid[:120, :160]
    mask |= (xx - 50) ** 2 / 400 + (yy - 60) ** 2 / 150 <= 1
    mask |= (np.abs(xx - 120) < 12) & (np.abs(yy - 30) < 8)
    doc = labelme_document({"crack": mask}, "../RGB/0.png", (160, 120))
    assert doc["imageWidth"] == 160 and len(doc["shapes"]) == 2
    canvas = Image.new("L", (160, 120), 0)
    draw = ImageDraw.Draw(canvas)
    for shape in doc["shapes"]:
        draw.polygon([tuple(p) for p in shape["points"]], outline=1, fill=1)
    back = np.asarray(canvas).astype(bool)
    assert np.array_equal(back, mask)


def test_all_categories_render_with_plausible_scales():
    for category in PART_SPECS:
        content, _ = render_sample(SampleTask(category, "train", 0, None, 1, "small", DefectConfig()))
        diag = np.linalg.norm(np.ptp(content.mesh.vertices, axis=0))
        assert 10 < diag < 60
        assert 2000 < content.mesh.vertices[:, 2].mean() < 2100
        assert content.rgb.shape == (240, 320, 3) and content.infrared.shape == (480, 640)  # as captures write it


@pytest.mark.slow
def test_the_hard_preset_varies_what_real_benches_vary(tmp_path: Path):
    config = GenerationConfig(categories=("nut",), train=6, test_good=1, test_bad=3, seed=5, difficulty="hard")
    generate_dataset(tmp_path / "d", config)
    assert validate_dataset(tmp_path / "d").ok
    ds = MulsenDataset(tmp_path / "d")
    samples = [ds.load(r) for r in ds.records("nut", "train")]
    centres = np.array([s.mesh.vertices.mean(axis=0) for s in samples])
    counts = np.array([len(s.mesh.vertices) for s in samples])
    assert np.ptp(centres, axis=0).max() > 100  # the scanner frame moves by hundreds of millimetres
    assert counts.max() > 1.5 * counts.min()  # 0.5-2x mesh density
    # the part turns in the image plane: its principal axis points in different directions
    angles = []
    for s in samples:
        rows, cols = np.nonzero(s.infrared > 0.5 * s.infrared.max())
        cov = np.cov(np.stack([cols, rows]))
        vector = np.linalg.eigh(cov)[1][:, -1]
        angles.append(np.degrees(np.arctan2(vector[1], vector[0])) % 180)
    assert np.ptp(angles) > 30
    with pytest.raises(MulsenError, match="difficulty must be one of normal, hard"):
        GenerationConfig(difficulty="extreme")
