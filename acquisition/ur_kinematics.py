"""UR5 kinematics (pure functions; metres and radians, UR axis-angle poses; conversions in mulsen.core.geometry)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from mulsen.core.geometry import rotvec_from_rotation, ur_pose_to_transform_m

# UR5 standard Denavit-Hartenberg parameters (Universal Robots' published values)
UR5_D = (0.089159, 0.0, 0.0, 0.10915, 0.09465, 0.0823)
UR5_A = (0.0, -0.425, -0.39225, 0.0, 0.0, 0.0)
UR5_ALPHA = (np.pi / 2, 0.0, 0.0, np.pi / 2, -np.pi / 2, 0.0)
HOME_JOINTS = (0.0, -1.2, 1.6, -1.97, -1.5708, 0.0)


def forward_kinematics(joints, tcp=(0, 0, 0, 0, 0, 0)) -> np.ndarray:
    """Base -> TCP transform for the UR5 at ``joints`` with a TCP offset pose from the flange."""
    matrix = np.eye(4)
    for theta, d, a, alpha in zip(joints, UR5_D, UR5_A, UR5_ALPHA, strict=True):
        ct, st, ca, sa = np.cos(theta), np.sin(theta), np.cos(alpha), np.sin(alpha)
        matrix = matrix @ np.array([[ct, -st * ca, st * sa, a * ct],
                                    [st, ct * ca, -ct * sa, a * st],
                                    [0.0, sa, ca, d],
                                    [0.0, 0.0, 0.0, 1.0]])
    return matrix @ ur_pose_to_transform_m(tcp)


def inverse_kinematics(target_pose, seed_joints, tcp=(0, 0, 0, 0, 0, 0)) -> np.ndarray:
    """Joints reaching ``target_pose`` nearest to ``seed_joints`` (damped least squares)."""
    target = ur_pose_to_transform_m(target_pose)

    def residual(q):
        current = forward_kinematics(q, tcp)
        rot = rotvec_from_rotation(target[:3, :3].T @ current[:3, :3])
        return np.concatenate([current[:3, 3] - target[:3, 3], 0.2 * rot, 1e-4 * (q - seed_joints)])

    return least_squares(residual, np.asarray(seed_joints, float), xtol=1e-12, ftol=1e-12).x
