"""Calibration files: typed, versioned records (``mulsen.core.records``) with creation time and tool version.

The result classes (``Intrinsics``, ``HandEyeResult``, ``IrRgbRegistration``) hold numpy arrays for the maths;
these records are what their files hold, checked field by field (matrix shapes included) when read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from mulsen import __version__
from mulsen.core.errors import ConfigError
from mulsen.core.records import Record

Matrix = tuple[tuple[float, ...], ...]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _tool() -> str:
    return f"mulsen-toolkit {__version__}"


def as_matrix(array: Any) -> Matrix:
    """A numpy matrix as the records' nested tuples."""
    return tuple(tuple(float(v) for v in row) for row in np.asarray(array, float))


def check_matrix(name: str, matrix: Matrix | None, rows: int, cols: int) -> None:
    if matrix is not None and (len(matrix) != rows or any(len(row) != cols for row in matrix)):
        raise ConfigError(f"{name} must be a {rows}x{cols} matrix")


@dataclass(frozen=True, kw_only=True)
class CalibrationRecord(Record):
    created: str = field(default_factory=_now)
    tool: str = field(default_factory=_tool)


@dataclass
class ViewResult:
    name: str
    used: bool
    reason: str = ""
    rms_px: float | None = None
    camera_T_target: Matrix | None = None  # 4x4, target mm -> camera mm

    def __post_init__(self) -> None:
        check_matrix("camera_T_target", self.camera_T_target, 4, 4)


@dataclass(frozen=True)
class IntrinsicsRecord(CalibrationRecord):
    FORMAT = "mulsen-intrinsics"
    VERSION = 1
    WHAT = "camera intrinsics"

    camera_matrix: Matrix
    dist: tuple[float, ...]
    image_size: tuple[int, int]  # width, height
    rms_px: float
    views: tuple[ViewResult, ...] = ()
    camera: dict[str, Any] = field(default_factory=dict)
    board: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_matrix("camera_matrix", self.camera_matrix, 3, 3)
        if len(self.dist) not in (4, 5, 8, 12, 14):
            raise ConfigError(f"dist has {len(self.dist)} coefficients (OpenCV takes 4, 5, 8, 12 or 14)")
        if min(self.image_size) <= 0:
            raise ConfigError(f"image_size {self.image_size} is not a positive width, height")


@dataclass(frozen=True)
class HandEyeRecord(CalibrationRecord):
    FORMAT = "mulsen-hand-eye"
    VERSION = 1
    WHAT = "hand-eye"

    method: str
    tcp_T_camera_mm: Matrix
    base_T_target_mm: Matrix
    poses: int = 0
    comparison: dict[str, dict[str, float | str]] = field(default_factory=dict)  # method -> held-out spread

    def __post_init__(self) -> None:
        check_matrix("tcp_T_camera_mm", self.tcp_T_camera_mm, 4, 4)
        check_matrix("base_T_target_mm", self.base_T_target_mm, 4, 4)


@dataclass(frozen=True)
class IrRgbRecord(CalibrationRecord):
    FORMAT = "mulsen-ir-rgb"
    VERSION = 1
    WHAT = "IR-RGB registration"

    homography: Matrix  # 3x3, IR pixel -> RGB pixel
    rms_px: float
    inliers: int
    ir_size: tuple[int, int]
    rgb_size: tuple[int, int]
    reference_tcp_pose: tuple[float, ...] | None = None  # UR pose: x, y, z (m), rx, ry, rz (rad)

    def __post_init__(self) -> None:
        check_matrix("homography", self.homography, 3, 3)
        if self.reference_tcp_pose is not None and len(self.reference_tcp_pose) != 6:
            raise ConfigError(f"reference_tcp_pose has {len(self.reference_tcp_pose)} values, a UR pose has 6")
