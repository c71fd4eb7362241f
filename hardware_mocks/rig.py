"""Ground truth of the simulated cell that calibration has to find: how the RGB camera really sits on
the flange, where the fixed IR camera is, and where a calibration target lies on the bench."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from mulsen.acquisition.robot import ArmGeometry
from mulsen.core.geometry import rigid_transform, ur_pose_to_transform_mm

from .world.scene import DownCamera, camera_for

# The real mount differs from the nominal "camera at the TCP": a few millimetres and a little twist
# about the optical axis (a tilt would break the straight-down RGB renderer of the capture simulator).
TRUE_RGB_MOUNT = rigid_transform(Rotation.from_euler("z", 2.0, degrees=True).as_matrix(), [4.0, -3.0, 1.5])
IR_CAMERA_HEIGHT_MM = 300.0


def bench_T_base(geometry: ArmGeometry | None = None) -> np.ndarray:
    origin = np.asarray((geometry or ArmGeometry()).bench_origin_in_base_m) * 1000.0
    return rigid_transform(np.eye(3), -origin)


def base_T_rgb_camera(tcp_pose, mount: np.ndarray = TRUE_RGB_MOUNT) -> np.ndarray:
    return ur_pose_to_transform_mm(tcp_pose) @ mount


def base_T_ir_camera(geometry: ArmGeometry | None = None) -> np.ndarray:
    """The fixed IR camera: above the bench origin, looking straight down (image x along bench x)."""
    looking_down = Rotation.from_rotvec([np.pi, 0, 0]).as_matrix()
    return np.linalg.inv(bench_T_base(geometry)) @ rigid_transform(looking_down, [0.0, 0.0, IR_CAMERA_HEIGHT_MM])


def rgb_view(tcp_pose, size: str, geometry: ArmGeometry | None = None) -> DownCamera:
    """What the RGB camera on the arm sees from ``tcp_pose`` (it looks straight down when the TCP does)."""
    camera = bench_T_base(geometry) @ base_T_rgb_camera(tcp_pose)
    nominal = camera_for("rgb", size)
    x_axis = camera[:3, 0]
    return DownCamera(nominal.width, nominal.height, nominal.focal_px, tuple(camera[:3, 3]),
                      float(np.arctan2(x_axis[1], x_axis[0])))


def board_on_bench(bench_xy_mm=(-14.0, -9.0), geometry: ArmGeometry | None = None) -> np.ndarray:
    """base_T_target of a calibration board lying flat on the bench, its x along bench x."""
    return np.linalg.inv(bench_T_base(geometry)) @ rigid_transform(np.eye(3), [*bench_xy_mm, 0.0])
