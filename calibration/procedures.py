"""Calibration procedures that drive the devices (real or simulated): move the arm, grab, solve."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from scipy.spatial.transform import Rotation

from mulsen.acquisition.camera import Camera
from mulsen.acquisition.robot import RobotArm
from mulsen.core.geometry import transform_mm_to_ur_pose, ur_pose_to_transform_mm

from .hand_eye import HandEyeResult, calibrate_hand_eye
from .intrinsics import CalibrationError, Intrinsics, calibrate_intrinsics
from .ir_rgb import IrRgbRegistration, register_ir_rgb
from .pose import target_pose
from .targets import Chessboard


def to_gray8(image: np.ndarray, invert: bool = False) -> np.ndarray:
    """Any frame -> 8-bit gray for corner detection (16-bit IR frames are contrast-stretched).

    ``invert`` for the heated board in IR: its dark squares absorb the lamp and look warm (bright).
    """
    if image.ndim == 3:
        image = image.mean(axis=2)
    low, high = np.percentile(image, [0.5, 99.5])
    gray = np.clip((image - low) * 255.0 / max(high - low, 1e-9), 0, 255).astype(np.uint8)
    return 255 - gray if invert else gray


def viewing_poses(base_T_target: np.ndarray, board: Chessboard, count: int, rng: np.random.Generator,
                  distance_mm: float = 250.0, tilt_deg: tuple[float, float] = (15.0, 35.0)) -> list[np.ndarray]:
    """UR poses (nominal mount: camera at the TCP) looking at the board centre from tilted directions."""
    centre = base_T_target @ np.r_[board.centre(), 1.0]
    poses = []
    for k in range(count):
        tilt = np.radians(rng.uniform(*tilt_deg))
        azimuth = 2 * np.pi * k / count + rng.uniform(-0.3, 0.3)
        offset = distance_mm * np.array([np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth),
                                         np.cos(tilt)])
        position = centre[:3] + offset
        forward = (centre[:3] - position) / distance_mm
        x_axis = np.array([1.0, 0.0, 0.0]) - forward * forward[0]  # image x close to bench x
        x_axis /= np.linalg.norm(x_axis)
        matrix = np.eye(4)
        matrix[:3, :3] = np.stack([x_axis, np.cross(forward, x_axis), forward], axis=1)
        matrix[:3, 3] = position
        twist = Rotation.from_euler("z", rng.uniform(-20, 20), degrees=True).as_matrix()
        matrix[:3, :3] = matrix[:3, :3] @ twist
        poses.append(transform_mm_to_ur_pose(matrix))
    return poses


def collect_arm_views(arm: RobotArm, camera: Camera, poses: list[np.ndarray], speed: float,
                      progress: Callable[[Iterable, int], Iterable] | None = None
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(reported TCP pose, frame) at every pose."""
    views = []
    for pose in progress(poses, len(poses)) if progress else poses:
        arm.move_linear(pose, speed=speed)
        views.append((arm.pose(), camera.grab().image))
    return views


def rgb_intrinsics_from_views(views: list[tuple[np.ndarray, np.ndarray]], board: Chessboard,
                              camera: dict | None = None, narrow_lens: bool = True) -> Intrinsics:
    """The bench cameras have narrow lenses (~9° field): see ``calibrate_intrinsics(narrow_lens=...)``."""
    return calibrate_intrinsics([to_gray8(image) for _, image in views], board,
                                [f"pose {k}" for k in range(len(views))], camera=camera, narrow_lens=narrow_lens)


def hand_eye_from_views(views: list[tuple[np.ndarray, np.ndarray]], board: Chessboard, intrinsics: Intrinsics
                        ) -> HandEyeResult:
    robot, target = [], []
    for tcp_pose, image in views:
        found = target_pose(to_gray8(image), board, intrinsics.camera_matrix, intrinsics.dist)
        if found is not None:
            robot.append(ur_pose_to_transform_mm(tcp_pose))
            target.append(found[0])
    if len(robot) < 4:
        raise CalibrationError(f"the target was found in only {len(robot)} of {len(views)} views")
    return calibrate_hand_eye(robot, target)


def ir_intrinsics_from_camera(camera: Camera, views: int, board: Chessboard, camera_info: dict | None = None,
                              progress: Callable[[Iterable, int], Iterable] | None = None,
                              narrow_lens: bool = True) -> Intrinsics:
    """The fixed IR camera: the operator holds the heated board at a new pose before every frame."""
    steps = range(views)
    images = [to_gray8(camera.grab().image, invert=True) for _ in (progress(steps, views) if progress else steps)]
    return calibrate_intrinsics(images, board, camera=camera_info, narrow_lens=narrow_lens)


def ir_rgb_from_cameras(arm: RobotArm, ir_camera: Camera, rgb_camera: Camera, reference_pose: np.ndarray,
                        board: Chessboard, speed: float, ir_intrinsics: Intrinsics | None = None,
                        rgb_intrinsics: Intrinsics | None = None) -> IrRgbRegistration:
    arm.move_linear(reference_pose, speed=speed)
    reached = arm.pose()
    ir_image, rgb_image = to_gray8(ir_camera.grab().image, invert=True), to_gray8(rgb_camera.grab().image)
    registration = register_ir_rgb(
        ir_image, rgb_image, board,
        None if ir_intrinsics is None else (ir_intrinsics.camera_matrix, ir_intrinsics.dist),
        None if rgb_intrinsics is None else (rgb_intrinsics.camera_matrix, rgb_intrinsics.dist))
    registration.reference_tcp_pose = reached.tolist()
    return registration
