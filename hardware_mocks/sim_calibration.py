"""Simulated cameras for calibration: the same TLSimu transport, showing a calibration board.

The RGB camera sees the board from where the arm really holds it (true mount); the fixed IR camera
sees a heated board, either lying on the bench or held by the simulated operator at a new pose for
every frame (intrinsics of a fixed camera need the target to move).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mulsen.acquisition.camera import CameraConfig, GenICamCamera, simulator_producer
from mulsen.acquisition.clock import Clock

from .rig import base_T_ir_camera, base_T_rgb_camera
from .sim_cameras import IR_SERIAL, RGB_SERIAL, SimulatedCamera
from .world.scene import camera_for
from .world.targets import Chessboard, TargetRenderer

CALIBRATION_BOARD = Chessboard(7, 5, 3.0)  # 30 x 24 mm with its margin: fits both camera fields


def board_rgb_camera(clock: Clock, tcp_pose: Callable[[], np.ndarray], size: str, base_T_target: np.ndarray,
                     board: Chessboard = CALIBRATION_BOARD, seed: int = 0) -> SimulatedCamera:
    nominal = camera_for("rgb", size)
    renderer = TargetRenderer(nominal.intrinsics, np.zeros(5), (nominal.width, nominal.height))
    rng = np.random.default_rng(seed)

    def render(_t: float) -> np.ndarray:
        camera_T_target = np.linalg.inv(base_T_rgb_camera(tcp_pose())) @ base_T_target
        gray = renderer.render(board, camera_T_target, rng)
        return np.repeat(gray[..., None], 3, axis=2)

    config = CameraConfig(name="rgb camera (simulated)", cti=simulator_producer(), serial_number=RGB_SERIAL,
                          roi=(0, 0, nominal.width, nominal.height))
    return SimulatedCamera(GenICamCamera(config, clock), render, "RGB8", "calibration board")


def board_ir_camera(clock: Clock, size: str, target_poses: list[np.ndarray], board: Chessboard = CALIBRATION_BOARD,
                    seed: int = 0) -> SimulatedCamera:
    """Mono16 (10 mK/DN) views of the heated board; frame k shows ``target_poses[k % len]`` (base frame)."""
    nominal = camera_for("ir", size)
    renderer = TargetRenderer(nominal.intrinsics, np.zeros(5), (nominal.width, nominal.height))
    rng = np.random.default_rng(seed)
    camera = base_T_ir_camera()
    counter = iter(range(10 ** 9))

    def render(_t: float) -> np.ndarray:
        pose = target_poses[next(counter) % len(target_poses)]
        # dark squares absorb the lamp better: ~2 K warmer; heat spreads over about a pixel
        gray = renderer.render(board, np.linalg.inv(camera) @ pose, rng, noise=0.5, thermal_blur_px=0.8,
                               contrast=(200.0, 0.0))
        return (29800 + gray.astype(np.uint16)).astype(np.uint16)

    config = CameraConfig(name="ir camera (simulated)", cti=simulator_producer(), serial_number=IR_SERIAL,
                          roi=(0, 0, nominal.width, nominal.height))
    return SimulatedCamera(GenICamCamera(config, clock), render, "Mono16", "heated calibration board")
