"""World state (one part + its defects on the bench) and the camera geometry shared by all renderers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .defects import Defect
from .parts import PartInstance

BENCH_ALBEDO = np.array([0.16, 0.16, 0.17])


@dataclass
class Scene:
    part: PartInstance
    defects: list[Defect] = field(default_factory=list)

    # -- frames ------------------------------------------------------------------
    def world_to_part(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.part.yaw_rad), np.sin(self.part.yaw_rad)
        dx, dy = x - self.part.pose_xy_mm[0], y - self.part.pose_xy_mm[1]
        return c * dx + s * dy, -s * dx + c * dy

    def part_to_world(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.part.yaw_rad), np.sin(self.part.yaw_rad)
        return c * u - s * v + self.part.pose_xy_mm[0], s * u + c * v + self.part.pose_xy_mm[1]

    # -- fields in the part frame ------------------------------------------------
    def height(self, u: np.ndarray, v: np.ndarray, shaded_only: bool = False) -> np.ndarray:
        """Surface height (mm) including defect displacements (only RGB-visible ones if ``shaded_only``)."""
        h = self.part.base_height(u, v)
        inside = h > 0
        for d in self.defects:
            if shaded_only and not d.shades_rgb():
                continue
            h = h + np.where(inside, d.displacement(u, v), 0.0)
        return np.where(inside, np.clip(h, 0.05, None), 0.0)

    def albedo(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        inside = self.part.inside(u, v)
        colour = self.part.albedo(u, v)
        for d in self.defects:
            if d.colour_mix > 0:
                region = d.region(u, v, "rgb")[..., None]
                tinted = np.clip(colour * np.asarray(d.colour), 0, 1) if d.kind in ("scratch", "color") \
                    else np.broadcast_to(np.asarray(d.colour), colour.shape)
                colour = np.where(region, (1 - d.colour_mix) * colour + d.colour_mix * tinted, colour)
        return np.where(inside[..., None], colour, BENCH_ALBEDO)

    def region(self, u: np.ndarray, v: np.ndarray, modality: str) -> np.ndarray:
        out = np.zeros(np.shape(u), dtype=bool)
        for d in self.defects:
            out |= d.region(u, v, modality)
        return out & self.part.inside(u, v)


@dataclass(frozen=True)
class DownCamera:
    """A pinhole camera above the bench looking straight down (image x = world x, image y = -world y)."""

    width: int
    height: int
    focal_px: float
    position_mm: tuple[float, float, float]  # camera centre in the bench frame
    yaw_rad: float = 0.0

    @property
    def principal_point(self) -> tuple[float, float]:
        return ((self.width - 1) / 2, (self.height - 1) / 2)

    @property
    def intrinsics(self) -> np.ndarray:
        cx, cy = self.principal_point
        return np.array([[self.focal_px, 0, cx], [0, self.focal_px, cy], [0, 0, 1.0]])

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Normalised ray slopes (dx/dz, dy/dz) in the bench frame for every pixel."""
        cx, cy = self.principal_point
        j, i = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))
        a, b = (j - cx) / self.focal_px, -(i - cy) / self.focal_px
        c, s = np.cos(self.yaw_rad), np.sin(self.yaw_rad)
        return c * a - s * b, s * a + c * b

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bench-frame points -> pixel coordinates (column, row)."""
        dz = self.position_mm[2] - np.asarray(z)
        a, b = (np.asarray(x) - self.position_mm[0]) / dz, (np.asarray(y) - self.position_mm[1]) / dz
        c, s = np.cos(self.yaw_rad), np.sin(self.yaw_rad)
        ca, cb = c * a + s * b, -s * a + c * b
        cx, cy = self.principal_point
        return ca * self.focal_px + cx, -cb * self.focal_px + cy


def camera_for(kind: str, size: str = "full", centre_xy: tuple[float, float] = (0.0, 0.0)) -> DownCamera:
    """The bench's nominal cameras. RGB: 1280x960, ~40 mm field; IR: 640x480, ~48 mm field."""
    scale = 1 if size == "full" else 4
    if kind == "rgb":
        return DownCamera(1280 // scale, 960 // scale, 8000.0 / scale, (centre_xy[0], centre_xy[1], 250.0))
    if kind == "ir":
        return DownCamera(640 // scale, 480 // scale, 4000.0 / scale, (centre_xy[0], centre_xy[1], 300.0))
    raise ValueError(kind)


@dataclass
class SurfaceHit:
    """Where each pixel's ray meets the scene, in the part frame."""

    u: np.ndarray
    v: np.ndarray
    z: np.ndarray
    on_part: np.ndarray


def trace(scene: Scene, camera: DownCamera, shaded_only: bool = False, iterations: int = 4) -> SurfaceHit:
    """Intersect every pixel ray with the height field (fixed-point iteration on the height)."""
    ax, ay = camera.rays()
    cx, cy, cz = camera.position_mm
    z = np.zeros_like(ax)
    for _ in range(iterations):
        x, y = cx + ax * (cz - z), cy + ay * (cz - z)
        u, v = scene.world_to_part(x, y)
        z = scene.height(u, v, shaded_only)
    x, y = cx + ax * (cz - z), cy + ay * (cz - z)
    u, v = scene.world_to_part(x, y)
    return SurfaceHit(u, v, z, scene.part.inside(u, v))
