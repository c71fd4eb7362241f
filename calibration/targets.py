"""Chessboard detection with sub-pixel corners in one canonical order."""

from __future__ import annotations

import numpy as np

from hardware_mocks.world.targets import Chessboard

__all__ = ["Chessboard", "detect_chessboard"]


def detect_chessboard(image: np.ndarray, board: Chessboard) -> np.ndarray | None:
    """(N, 2) inner corners in the board's row-major order, or None when the board is not found.

    OpenCV may start from either end of a board; the square diagonally outside corner 0 is white on
    our boards (its two side neighbours are black), so a dark one there means the order is reversed.
    """
    import cv2

    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    found, corners = cv2.findChessboardCorners(gray, board.pattern,
                                               cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not found:
        return None
    corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1),
                               (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-5)).reshape(-1, 2)
    cols = board.inner_cols
    u, v = corners[1] - corners[0], corners[cols] - corners[0]

    def sample(point: np.ndarray) -> float:
        x, y = np.clip(np.round(point).astype(int), 0, [gray.shape[1] - 1, gray.shape[0] - 1])
        return float(gray[y, x])

    outside = sample(corners[0] - 0.5 * u - 0.5 * v)  # white on our boards when the order is canonical
    neighbours = 0.5 * (sample(corners[0] + 0.5 * u - 0.5 * v) + sample(corners[0] - 0.5 * u + 0.5 * v))
    if outside < neighbours:
        corners = corners[::-1].copy()
    return corners
