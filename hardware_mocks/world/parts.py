"""Parametric parts modelled on MulSen-AD categories: footprint, height field, colour and thermal model.

Every part is a 2.5-D solid lying on the bench: a footprint in the part frame (mm, centred) and a
height ``h(x, y) >= 0`` above the bench. All functions are vectorised over point arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ThermalProps:
    diffusivity_m2s: float  # alpha
    effusivity: float  # e = sqrt(k rho c), W s^0.5 / (m^2 K)
    emissivity: float
    lockin_hz: float  # lock-in frequency the lab uses for this material


@dataclass(frozen=True)
class PartSpec:
    category: str
    shape: str  # hexnut | capsule | disc | plate | box | cylinder
    size_mm: tuple[float, ...]
    colours: tuple[tuple[float, float, float], ...]  # base colours (linear 0-1)
    texture: str  # plain | twotone | ring_print | cell_grid | brushed
    thermal: ThermalProps
    texture_amplitude: float = 0.06

    @property
    def thermal_length_mm(self) -> float:
        """mu = sqrt(alpha / (pi f)) at the lock-in frequency, in millimetres."""
        return float(np.sqrt(self.thermal.diffusivity_m2s / (np.pi * self.thermal.lockin_hz)) * 1e3)


PLASTIC = ThermalProps(1.1e-7, 600.0, 0.95, 0.1)
RUBBER = ThermalProps(1.0e-7, 550.0, 0.93, 0.1)
STEEL = ThermalProps(1.2e-5, 7500.0, 0.90, 1.0)  # painted/oxidised so emissivity is usable
LAMINATE = ThermalProps(3.0e-7, 1000.0, 0.94, 0.2)

PART_SPECS: dict[str, PartSpec] = {
    "nut": PartSpec("nut", "hexnut", (16.0, 4.2, 6.0), ((0.55, 0.56, 0.58),), "brushed", STEEL),
    "capsule": PartSpec("capsule", "capsule", (22.0, 8.0), ((0.75, 0.12, 0.10), (0.92, 0.90, 0.85)), "twotone",
                        PLASTIC, 0.03),
    "button_cell": PartSpec("button_cell", "disc", (10.0, 3.2), ((0.70, 0.71, 0.72), (0.35, 0.36, 0.38)),
                            "ring_print", STEEL),
    "solar_panel": PartSpec("solar_panel", "plate", (30.0, 20.0, 2.0), ((0.10, 0.14, 0.35), (0.75, 0.75, 0.78)),
                            "cell_grid", LAMINATE),
    "cube": PartSpec("cube", "box", (15.0, 15.0, 12.0), ((0.85, 0.70, 0.20),), "plain", PLASTIC),
    "plastic_cylinder": PartSpec("plastic_cylinder", "cylinder", (25.0, 5.0), ((0.20, 0.45, 0.75),), "plain",
                                 RUBBER),
}
CATEGORIES: tuple[str, ...] = tuple(PART_SPECS)
# Not a MulSen-AD category: an asymmetric L-shaped block with a sloped top and a boss, whose pose is
# unambiguous, for checking dual-scan alignment against an exact transform.
REFERENCE_SPECS: dict[str, PartSpec] = {
    "alignment_block": PartSpec("alignment_block", "lblock", (24.0, 12.0, 5.0), ((0.6, 0.6, 0.6),), "plain",
                                PLASTIC),
}


@dataclass
class PartInstance:
    """One physical part: its spec, its individual variation and its pose on the bench."""

    spec: PartSpec
    scale: np.ndarray  # (3,) per-axis shape tolerance
    pose_xy_mm: np.ndarray  # (2,) position of the part centre on the bench
    yaw_rad: float
    colour_gain: np.ndarray  # (3,) colour variation
    texture_seed: int
    light_gain: float
    texture: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0), np.float32))  # (n, n) noise


    def __post_init__(self) -> None:
        if self.texture.size == 0:  # drawn from texture_seed unless given
            rng = np.random.default_rng(self.texture_seed)
            from scipy.ndimage import gaussian_filter

            noise = gaussian_filter(rng.normal(size=(256, 256)), 2.0, mode="wrap")
            self.texture = (noise / (noise.std() + 1e-12)).astype(np.float32)

    # -- geometry -------------------------------------------------------------------
    @property
    def half_extent_mm(self) -> float:
        """Radius of a circle enclosing the footprint (for sampling and framing)."""
        s = self.spec.size_mm
        k = float(self.scale[:2].max())
        return k * {"hexnut": s[0] / np.sqrt(3), "capsule": s[0] / 2, "disc": s[0], "plate": np.hypot(s[0], s[1]) / 2,
                    "box": np.hypot(s[0], s[1]) / 2, "cylinder": np.hypot(s[0] / 2, s[1]),
                    "lblock": np.hypot(s[0] / 2, s[0] / 2 + s[1] / 2)}[self.spec.shape]

    def _local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x / self.scale[0], y / self.scale[1]

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Footprint test in the part frame (mm)."""
        u, v = self._local(np.asarray(x, float), np.asarray(y, float))
        s = self.spec.size_mm
        shape = self.spec.shape
        if shape == "hexnut":
            apothem = s[0] / 2
            inside = np.ones_like(u, dtype=bool)
            for k in range(6):
                a = np.pi / 3 * k
                inside &= u * np.cos(a) + v * np.sin(a) <= apothem
            return inside & (np.hypot(u, v) >= s[1])
        if shape == "capsule":
            half_len, r = s[0] / 2 - s[1] / 2, s[1] / 2
            return np.hypot(np.clip(np.abs(u) - half_len, 0, None), v) <= r
        if shape == "disc":
            return np.hypot(u, v) <= s[0]
        if shape in ("plate", "box"):
            return (np.abs(u) <= s[0] / 2) & (np.abs(v) <= s[1] / 2)
        if shape == "cylinder":
            return (np.abs(u) <= s[0] / 2) & (np.abs(v) <= s[1])
        if shape == "lblock":
            bar = (np.abs(u) <= s[0] / 2) & (np.abs(v) <= s[1] / 2)
            leg = (u >= s[0] / 2 - s[1] * 0.75) & (u <= s[0] / 2) & (v >= 0) & (v <= s[0] / 2 + s[1] / 2)
            return bar | leg
        raise ValueError(shape)

    def base_height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height above the bench (mm) of the defect-free part; 0 outside the footprint."""
        u, v = self._local(np.asarray(x, float), np.asarray(y, float))
        s = self.spec.size_mm
        shape = self.spec.shape
        kz = self.scale[2]
        if shape == "hexnut":
            r = np.hypot(u, v)
            chamfer = np.clip((r - 0.85 * s[0] / 2) * 0.8, 0, None) + np.clip((s[1] + 0.6 - r) * 0.8, 0, None)
            h = s[2] - chamfer
        elif shape == "capsule":
            half_len, r = s[0] / 2 - s[1] / 2, s[1] / 2
            d = np.hypot(np.clip(np.abs(u) - half_len, 0, None), v)
            h = r + np.sqrt(np.clip(r * r - d * d, 0, None))
        elif shape == "disc":
            r = np.hypot(u, v)
            h = s[1] - 0.25 * (r > 0.8 * s[0]) - 0.6 * np.clip(r - 0.93 * s[0], 0, None) / (0.07 * s[0])
        elif shape == "plate":
            h = np.full_like(u, s[2])
        elif shape == "box":
            edge = np.minimum(s[0] / 2 - np.abs(u), s[1] / 2 - np.abs(v))
            h = s[2] - 0.5 * np.clip(0.5 - edge, 0, None)  # small bevel
        elif shape == "cylinder":
            r = s[1]
            h = r + np.sqrt(np.clip(r * r - v * v, 0, None))
        elif shape == "lblock":
            boss = 2.0 * np.clip(1 - np.hypot(u + s[0] / 4, v) / 3.0, 0, None)
            bar = np.minimum(s[0] / 2 - np.abs(u), s[1] / 2 - np.abs(v))
            leg_cu, leg_cv = s[0] / 2 - s[1] * 0.375, (s[0] / 2 + s[1] / 2) / 2
            leg = np.minimum(s[1] * 0.375 - np.abs(u - leg_cu), (s[0] / 2 + s[1] / 2) / 2 - np.abs(v - leg_cv))
            bevel = np.clip(1.0 - np.maximum(bar, leg), 0, None)  # 45° chamfer, 1 mm wide, round the rim
            h = s[2] + 0.12 * (u + s[0] / 2) + 0.05 * v + boss - bevel
        else:
            raise ValueError(shape)
        return np.where(self.inside(x, y), np.clip(h, 0, None) * kz, 0.0)

    def thickness(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Material thickness under the top surface seen by the IR camera (mm): the parts are solid."""
        return self.base_height(x, y)

    # -- appearance ----------------------------------------------------------------
    def _noise(self, x: np.ndarray, y: np.ndarray, period_mm: float = 12.0) -> np.ndarray:
        n = self.texture.shape[0]
        gx = (np.asarray(x) / period_mm * n) % n
        gy = (np.asarray(y) / period_mm * n) % n
        x0, y0 = np.floor(gx).astype(int), np.floor(gy).astype(int)
        fx, fy = gx - x0, gy - y0
        x1, y1 = (x0 + 1) % n, (y0 + 1) % n
        t = self.texture
        return ((t[y0, x0] * (1 - fx) + t[y0, x1] * fx) * (1 - fy) + (t[y1, x0] * (1 - fx) + t[y1, x1] * fx) * fy)

    def albedo(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Linear RGB albedo (..., 3) of the defect-free surface."""
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        spec = self.spec
        c0 = np.asarray(spec.colours[0]) * self.colour_gain
        base = np.broadcast_to(c0, (*x.shape, 3)).copy()
        u, v = self._local(x, y)
        if spec.texture == "twotone":
            base = np.where((u > 0)[..., None], np.asarray(spec.colours[1]) * self.colour_gain, base)
        elif spec.texture == "ring_print":
            r = np.hypot(u, v)
            ring = (np.abs(r - 0.55 * spec.size_mm[0]) < 0.35) | ((np.abs(v) < 0.3) & (np.abs(u) < 3.0))
            base = np.where(ring[..., None], np.asarray(spec.colours[1]) * self.colour_gain, base)
        elif spec.texture == "cell_grid":
            grid = (np.abs(((u + 50) % 5.0) - 2.5) > 2.35) | (np.abs(((v + 50) % 5.0) - 2.5) > 2.35)
            fingers = np.abs(((u + 50) % 1.25) - 0.625) > 0.6
            base = np.where((grid | fingers)[..., None], np.asarray(spec.colours[1]), base)
        elif spec.texture == "brushed":
            base = base * (1 + 0.05 * self._noise(x * 0.1, y * 4.0, 6.0))[..., None]
        texture = 1 + spec.texture_amplitude * self._noise(x, y)
        return np.clip(base * texture[..., None], 0, 1)


def sample_part(category: str, rng: np.random.Generator, pose_jitter_mm: float = 1.5,
                yaw_jitter_deg: float = 8.0, light_jitter: float = 0.04, scale_jitter: float = 0.02) -> PartInstance:
    """A normal instance of a category: ±2% shape tolerance, colour/texture/lighting variation, bench pose."""
    spec = PART_SPECS[category] if category in PART_SPECS else REFERENCE_SPECS[category]
    return PartInstance(
        spec=spec,
        scale=1 + rng.uniform(-scale_jitter, scale_jitter, 3),
        pose_xy_mm=rng.uniform(-pose_jitter_mm, pose_jitter_mm, 2),
        yaw_rad=float(np.deg2rad(rng.uniform(-yaw_jitter_deg, yaw_jitter_deg))),
        colour_gain=1 + rng.uniform(-0.03, 0.03, 3),
        texture_seed=int(rng.integers(2**31)),
        light_gain=float(1 + rng.uniform(-light_jitter, light_jitter)),
    )
