"""Calibration targets seen by any pinhole camera: a chessboard on a plane at an arbitrary pose.

Ray casting per pixel (with the camera's lens distortion, 2x2 supersampling for anti-aliased edges),
so that calibration code can be checked against exact intrinsics, poses and hand-eye transforms. The
IR variant renders the heated pattern a thermal camera sees: emissivity contrast, blurred by lateral
heat flow, with sensor noise.
"""

from __future__ import annotations

import numpy as np

from mulsen.calibration.targets import Chessboard


def pixel_rays(camera_matrix: np.ndarray, dist: np.ndarray, size: tuple[int, int], supersample: int,
               step: int = 8) -> np.ndarray:
    """Undistorted normalised ray directions (H*s, W*s, 3) for sub-pixel sample positions.

    Undistortion is exact on a grid every ``step`` pixels and interpolated (bilinear) in between: lens
    distortion is smooth, and undistorting every sample would dominate the rendering time.
    """
    import cv2
    from scipy.ndimage import map_coordinates

    width, height = size
    gx = np.arange(-step, width + 2 * step, step, dtype=np.float64)
    gy = np.arange(-step, height + 2 * step, step, dtype=np.float64)
    grid = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 1e-12)
    coarse = cv2.undistortPointsIter(grid, camera_matrix, dist, None, None, criteria).reshape(len(gy), len(gx), 2)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    xs = (np.arange(width)[:, None] + offsets[None, :]).ravel()
    ys = (np.arange(height)[:, None] + offsets[None, :]).ravel()
    fx, fy = np.meshgrid((xs - gx[0]) / step, (ys - gy[0]) / step)
    rays = np.ones((len(ys), len(xs), 3))
    for k in range(2):
        rays[..., k] = map_coordinates(coarse[..., k], [fy, fx], order=1, mode="nearest")
    return rays


class TargetRenderer:
    """Renders boards for one camera; the per-pixel rays are computed once."""

    def __init__(self, camera_matrix: np.ndarray, dist: np.ndarray, size: tuple[int, int], supersample: int = 2):
        self.camera_matrix, self.dist, self.size, self.supersample = camera_matrix, dist, size, supersample
        self.rays = pixel_rays(camera_matrix, dist, size, supersample).astype(np.float32)

    def render(self, board: Chessboard, camera_T_target: np.ndarray, rng: np.random.Generator,
               background: float = 0.35, noise: float = 1.0, thermal_blur_px: float = 0.0,
               contrast: tuple[float, float] = (20.0, 230.0)) -> np.ndarray:
        """8-bit gray view of the board (``camera_T_target`` maps target mm to camera mm)."""
        from scipy.ndimage import gaussian_filter

        target_T_camera = np.linalg.inv(camera_T_target)
        origin = target_T_camera[:3, 3].astype(np.float32)
        directions = self.rays @ target_T_camera[:3, :3].T.astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = -origin[2] / directions[..., 2]
        hx = origin[0] + depth * directions[..., 0]
        hy = origin[1] + depth * directions[..., 1]
        value = board.colour(hx, hy)
        value = np.where((depth > 0) & np.isfinite(value), value, background)
        s = self.supersample
        width, height = self.size
        value = value.reshape(height, s, width, s).mean(axis=(1, 3))
        if thermal_blur_px > 0:
            value = gaussian_filter(value, thermal_blur_px)
        dark, bright = contrast
        image = dark + (bright - dark) * value + rng.normal(0, noise, value.shape)
        return np.clip(np.round(image), 0, 255).astype(np.uint8)


def look_at(camera_position: np.ndarray, target_point: np.ndarray, up_hint=(0.0, 1.0, 0.0)) -> np.ndarray:
    """world_T_camera for a camera at ``camera_position`` looking at ``target_point`` (OpenCV axes)."""
    z = np.asarray(target_point, float) - np.asarray(camera_position, float)
    z /= np.linalg.norm(z)
    x = np.cross(np.asarray(up_hint, float), z)
    if np.linalg.norm(x) < 1e-6:
        x = np.cross([1.0, 0, 0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, y, z], 1)
    pose[:3, 3] = camera_position
    return pose
