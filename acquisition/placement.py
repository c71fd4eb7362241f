"""Where the arm puts the RGB camera: over the part found in the IR amplitude image.

One small Protocol and its nominal implementation; ``mulsen.calibration.placement.CalibratedPlacement``
implements the same Protocol from calibration results, so the capture session never branches on
which one it has.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from .robot import ArmGeometry, locate_part_in_ir, part_pixel_in_ir

NOMINAL_IR_INTRINSICS = ((4000.0, 0.0, 319.5), (0.0, 4000.0, 239.5), (0.0, 0.0, 1.0))  # until calibrated


@dataclass(frozen=True)
class PlacementChoice:
    """Where the RGB camera goes and how that was found."""

    tcp_pose: tuple[float, ...]  # UR pose: metres + rotation vector
    part_ir_pixel: tuple[float, float]
    method: str  # "nominal geometry" | "calibrated"
    part_bench_xy_mm: tuple[float, float] | None = None


class Placement(Protocol):
    """Chooses the TCP pose that views the part, found in the IR amplitude image, with the RGB camera."""

    def tcp_pose_for_part(self, amplitude: np.ndarray, ir_intrinsics: np.ndarray | None) -> PlacementChoice: ...

    def describe(self) -> dict[str, Any]:
        """The settings, for ``capture.json``."""
        ...


@dataclass(frozen=True)
class NominalPlacement:
    """The nominal bench geometry: an IR camera looking straight down from a known height."""

    geometry: ArmGeometry = field(default_factory=ArmGeometry)
    ir_intrinsics: tuple[tuple[float, float, float], ...] = NOMINAL_IR_INTRINSICS  # used when the camera has none
    ir_camera_xy_mm: tuple[float, float] = (0.0, 0.0)
    ir_distance_mm: float = 300.0

    def tcp_pose_for_part(self, amplitude: np.ndarray, ir_intrinsics: np.ndarray | None) -> PlacementChoice:
        intrinsics = np.asarray(self.ir_intrinsics if ir_intrinsics is None else ir_intrinsics, float)
        part_xy = locate_part_in_ir(amplitude, intrinsics, self.ir_camera_xy_mm, self.ir_distance_mm)
        pose = self.geometry.camera_pose_above(part_xy)
        return PlacementChoice(tuple(map(float, pose)), part_pixel_in_ir(amplitude), "nominal geometry", part_xy)

    def describe(self) -> dict[str, Any]:
        return {"geometry": asdict(self.geometry), "ir_intrinsics": [list(row) for row in self.ir_intrinsics]}
