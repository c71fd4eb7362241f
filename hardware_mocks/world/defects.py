"""Defects with the visibility rules of the real sensors.

A defect lives on the part (part frame, mm). Its ``region`` is the exact footprint an annotator
would mark; what each sensor sees follows from its kind:

* surface (RGB): an albedo change inside the region;
* subsurface (IR): an air gap at depth ``depth_mm`` under the region (lock-in contrast fades with
  depth relative to the thermal diffusion length);
* geometric (PC): a height displacement; the PC region is where it exceeds the scanner's resolution.

Geometric-only defects (bent, squeeze) are broad, low-slope deformations: their shading change is
below what RGB annotators mark, so the RGB renderer does not shade them (a modelling choice that
keeps "PC only" honest).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

MODALITY_NAMES = ("rgb", "infrared", "pointcloud")

# visibility class -> defect types, with MulSen-AD folder names
VISIBILITY_CLASSES: dict[str, tuple[str, ...]] = {
    "rgb": ("color", "scratch", "label"),
    "infrared": ("detachment_inside",),
    "pointcloud": ("bent", "squeeze"),
    "rgb+infrared": ("crack",),
    "infrared+pointcloud": ("broken_inside",),
    "rgb+pointcloud": ("foreign_body",),
    "all": ("broken", "hole"),
}
DEFECT_TYPES: dict[str, frozenset[str]] = {
    t: frozenset(MODALITY_NAMES if cls == "all" else cls.split("+")) for cls, types in VISIBILITY_CLASSES.items()
    for t in types
}
# Proportions of anomalous samples per visibility class (MulSen-AD Fig. 4: 43.7 % all three,
# 9.4 % RGB only, 9.2 % IR only, 4.3 % PC only, the rest in two).
DEFAULT_PROPORTIONS: dict[str, float] = {
    "all": 0.44, "rgb": 0.09, "infrared": 0.09, "pointcloud": 0.04,
    "rgb+infrared": 0.12, "infrared+pointcloud": 0.11, "rgb+pointcloud": 0.11,
}
PC_RESOLUTION_MM = 0.03  # displacements below this are not annotated as geometric defects


@dataclass(frozen=True)
class DefectConfig:
    proportions: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PROPORTIONS))
    size_scale: float = 1.0  # multiplies every lateral size
    amplitude_scale: float = 1.0  # multiplies geometric amplitudes and colour contrast


@dataclass(frozen=True)
class Defect:
    """A planted defect; all lengths in the part frame (mm)."""

    kind: str
    visible_in: frozenset[str]
    centre: tuple[float, float]
    radius: float  # blob radius, or half-width of a line
    length: float = 0.0  # > 0 for line defects
    angle: float = 0.0
    colour: tuple[float, float, float] = (0.0, 0.0, 0.0)  # albedo multiplier (RGB)
    colour_mix: float = 0.0  # 0 = no change, 1 = replaced by ``colour``
    displacement_mm: float = 0.0  # + bump, - dent (PC)
    displacement_sigma: float = 0.0  # Gaussian width of broad deformations
    depth_mm: float = 0.0  # air gap depth under the surface (IR)
    ir_radius: float = 0.0  # IR footprint (blob) or half-width (line)
    wobble: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["visible_in"] = sorted(self.visible_in)
        return out

    # -- shapes ------------------------------------------------------------------
    def _rotate(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = np.asarray(x, float) - self.centre[0], np.asarray(y, float) - self.centre[1]
        c, s = np.cos(self.angle), np.sin(self.angle)
        return c * dx + s * dy, -s * dx + c * dy

    def _shape(self, x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
        u, v = self._rotate(x, y)
        if self.length > 0:
            bend = self.wobble[0] * np.sin(np.pi * u / max(self.length, 1e-6) + self.wobble[1])
            along = np.clip(u, -self.length / 2, self.length / 2)
            return np.hypot(u - along, v - bend) <= radius
        phi = np.arctan2(v, u)
        w = self.wobble
        r = radius * (1 + w[0] * np.sin(3 * phi + w[1]) + w[2] * np.sin(5 * phi + w[3]))
        return np.hypot(u, v * 1.3) <= r

    def displacement(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height change (mm) caused by the defect; zero for non-geometric defects."""
        if "pointcloud" not in self.visible_in or self.displacement_mm == 0:
            return np.zeros(np.shape(x))
        if self.displacement_sigma > 0:  # broad deformation
            u, v = self._rotate(x, y)
            return self.displacement_mm * np.exp(-(u * u + v * v) / (2 * self.displacement_sigma ** 2))
        return np.where(self._shape(x, y, self.radius), self.displacement_mm, 0.0)

    def region(self, x: np.ndarray, y: np.ndarray, modality: str) -> np.ndarray:
        """Exact footprint of the defect as annotated in ``modality``; empty if not visible there."""
        if modality not in self.visible_in:
            return np.zeros(np.shape(x), dtype=bool)
        if modality == "pointcloud":
            if self.displacement_sigma > 0:
                return np.abs(self.displacement(x, y)) > PC_RESOLUTION_MM
            return self._shape(x, y, self.radius)
        if modality == "infrared":
            return self._shape(x, y, self.ir_radius)
        return self._shape(x, y, self.radius)

    def shades_rgb(self) -> bool:
        return "rgb" in self.visible_in


