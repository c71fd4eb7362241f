"""Target pose from one view (PnP) with calibrated intrinsics."""

from __future__ import annotations

import numpy as np

from mulsen.core.geometry import rigid_transform, rotation_from_rotvec

from .targets import Chessboard, detect_chessboard


def target_pose(image: np.ndarray, board: Chessboard, camera_matrix: np.ndarray, dist: np.ndarray
                ) -> tuple[np.ndarray, float] | None:
    """camera_T_target (4x4, mm) and the reprojection RMS (px), or None when the board is not seen."""
    import cv2

    corners = detect_chessboard(image, board)
    if corners is None:
        return None
    objects = board.object_points()
    ok, rvec, tvec = cv2.solvePnP(objects, corners, camera_matrix, dist, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return None
    projected, _ = cv2.projectPoints(objects, rvec, tvec, camera_matrix, dist)
    rms = float(np.sqrt(np.mean(np.sum((projected.reshape(-1, 2) - corners) ** 2, axis=1))))
    return rigid_transform(rotation_from_rotvec(rvec.ravel()), tvec.ravel()), rms
