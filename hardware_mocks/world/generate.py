"""Synthetic MulSen-AD datasets from the virtual world (fast path: renderers, no device simulation)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mulsen.acquisition.lockin import mulsen_ir_image
from mulsen.core.atomic import atomic_write_text
from mulsen.core.errors import MulsenError
from mulsen.core.geometry import apply_transform, rigid_transform, rotation_from_rotvec
from mulsen.dataset.records import Mesh, SampleContent
from mulsen.dataset.writer import PROVENANCE_DIR, DatasetWriter

from .defects import DEFAULT_PROPORTIONS, VISIBILITY_CLASSES, DefectConfig, sample_defect
from .parts import CATEGORIES, sample_part
from .render_rgb import render_rgb
from .scanner import flip_transform, grid_spacing_for, part_mesh, partial_scan, to_scanner_frame
from .scene import Scene, camera_for
from .thermal import thermal_maps

TOP_VERTICES = {"small": 3000, "full": 40000}
DIFFICULTIES = ("normal", "hard")


@dataclass(frozen=True)
class Nuisance:
    """What a real bench varies and the normal preset holds fixed (the ``hard`` preset)."""

    yaw_jitter_deg: float = 8.0  # in-plane rotation of the part on the bench (RGB and IR images)
    pose_jitter_mm: float = 1.5
    light_gain: float = 0.04  # exposure / lamp drift, relative
    ir_gain: float = 0.0  # lock-in lamp power drift, relative
    ir_glints: int = 0  # up to this many specular reflections in the IR amplitude image
    scanner_tilt_deg: float = 0.0  # hand-held scanner: any yaw, up to this tilt, metres from its origin
    density_range: tuple[float, float] = (1.0, 1.0)  # mesh vertex count relative to the nominal one
    scale_range: float = 0.02  # part size tolerance, relative

    @classmethod
    def preset(cls, difficulty: str) -> Nuisance:
        if difficulty == "normal":
            return cls()
        if difficulty == "hard":
            return cls(yaw_jitter_deg=180.0, pose_jitter_mm=3.0, light_gain=0.10, ir_gain=0.05, ir_glints=2,
                       scanner_tilt_deg=25.0, density_range=(0.5, 2.0), scale_range=0.03)
        raise MulsenError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")
IR_AMPLITUDE_NOISE_K = 0.01  # residual lock-in noise after integrating a full heating run


@dataclass
class GenerationConfig:
    categories: tuple[str, ...] = CATEGORIES
    train: int = 20
    test_good: int = 10
    test_bad: int = 30
    seed: int = 0
    size: str = "small"  # small: quarter-resolution RGB, ~17k-vertex meshes; full: published sizes (IR always 640x480)
    defects: DefectConfig = field(default_factory=DefectConfig)
    difficulty: str = "normal"  # hard: the nuisances of a real bench (see Nuisance)

    def __post_init__(self) -> None:
        unknown = set(self.categories) - set(CATEGORIES)
        if unknown:
            raise MulsenError(f"unknown categories {sorted(unknown)} (available: {', '.join(CATEGORIES)})")
        if self.size not in TOP_VERTICES:
            raise MulsenError(f"size must be 'small' or 'full', got {self.size!r}")
        Nuisance.preset(self.difficulty)


@dataclass(frozen=True)
class SampleTask:
    category: str
    split: str
    index: int
    defect_kind: str | None
    seed: int
    size: str
    defects: DefectConfig
    nuisance: Nuisance = field(default_factory=Nuisance)


def planned_kinds(n_bad: int, proportions: dict[str, float], rng: np.random.Generator) -> list[str]:
    """Defect kinds for ``n_bad`` samples whose visibility classes follow ``proportions`` (largest remainder)."""
    names = sorted(proportions)
    weights = np.array([proportions[n] for n in names], float)
    quota = weights / weights.sum() * n_bad
    counts = np.floor(quota).astype(int)
    for k in np.argsort(-(quota - counts), kind="stable")[: n_bad - counts.sum()]:
        counts[k] += 1
    kinds = []
    for name, count in zip(names, counts, strict=True):
        options = VISIBILITY_CLASSES[name]
        kinds += [options[i % len(options)] for i in range(count)]
    rng.shuffle(kinds)
    return kinds


def build_scene(category: str, defect_kind: str | None, rng: np.random.Generator,
                defects: DefectConfig | None = None, nuisance: Nuisance | None = None) -> Scene:
    """One part on the bench with (or without) one planted defect, drawn from ``rng``."""
    nuisance = nuisance or Nuisance()
    if nuisance == Nuisance():  # the normal preset keeps its random stream (byte-identical datasets)
        part = sample_part(category, rng)
    else:
        part = sample_part(category, rng, nuisance.pose_jitter_mm, nuisance.yaw_jitter_deg,
                           nuisance.light_gain, nuisance.scale_range)
    planted = []
    if defect_kind is not None:
        planted.append(sample_defect(rng, part.inside, part.half_extent_mm, part.spec.thermal_length_mm,
                                     part.base_height, defects or DefectConfig(), kind=defect_kind))
    return Scene(part, planted)


def scanned_mesh(scene: Scene, spacing_mm: float, rng: np.random.Generator) -> tuple[Mesh, np.ndarray]:
    """The part as a capture records it: two hand-held passes (upright; turned over and put back), scan B
    merged onto scan A with the exact flip (what ``dataset merge`` recovers), and per merged vertex whether it
    lies in a geometric defect (the label of the nearest noise-free surface point)."""
    from scipy.spatial import cKDTree

    from mulsen.dataset.align import merge_scans

    height = float(part_mesh(scene, spacing_mm).vertices[:, 2].max())
    surface = part_mesh(scene, spacing_mm, wall_rows=max(1, int(np.ceil(height / spacing_mm))))
    placement = (rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(-np.pi, np.pi))
    scan_a = partial_scan(scene, surface, rng)
    scan_b = partial_scan(scene, surface, rng, flipped=True, placement=placement)
    merged = merge_scans(scan_a, scan_b, flip_transform(scene, float(surface.vertices[:, 2].max()), placement),
                         1.5 * spacing_mm)
    _, nearest = cKDTree(to_scanner_frame(scene, surface.vertices)).query(merged.vertices)
    return merged, surface.pc_region[nearest]


def render_sample(task: SampleTask) -> tuple[SampleContent, dict]:
    """Render one sample's three modalities and its exact ground truth (pure, seeded)."""
    rng = np.random.default_rng(task.seed)
    scene = build_scene(task.category, task.defect_kind, rng, task.defects, task.nuisance)
    extra = np.random.default_rng([task.seed, 7919])  # the nuisances' own stream
    part, defects = scene.part, scene.defects
    # The arm places the RGB camera above the part found in the IR image (within about a millimetre).
    rgb_centre = tuple(part.pose_xy_mm + rng.normal(0, 0.5, 2))
    rgb, rgb_mask = render_rgb(scene, camera_for("rgb", task.size, rgb_centre), rng)
    maps = thermal_maps(scene, camera_for("ir", task.size))
    amplitude = maps.amplitude + rng.normal(0, IR_AMPLITUDE_NOISE_K, maps.amplitude.shape)
    amplitude = ir_nuisance(amplitude, task.nuisance, extra)
    low, high = task.nuisance.density_range
    density = float(np.exp(extra.uniform(np.log(low), np.log(high)))) if high > low else low
    mesh, anomalous = scanned_mesh(scene, grid_spacing_for(scene, round(TOP_VERTICES[task.size] * density)), rng)
    if task.nuisance.scanner_tilt_deg > 0:
        mesh = Mesh(apply_transform(scanner_pose(task.nuisance.scanner_tilt_deg, extra), mesh.vertices), mesh.faces)
    # IR as the capture path writes it: the MulSen-AD 640x480 gray image, whatever the camera's resolution
    infrared = mulsen_ir_image(amplitude)
    ir_mask = cv2.resize(maps.mask.astype(np.uint8), infrared.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
    content = SampleContent(
        rgb=rgb, infrared=infrared, mesh=mesh,
        rgb_mask=rgb_mask if rgb_mask.any() else None,
        ir_mask=ir_mask if ir_mask.any() else None,
        pc_anomalous_points=mesh.vertices[anomalous] if anomalous.any() else None,
    )
    planted = {
        "seed": task.seed,
        "part": {"category": task.category, "pose_xy_mm": part.pose_xy_mm.tolist(), "yaw_rad": part.yaw_rad,
                 "scale": part.scale.tolist()},
        "defects": [d.as_dict() for d in defects],
        "rgb_camera_centre_mm": list(rgb_centre),
        "lockin_hz": maps.frequency_hz,
    }
    return content, planted


def ir_nuisance(amplitude: np.ndarray, nuisance: Nuisance, rng: np.random.Generator) -> np.ndarray:
    """Lamp power drift (a gain) and specular glints (small saturating blobs on the part) in the IR amplitude."""
    if nuisance.ir_gain == 0 and nuisance.ir_glints == 0:
        return amplitude
    out = amplitude * (1 + rng.uniform(-nuisance.ir_gain, nuisance.ir_gain))
    on_part = np.argwhere(amplitude > 0.5 * np.percentile(amplitude, 99))
    rows, cols = np.mgrid[: amplitude.shape[0], : amplitude.shape[1]]
    for _ in range(int(rng.integers(0, nuisance.ir_glints + 1)) if len(on_part) else 0):
        r, c = on_part[rng.integers(len(on_part))]
        radius = rng.uniform(1.0, 2.5) * amplitude.shape[1] / 320
        out = out + rng.uniform(0.3, 0.6) * amplitude.max() * np.exp(-((rows - r) ** 2 + (cols - c) ** 2)
                                                                     / (2 * radius ** 2))
    return out


def scanner_pose(max_tilt_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Where a hand-held scanner leaves the part: any yaw about the part, up to ``max_tilt_deg`` tilt, the
    frame's origin a few hundred millimetres to two metres away (a rigid transform in mm)."""
    axis = np.r_[rng.normal(size=2), 0.0]
    tilt = rotation_from_rotvec(axis / np.linalg.norm(axis) * np.radians(rng.uniform(0, max_tilt_deg)))
    yaw = rotation_from_rotvec([0.0, 0.0, rng.uniform(-np.pi, np.pi)])
    return rigid_transform(tilt @ yaw, rng.uniform([-400, -400, -300], [400, 400, 300]))


def build_tasks(config: GenerationConfig) -> list[SampleTask]:
    tasks = []
    for c_index, category in enumerate(config.categories):
        base = [config.seed, c_index]
        kinds = planned_kinds(config.test_bad, config.defects.proportions,
                              np.random.default_rng([*base, 99]))
        plan: list[tuple[str, str | None]] = [("train", None)] * config.train
        plan += [("test", None)] * config.test_good
        plan += [("test", k) for k in kinds]
        counters: dict[tuple[str, str | None], int] = {}
        for split, kind in plan:
            i = counters.get((split, kind), 0)
            counters[(split, kind)] = i + 1
            code = sum(ord(ch) for ch in (kind or "good")) * 1000 + (0 if split == "train" else 1)
            seed = int(np.random.SeedSequence([*base, code, i]).generate_state(1)[0])
            tasks.append(SampleTask(category, split, i, kind, seed, config.size, config.defects,
                                    Nuisance.preset(config.difficulty)))
    return tasks


def generate_dataset(out: str | Path, config: GenerationConfig, jobs: int = 1,
                     progress: Callable[[Iterable, int], Iterable] | None = None) -> dict[str, int]:
    """Write a complete dataset to ``out`` (must not hold a dataset yet); return sample counts per split."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise MulsenError(f"{out}: output folder is not empty; choose a new folder")
    tasks = build_tasks(config)
    writer = DatasetWriter(out)
    counts = {"train": 0, "test_good": 0, "test_bad": 0, "visibility_changed": 0}
    pool = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None
    try:
        rendered = pool.map(render_sample, tasks, chunksize=2) if pool else map(render_sample, tasks)
        results = progress(rendered, len(tasks)) if progress else rendered
        for task, (content, planted) in zip(tasks, results, strict=True):
            labels = content.labels
            folder = "good"
            if task.defect_kind is not None:
                if labels.label_or:
                    folder = task.defect_kind
                else:
                    counts["visibility_changed"] += 1  # too small to see anywhere: it is a good part
            planted["labels"] = {"rgb": labels.rgb, "infrared": labels.infrared, "pointcloud": labels.pointcloud}
            content.provenance = planted
            writer.add(task.category, task.split, folder, content)
            counts["train" if task.split == "train" else ("test_bad" if folder != "good" else "test_good")] += 1
    finally:
        if pool:
            pool.shutdown()
    summary = {"generator": "mulsen sim dataset", "config": {**asdict(config), "categories": list(config.categories)},
               "counts": counts, "default_proportions": DEFAULT_PROPORTIONS}
    atomic_write_text(out / PROVENANCE_DIR / "generation.json", json.dumps(summary, indent=2, sort_keys=True))
    return counts
