"""The one SE(3) module: conversions are exact inverses, units are what the names say."""

from __future__ import annotations

import numpy as np
import pytest

from mulsen.core.geometry import (
    apply_transform,
    rigid_transform,
    rotation_angle_deg,
    rotation_from_rotvec,
    rotvec_from_rotation,
    transform_error_deg,
    transform_m_to_ur_pose,
    transform_mm_to_ur_pose,
    ur_pose_distance_m_rad,
    ur_pose_to_transform_m,
    ur_pose_to_transform_mm,
)


def _rodrigues(w: np.ndarray) -> np.ndarray:
    """Textbook Rodrigues formula, as an independent reference."""
    angle = np.linalg.norm(w)
    k = w / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def test_conversions_invert_each_other_in_their_units():
    rng = np.random.default_rng(0)
    for _ in range(50):
        axis = rng.normal(size=3)
        pose = np.r_[rng.uniform(-1, 1, 3), axis / np.linalg.norm(axis) * rng.uniform(0.01, 3.1)]
        np.testing.assert_allclose(rotation_from_rotvec(pose[3:]), _rodrigues(pose[3:]), atol=1e-12)
        metres, millimetres = ur_pose_to_transform_m(pose), ur_pose_to_transform_mm(pose)
        np.testing.assert_allclose(millimetres[:3, 3], 1000 * metres[:3, 3])
        np.testing.assert_allclose(millimetres[:3, :3], metres[:3, :3])
        np.testing.assert_allclose(transform_m_to_ur_pose(metres), pose, atol=1e-12)
        np.testing.assert_allclose(transform_mm_to_ur_pose(millimetres), pose, atol=1e-12)
        np.testing.assert_allclose(rotvec_from_rotation(metres), pose[3:], atol=1e-12)


def test_angles_distances_and_errors():
    turn = rigid_transform(rotation_from_rotvec([0, 0, np.radians(30)]), [0, 0, 0])
    assert rotation_angle_deg(np.eye(4), turn) == pytest.approx(30)
    assert rotation_angle_deg(turn[:3, :3], turn) == pytest.approx(0, abs=1e-6)
    a, b = [0.1, 0.2, 0.3, 0, 0, 0], [0.1, 0.2, 0.7, 0, np.radians(10), 0]
    assert ur_pose_distance_m_rad(a, b) == pytest.approx((0.4, np.radians(10)))
    shifted = rigid_transform(np.eye(3), [1.0, 0, 0])
    points = np.array([[0.0, 0, 0], [1, 2, 3]])
    np.testing.assert_allclose(apply_transform(shifted, points), points + [1, 0, 0])
    # a tiny rotation far from the origin: the error is measured at the part, not at the frame's origin
    far = rigid_transform(rotation_from_rotvec([0, 0, np.radians(0.01)]), [0, 0, 0])
    angle, offset = transform_error_deg(far, np.eye(4), [2000.0, 0, 0])
    assert angle == pytest.approx(0.01) and offset == pytest.approx(2000 * np.radians(0.01), rel=1e-6)
