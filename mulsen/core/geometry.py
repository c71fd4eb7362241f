"""Rigid transforms and pose conversions: the one place for SE(3) in the toolkit.

Every name carries its unit. A *UR pose* is Universal Robots' ``[x, y, z, rx, ry, rz]``: position in
metres and an axis-angle rotation vector in radians. A *transform* is a 4x4 homogeneous matrix whose
translation unit is in the function name (``_m`` metres, ``_mm`` millimetres). Rotations go through
scipy's ``Rotation``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation


def rotation_from_rotvec(rotvec_rad: ArrayLike) -> np.ndarray:
    """3x3 rotation matrix of an axis-angle vector (radians)."""
    return np.asarray(Rotation.from_rotvec(np.asarray(rotvec_rad, float)).as_matrix())


def rotvec_from_rotation(rotation: ArrayLike) -> np.ndarray:
    """Axis-angle vector (radians) of a 3x3 rotation matrix."""
    return np.asarray(Rotation.from_matrix(np.asarray(rotation, float)[:3, :3]).as_rotvec())


def rigid_transform(rotation: ArrayLike, translation: ArrayLike) -> np.ndarray:
    """4x4 transform from a 3x3 rotation and a translation (in whatever unit the caller uses)."""
    transform = np.eye(4)
    transform[:3, :3] = np.asarray(rotation, float)
    transform[:3, 3] = np.asarray(translation, float)
    return transform


def ur_pose_to_transform_m(pose: ArrayLike) -> np.ndarray:
    """UR pose -> 4x4 transform in metres."""
    pose = np.asarray(pose, float)
    return rigid_transform(rotation_from_rotvec(pose[3:6]), pose[:3])


def transform_m_to_ur_pose(transform: np.ndarray) -> np.ndarray:
    """4x4 transform in metres -> UR pose."""
    return np.concatenate([transform[:3, 3], rotvec_from_rotation(transform[:3, :3])])


def ur_pose_to_transform_mm(pose: ArrayLike) -> np.ndarray:
    """UR pose -> 4x4 transform in millimetres (the calibration's unit)."""
    pose = np.asarray(pose, float)
    return rigid_transform(rotation_from_rotvec(pose[3:6]), pose[:3] * 1000.0)


def transform_mm_to_ur_pose(transform: np.ndarray) -> np.ndarray:
    """4x4 transform in millimetres -> UR pose."""
    return np.concatenate([transform[:3, 3] / 1000.0, rotvec_from_rotation(transform[:3, :3])])


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (degrees) of the relative rotation between two 3x3 rotations or 4x4 transforms."""
    relative = np.asarray(a, float)[:3, :3].T @ np.asarray(b, float)[:3, :3]
    return float(np.degrees(Rotation.from_matrix(relative).magnitude()))


def ur_pose_distance_m_rad(a: ArrayLike, b: ArrayLike) -> tuple[float, float]:
    """(translation in metres, rotation angle in radians) between two UR poses."""
    ta, tb = ur_pose_to_transform_m(a), ur_pose_to_transform_m(b)
    return float(np.linalg.norm(ta[:3, 3] - tb[:3, 3])), float(np.radians(rotation_angle_deg(ta, tb)))


def apply_transform(transform: np.ndarray, points: ArrayLike) -> np.ndarray:
    """(N, 3) points moved by a 4x4 transform (same unit as the transform's translation)."""
    return np.asarray(points, float) @ transform[:3, :3].T + transform[:3, 3]


def transform_error_deg(estimate: np.ndarray, truth: np.ndarray, at: ArrayLike) -> tuple[float, float]:
    """(rotation error in degrees, displacement error at the point ``at``) between two 4x4 transforms.

    The displacement is in the transforms' unit and measured at the part (e.g. the centroid of the moved
    scan): scanner frames sit metres from their origin, where a tiny rotation error shows up as a large
    translation component.
    """
    at = np.asarray(at, float)[None]
    offset = np.linalg.norm(apply_transform(estimate, at) - apply_transform(truth, at))
    return rotation_angle_deg(truth, estimate), float(offset)
