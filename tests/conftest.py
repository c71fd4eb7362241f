"""Shared fixtures: tiny but real MulSen-AD datasets written with the writer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mulsen.dataset.records import Mesh, SampleContent

os.environ.setdefault("MULSEN_NO_PROGRESS", "1")

REAL_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"


def grid_mesh(n: int = 12, offset: tuple[float, float, float] = (10.0, -40.0, 2080.0), bump: float = 0.0,
              seed: int = 0) -> Mesh:
    """A small closed-ish height-field mesh in scanner millimetres (uncentred, like MulSen-AD)."""
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.linspace(0, 10, n), np.linspace(0, 8, n))
    zs = 1.0 + 0.2 * np.sin(xs) + bump * np.exp(-((xs - 5) ** 2 + (ys - 4) ** 2)) + rng.normal(0, 0.01, xs.shape)
    top = np.stack([xs, ys, zs], -1).reshape(-1, 3)
    bottom = top.copy()
    bottom[:, 2] = 0.0
    vertices = np.concatenate([top, bottom]) + np.asarray(offset)
    faces = []
    for base, flip in ((0, False), (n * n, True)):
        for i in range(n - 1):
            for j in range(n - 1):
                a, b, c, d = base + i * n + j, base + i * n + j + 1, base + (i + 1) * n + j, base + (i + 1) * n + j + 1
                tri = [(a, b, d), (a, d, c)]
                faces += [(t[0], t[2], t[1]) if flip else t for t in tri]
    return Mesh(vertices, np.array(faces))


def make_content(rgb_defect: bool = False, ir_defect: bool = False, pc_defect: bool = False, seed: int = 0,
                 rgb_size: tuple[int, int] = (64, 48), ir_size: tuple[int, int] = (32, 24)) -> SampleContent:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (rgb_size[1], rgb_size[0], 3), dtype=np.uint8)
    ir = rng.integers(0, 255, (ir_size[1], ir_size[0]), dtype=np.uint8)
    mesh = grid_mesh(seed=seed, bump=0.5 if pc_defect else 0.0)
    rgb_mask = ir_mask = points = None
    if rgb_defect:
        rgb_mask = np.zeros(rgb.shape[:2], bool)
        rgb_mask[10:20, 5:15 + seed] = True
    if ir_defect:
        ir_mask = np.zeros(ir.shape, bool)
        ir_mask[3:9, 4:7] = True
    if pc_defect:
        points = mesh.vertices[[5, 17, 30 + seed]]
    return SampleContent(rgb, ir, mesh, rgb_mask, ir_mask, points)


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    """Two categories; train, good and two defect folders with every visibility pattern."""
    from mulsen.dataset.writer import DatasetWriter

    root = tmp_path / "ds"
    writer = DatasetWriter(root)
    for category in ("capsule", "nut"):
        for i in range(3):
            writer.add(category, "train", "good", make_content(seed=i))
        for i in range(2):
            writer.add(category, "test", "good", make_content(seed=10 + i))
        writer.add(category, "test", "crack", make_content(True, True, True, seed=1))
        writer.add(category, "test", "crack", make_content(True, False, False, seed=2))
        writer.add(category, "test", "hole", make_content(False, False, True, seed=3))
        writer.add(category, "test", "hole", make_content(False, True, True, seed=4))
    return root
