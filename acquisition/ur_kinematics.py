"""UR5 kinematics and pose conversions (pure functions; metres and radians, UR axis-angle poses)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

# UR5 standard Denavit-Hartenberg parameters (Universal Robots' published values)
UR5_D = (0.089159, 0.0, 0.0, 0.10915, 0.09465, 0.0823)
UR5_A = (0.0, -0.425, -0.39225, 0.0, 0.0, 0.0)
UR5_ALPHA = (np.pi / 2, 0.0, 0.0, np.pi / 2, -np.pi / 2, 0.0)
HOME_JOINTS = (0.0, -1.2, 1.6, -1.97, -1.5708, 0.0)


def pose_to_matrix(pose) -> np.ndarray:
    """[x, y, z, rx, ry, rz] (axis-angle) -> 4x4 homogeneous transform."""
    pose = np.asarray(pose, dtype=np.float64)
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_rotvec(pose[3:6]).as_matrix()
    matrix[:3, 3] = pose[:3]
    return matrix


def matrix_to_pose(matrix: np.ndarray) -> np.ndarray:
    return np.concatenate([matrix[:3, 3], Rotation.from_matrix(matrix[:3, :3]).as_rotvec()])


def pose_distance(a, b) -> tuple[float, float]:
    """(translation in m, rotation angle in rad) between two poses."""
    ma, mb = pose_to_matrix(a), pose_to_matrix(b)
    angle = Rotation.from_matrix(ma[:3, :3].T @ mb[:3, :3]).magnitude()
    return float(np.linalg.norm(ma[:3, 3] - mb[:3, 3])), float(angle)


def forward_kinematics(joints, tcp=(0, 0, 0, 0, 0, 0)) -> np.ndarray:
    """Base -> TCP transform for the UR5 at ``joints`` with a TCP offset pose from the flange."""
    matrix = np.eye(4)
    for theta, d, a, alpha in zip(joints, UR5_D, UR5_A, UR5_ALPHA, strict=True):
        ct, st, ca, sa = np.cos(theta), np.sin(theta), np.cos(alpha), np.sin(alpha)
        matrix = matrix @ np.array([[ct, -st * ca, st * sa, a * ct],
                                    [st, ct * ca, -ct * sa, a * st],
                                    [0.0, sa, ca, d],
                                    [0.0, 0.0, 0.0, 1.0]])
    return matrix @ pose_to_matrix(tcp)


def inverse_kinematics(target_pose, seed_joints, tcp=(0, 0, 0, 0, 0, 0)) -> np.ndarray:
    """Joints reaching ``target_pose`` nearest to ``seed_joints`` (damped least squares)."""
    target = pose_to_matrix(target_pose)

    def residual(q):
        current = forward_kinematics(q, tcp)
        rot = Rotation.from_matrix(target[:3, :3].T @ current[:3, :3]).as_rotvec()
        return np.concatenate([current[:3, 3] - target[:3, 3], 0.2 * rot, 1e-4 * (q - seed_joints)])

    return least_squares(residual, np.asarray(seed_joints, float), xtol=1e-12, ftol=1e-12).x
