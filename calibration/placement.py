"""Where to put the RGB camera so that the part found in the IR image sits in the middle of its view.

Uses the three calibration results: the IR-to-RGB homography (valid at the reference arm pose), the
RGB intrinsics, and the hand-eye transform with the bench plane it observed. This replaces the
nominal ``ArmGeometry`` of the capture session once a calibration exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mulsen.acquisition.placement import PlacementChoice
from mulsen.acquisition.robot import part_pixel_in_ir
from mulsen.core.errors import MulsenError
from mulsen.core.geometry import transform_mm_to_ur_pose, ur_pose_to_transform_mm

from .hand_eye import HandEyeResult
from .intrinsics import Intrinsics
from .ir_rgb import IrRgbRegistration

INTRINSICS_RGB = "rgb_intrinsics.json"
INTRINSICS_IR = "ir_intrinsics.json"
HAND_EYE = "hand_eye.json"
IR_RGB = "ir_rgb.json"


@dataclass
class CalibratedPlacement:
    hand_eye: HandEyeResult
    registration: IrRgbRegistration
    rgb: Intrinsics

    @classmethod
    def load(cls, folder: str | Path) -> CalibratedPlacement:
        folder = Path(folder)
        missing = [name for name in (HAND_EYE, IR_RGB, INTRINSICS_RGB) if not (folder / name).exists()]
        if missing:
            raise MulsenError(f"{folder}: calibration incomplete, missing {', '.join(missing)} "
                              "(run mulsen calibrate intrinsics --camera rgb, hand-eye, ir-rgb)")
        registration = IrRgbRegistration.load(folder / IR_RGB)
        if registration.reference_tcp_pose is None:
            raise MulsenError(f"{folder / IR_RGB}: no reference arm pose recorded")
        return cls(HandEyeResult.load(folder / HAND_EYE), registration, Intrinsics.load(folder / INTRINSICS_RGB))

    def _bench_hit(self, base_T_camera: np.ndarray, pixel) -> np.ndarray:
        """Where the ray through an (undistorted) RGB pixel meets the bench plane (base frame, mm)."""
        direction_camera = np.linalg.solve(self.rgb.camera_matrix, [pixel[0], pixel[1], 1.0])
        direction = base_T_camera[:3, :3] @ direction_camera
        plane = self.hand_eye.base_T_target
        normal, point = plane[:3, 2], plane[:3, 3]
        origin = base_T_camera[:3, 3]
        distance = (point - origin) @ normal / (direction @ normal)
        return origin + distance * direction

    def tcp_pose_for_part(self, amplitude: np.ndarray, ir_intrinsics: np.ndarray | None) -> PlacementChoice:
        """``acquisition.placement.Placement``: the IR pixel comes from the amplitude image, the rest from
        the calibration (the IR intrinsics are not needed: the homography maps IR pixels to RGB pixels)."""
        pixel = part_pixel_in_ir(amplitude)
        return PlacementChoice(tuple(map(float, self.tcp_pose_for_ir_pixel(pixel))), pixel, "calibrated")

    def describe(self) -> dict[str, Any]:
        return {"calibration": {"hand_eye_method": self.hand_eye.method,
                                "reference_tcp_pose": list(self.registration.reference_tcp_pose or ())}}

    def tcp_pose_for_ir_pixel(self, ir_pixel) -> np.ndarray:
        """UR pose placing the RGB camera, in the reference orientation, centred over the IR pixel's point."""
        camera_x = self.hand_eye.tcp_T_camera
        assert self.registration.reference_tcp_pose is not None  # checked by load
        reference = ur_pose_to_transform_mm(self.registration.reference_tcp_pose) @ camera_x
        rgb_pixel = self.registration.map_points(np.asarray(ir_pixel, float))[0]
        principal = self.rgb.camera_matrix[:2, 2]
        shift = self._bench_hit(reference, rgb_pixel) - self._bench_hit(reference, principal)
        moved = reference.copy()
        moved[:3, 3] += shift
        return transform_mm_to_ur_pose(moved @ np.linalg.inv(camera_x))
