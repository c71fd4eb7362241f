"""IR-to-RGB registration on the bench plane: a homography from a target visible to both cameras.

Valid for points on the bench plane with the RGB camera at the reference arm pose the views were
taken from; lens distortion is removed first when intrinsics are given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .intrinsics import CalibrationError
from .records import IrRgbRecord, as_matrix
from .targets import Chessboard, detect_chessboard


@dataclass
class IrRgbRegistration:
    homography: np.ndarray  # 3x3, IR pixel -> RGB pixel (undistorted when intrinsics were used)
    rms_px: float
    inliers: int
    ir_size: tuple[int, int]
    rgb_size: tuple[int, int]
    reference_tcp_pose: tuple[float, ...] | None = None  # the UR pose the RGB view was taken from

    def map_points(self, points_ir: np.ndarray) -> np.ndarray:
        points = np.asarray(points_ir, float).reshape(-1, 2)
        homogeneous = np.hstack([points, np.ones((len(points), 1))]) @ self.homography.T
        return homogeneous[:, :2] / homogeneous[:, 2:3]

    def map_mask(self, mask_ir: np.ndarray) -> np.ndarray:
        """An IR-image mask in RGB image coordinates (nearest neighbour, so labels stay binary)."""
        import cv2

        warped = cv2.warpPerspective(np.asarray(mask_ir, np.uint8), self.homography, tuple(self.rgb_size),
                                     flags=cv2.INTER_NEAREST)
        return warped.astype(bool)

    def save(self, path: str | Path) -> None:
        pose = self.reference_tcp_pose
        IrRgbRecord(homography=as_matrix(self.homography), rms_px=float(self.rms_px), inliers=int(self.inliers),
                    ir_size=self.ir_size, rgb_size=self.rgb_size,
                    reference_tcp_pose=None if pose is None else tuple(map(float, pose))).write(path)

    @classmethod
    def load(cls, path: str | Path) -> IrRgbRegistration:
        record = IrRgbRecord.read(path)
        return cls(np.asarray(record.homography, float), record.rms_px, record.inliers, record.ir_size,
                   record.rgb_size, record.reference_tcp_pose)


def _undistort(points: np.ndarray, intrinsics) -> np.ndarray:
    if intrinsics is None:
        return points
    import cv2

    matrix, dist = intrinsics
    return cv2.undistortPoints(points.reshape(-1, 1, 2), matrix, dist, P=matrix).reshape(-1, 2)


def register_ir_rgb(ir_image: np.ndarray, rgb_image: np.ndarray, board: Chessboard, ir_intrinsics=None,
                    rgb_intrinsics=None, ransac_px: float = 2.0) -> IrRgbRegistration:
    """Homography from the heated target's corners in the IR image to the same corners in the RGB image."""
    import cv2

    ir_corners = detect_chessboard(ir_image, board)
    if ir_corners is None:
        raise CalibrationError("target not found in the IR image (is the pattern heated and in view?)")
    rgb_corners = detect_chessboard(rgb_image, board)
    if rgb_corners is None:
        raise CalibrationError("target not found in the RGB image")
    ir_points, rgb_points = _undistort(ir_corners, ir_intrinsics), _undistort(rgb_corners, rgb_intrinsics)
    homography, inlier_mask = cv2.findHomography(ir_points, rgb_points, cv2.RANSAC, ransac_px)
    if homography is None:
        raise CalibrationError("no homography fits the corners (degenerate target view)")
    inliers = inlier_mask.ravel().astype(bool)
    registration = IrRgbRegistration(homography, 0.0, int(inliers.sum()), (ir_image.shape[1], ir_image.shape[0]),
                                     (rgb_image.shape[1], rgb_image.shape[0]))
    residual = registration.map_points(ir_points[inliers]) - rgb_points[inliers]
    registration.rms_px = float(np.sqrt(np.mean(np.sum(residual ** 2, axis=1))))
    return registration


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks of one shape (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
