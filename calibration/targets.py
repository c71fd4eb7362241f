"""The chessboard target (its geometry and the pattern it prints) and its detection with sub-pixel corners in one
canonical order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chessboard:
    inner_cols: int = 9
    inner_rows: int = 6
    square_mm: float = 4.0

    @property
    def pattern(self) -> tuple[int, int]:
        return self.inner_cols, self.inner_rows

    def object_points(self) -> np.ndarray:
        """Inner corners in the target frame (mm, z = 0), in OpenCV's row-major detection order."""
        jj, ii = np.meshgrid(np.arange(self.inner_cols), np.arange(self.inner_rows))
        return np.stack([jj.ravel() * self.square_mm, ii.ravel() * self.square_mm, np.zeros(jj.size)], 1)

    def centre(self) -> np.ndarray:
        return np.array([(self.inner_cols - 1) * self.square_mm / 2, (self.inner_rows - 1) * self.square_mm / 2, 0])

    def colour(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """1 = white, 0 = black, NaN outside the board (one white square margin all round)."""
        i, j = np.floor(y / self.square_mm) + 1, np.floor(x / self.square_mm) + 1  # squares 0..n, corners between
        inside = (i >= -1) & (i <= self.inner_rows + 1) & (j >= -1) & (j <= self.inner_cols + 1)
        checker = ((i + j) % 2 == 0).astype(float)
        margin = (i == -1) | (j == -1) | (i == self.inner_rows + 1) | (j == self.inner_cols + 1)
        return np.where(inside, np.where(margin, 1.0, checker), np.nan)


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
