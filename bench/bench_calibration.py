"""Calibration on 20 random simulated rigs: time per calibration and the errors against the truth.

Intrinsics: a 35° lens with distortion, 15 tilted views. Hand-eye: a random tilted mount, 20 poses.
IR-to-RGB: both bench cameras looking down at a board at a random place on the bench.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.spatial.transform import Rotation

from mulsen.calibration.hand_eye import calibrate_hand_eye
from mulsen.calibration.intrinsics import calibrate_intrinsics
from mulsen.calibration.ir_rgb import register_ir_rgb
from mulsen.calibration.pose import target_pose
from mulsen.core.geometry import rotation_angle_deg
from mulsen.hardware_mocks.world.scene import camera_for
from mulsen.hardware_mocks.world.targets import Chessboard, TargetRenderer, look_at

RIGS = 20
BOARD = Chessboard(9, 6, 4.0)


def tilted(rng, board, distance=(85, 110), tilt=(15, 40), aim=(6, 4)):
    d, t, az = rng.uniform(*distance), np.radians(rng.uniform(*tilt)), rng.uniform(0, 2 * np.pi)
    position = board.centre() + d * np.array([np.sin(t) * np.cos(az), np.sin(t) * np.sin(az), -np.cos(t)])
    aim_point = board.centre() + np.array([rng.uniform(-aim[0], aim[0]), rng.uniform(-aim[1], aim[1]), 0])
    up = rng.uniform(0, 2 * np.pi)
    return np.linalg.inv(look_at(position, aim_point, up_hint=(np.sin(up), np.cos(up), 0)))


def main() -> None:
    rng = np.random.default_rng(0)
    figures: dict[str, list[float]] = {}

    def note(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    wide = np.array([[1000.0, 0, 322.3], [0, 1000.0, 238.2], [0, 0, 1]])
    dist = np.array([-0.08, 0.05, 0.0005, -0.0003, 0.0])
    renderer = TargetRenderer(wide, dist, (640, 480))
    ideal = TargetRenderer(np.array([[1000.0, 0, 319.5], [0, 1000.0, 239.5], [0, 0, 1]]), np.zeros(5), (640, 480))
    small = Chessboard(7, 5, 3.0)
    ir_cam, rgb_cam = camera_for("ir", "small"), camera_for("rgb", "small")
    ir_r = TargetRenderer(ir_cam.intrinsics, np.zeros(5), (ir_cam.width, ir_cam.height))
    rgb_r = TargetRenderer(rgb_cam.intrinsics, np.zeros(5), (rgb_cam.width, rgb_cam.height))
    for _ in range(RIGS):
        images = [renderer.render(BOARD, tilted(rng, BOARD), rng) for _ in range(15)]
        start = time.perf_counter()
        result = calibrate_intrinsics(images, BOARD)
        note("intrinsics_s", time.perf_counter() - start)
        note("focal_error_pct", 100 * abs(result.camera_matrix[0, 0] / 1000 - 1))
        note("principal_point_error_px", float(np.hypot(result.camera_matrix[0, 2] - 322.3,
                                                        result.camera_matrix[1, 2] - 238.2)))
        mount = np.eye(4)
        mount[:3, :3] = Rotation.from_euler("xyz", rng.uniform(-8, 8, 3), degrees=True).as_matrix()
        mount[:3, 3] = rng.uniform(-25, 25, 3) + [0, 0, 40]
        robot, targets = [], []
        for _ in range(20):
            camera = tilted(rng, BOARD, (90, 110), (15, 35), (3, 2))
            found = target_pose(ideal.render(BOARD, camera, rng), BOARD, ideal.camera_matrix, ideal.dist)
            if found is not None:
                robot.append(np.linalg.inv(camera) @ np.linalg.inv(mount))
                targets.append(found[0])
        start = time.perf_counter()
        hand_eye = calibrate_hand_eye(robot, targets)
        note("hand_eye_s", time.perf_counter() - start)
        note("hand_eye_rotation_error_deg", rotation_angle_deg(hand_eye.tcp_T_camera, mount))
        note("hand_eye_translation_error_mm", float(np.linalg.norm(hand_eye.tcp_T_camera[:3, 3] - mount[:3, 3])))
        place = np.eye(4)
        place[:3, 3] = [rng.uniform(-14, -6), rng.uniform(-10, -4), 0.0]
        ir_pose = np.linalg.inv(look_at(np.array([0.0, 0, 300]), np.zeros(3), up_hint=(0, -1, 0)))
        shift = rng.uniform(-3, 3, 2)
        rgb_pose = np.linalg.inv(look_at(np.array([*shift, 250.0]), np.array([*shift, 0.0]), up_hint=(0, -1, 0)))
        ir_image = 255 - ir_r.render(small, ir_pose @ place, rng, thermal_blur_px=0.8, contrast=(200.0, 0.0))
        start = time.perf_counter()
        registration = register_ir_rgb(ir_image, rgb_r.render(small, rgb_pose @ place, rng), small)
        note("ir_rgb_s", time.perf_counter() - start)
        note("ir_rgb_reprojection_px", registration.rms_px)
    for name, values in figures.items():
        unit = name.rsplit("_", 1)[-1]
        base = name[: -len(unit) - 1]
        print(f"{base}_mean: {np.mean(values):.4f} {unit}")
        print(f"{base}_max: {np.max(values):.4f} {unit}")


if __name__ == "__main__":
    main()