def _choose_class(rng: np.random.Generator, proportions: dict[str, float]) -> str:
    names = sorted(proportions)
    weights = np.array([proportions[n] for n in names], float)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def _rgb(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])


def sample_defect(rng: np.random.Generator, inside, half_extent: float, thermal_length_mm: float,
                  min_thickness, config: DefectConfig | None = None, kind: str | None = None) -> Defect:
    """Plant one defect on a part; ``inside(x, y)`` is the footprint, ``min_thickness(x, y)`` the height."""
    config = config or DefectConfig()
    if kind is None:
        kind = str(rng.choice(VISIBILITY_CLASSES[_choose_class(rng, config.proportions)]))
    visible = DEFECT_TYPES[kind]
    s, a = config.size_scale, config.amplitude_scale
    for _ in range(1000):
        c = rng.uniform(-half_extent, half_extent, 2)
        margin = 1.5 * s
        ring = c[None, :] + margin * np.array([[1, 0], [-1, 0], [0, 1], [0, -1], [0, 0]])
        if np.all(inside(ring[:, 0], ring[:, 1])):
            break
    else:  # pragma: no cover - footprints are large enough
        raise RuntimeError("could not place a defect on the part")
    mu = thermal_length_mm
    thick = float(min_thickness(np.array([c[0]]), np.array([c[1]]))[0])
    depth = float(np.clip(rng.uniform(0.15, 0.45) * mu, 0.03, 0.5 * thick))
    wobble = (rng.uniform(0, 0.25), rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.1), rng.uniform(0, 2 * np.pi))
    base: dict[str, Any] = {"kind": kind, "visible_in": visible, "centre": (float(c[0]), float(c[1])),
            "angle": float(rng.uniform(0, np.pi)), "wobble": tuple(float(w) for w in wobble)}
    dark = _rgb(rng.uniform(0.15, 0.4, 3))
    if kind == "color":
        tint = rng.uniform(0.3, 1.2, 3)
        return Defect(**base, radius=s * rng.uniform(0.5, 1.2), colour=_rgb(tint),
                      colour_mix=min(1.0, a * rng.uniform(0.5, 0.8)))
    if kind == "scratch":
        return Defect(**{**base, "wobble": (rng.uniform(0, 0.3), wobble[1], 0.0, 0.0)},
                      radius=s * rng.uniform(0.06, 0.12), length=s * rng.uniform(3.0, 7.0),
                      colour=(1.6, 1.6, 1.6), colour_mix=min(1.0, a * 0.7))
    if kind == "label":
        return Defect(**base, radius=s * rng.uniform(0.5, 1.0), colour=dark, colour_mix=min(1.0, a * 0.85))
    if kind == "detachment_inside":
        r = s * rng.uniform(0.9, 1.8)
        return Defect(**base, radius=r, ir_radius=r, depth_mm=depth)
    if kind in ("bent", "squeeze"):
        sign = 1.0 if kind == "bent" else -1.0
        sigma = s * rng.uniform(1.0, 1.8)
        return Defect(**base, radius=2 * sigma, displacement_mm=sign * a * rng.uniform(0.25, 0.6),
                      displacement_sigma=sigma)
    if kind == "crack":
        return Defect(**base, radius=s * rng.uniform(0.05, 0.1), length=s * rng.uniform(3.0, 7.0), colour=dark,
                      colour_mix=min(1.0, a * 0.85), ir_radius=s * rng.uniform(0.35, 0.5),
                      depth_mm=min(depth, 0.2 * mu))
    if kind == "broken_inside":
        r = s * rng.uniform(0.9, 1.6)
        return Defect(**base, radius=r, ir_radius=r, depth_mm=depth, displacement_mm=a * rng.uniform(0.1, 0.25))
    if kind == "foreign_body":
        body = _rgb(rng.uniform(0.1, 0.9, 3))
        return Defect(**base, radius=s * rng.uniform(0.4, 0.9), colour=body, colour_mix=1.0,
                      displacement_mm=a * rng.uniform(0.15, 0.5))
    if kind == "broken":
        r = s * rng.uniform(0.8, 1.6)
        return Defect(**base, radius=r, ir_radius=r, depth_mm=min(depth, 0.3 * mu), colour=dark,
                      colour_mix=min(1.0, a * 0.6), displacement_mm=-a * rng.uniform(0.2, 0.6))
    if kind == "hole":
        r = s * rng.uniform(0.35, 0.8)
        return Defect(**base, radius=r, ir_radius=r * 1.3, depth_mm=min(depth, 0.3 * mu), colour=(0.05, 0.05, 0.05),
                      colour_mix=1.0, displacement_mm=-min(a * rng.uniform(0.6, 1.5), 0.6 * thick))
    raise ValueError(f"unknown defect kind {kind!r}")
