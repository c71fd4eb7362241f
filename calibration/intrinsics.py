"""Camera intrinsics from chessboard views (OpenCV), with per-view errors and reasoned view rejection."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mulsen.core.errors import MulsenError
from mulsen.core.geometry import rigid_transform, rotation_from_rotvec
from mulsen.core.records import to_plain

from .records import IntrinsicsRecord, ViewResult, as_matrix
from .targets import Chessboard, detect_chessboard

MIN_VIEWS = 4


class CalibrationError(MulsenError):
    """The views cannot give a trustworthy calibration."""


@dataclass
class Intrinsics:
    camera_matrix: np.ndarray
    dist: np.ndarray
    image_size: tuple[int, int]  # width, height
    rms_px: float
    views: list[ViewResult] = field(default_factory=list)
    camera: dict[str, Any] = field(default_factory=dict)
    board: dict[str, Any] = field(default_factory=dict)

    @property
    def used_views(self) -> list[ViewResult]:
        return [v for v in self.views if v.used]

    def save(self, path: str | Path) -> None:
        IntrinsicsRecord(camera_matrix=as_matrix(self.camera_matrix), dist=tuple(np.ravel(self.dist).tolist()),
                         image_size=self.image_size, rms_px=float(self.rms_px), views=tuple(self.views),
                         camera=to_plain(self.camera), board=to_plain(self.board)).write(path)

    @classmethod
    def load(cls, path: str | Path) -> Intrinsics:
        record = IntrinsicsRecord.read(path)
        return cls(np.asarray(record.camera_matrix, float), np.asarray(record.dist, float), record.image_size,
                   record.rms_px, list(record.views), record.camera, record.board)


def _pose(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    return rigid_transform(rotation_from_rotvec(np.ravel(rvec)), np.ravel(tvec))


def calibrate_intrinsics(images: list[np.ndarray], board: Chessboard, names: list[str] | None = None,
                         max_view_rms_px: float = 1.0, camera: dict | None = None, fit_k3: bool = False,
                         narrow_lens: bool = False) -> Intrinsics:
    """Detect the board in every image, calibrate, drop views above ``max_view_rms_px`` and recalibrate.

    The lens model is k1, k2, p1, p2 (k3 only with ``fit_k3``: with a few views of a small board it
    trades off against the principal point). ``narrow_lens`` (fields under ~15°, where tilted views can
    locate neither the principal point nor the distortion): the principal point stays at the image
    centre, pixels are square and the lens is taken as distortion-free; only the focal length is fitted.
    """
    import cv2

    names = names or [f"view {k}" for k in range(len(images))]
    if not images:
        raise CalibrationError("no images")
    height, width = images[0].shape[:2]
    views, object_points, image_points = [], [], []
    for name, image in zip(names, images, strict=True):
        if image.shape[:2] != (height, width):
            views.append(ViewResult(name, False, f"image size {image.shape[1]}x{image.shape[0]} differs"))
            continue
        corners = detect_chessboard(image, board)
        if corners is None:
            views.append(ViewResult(name, False, "target not found"))
            continue
        views.append(ViewResult(name, True))
        object_points.append(board.object_points().astype(np.float32))
        image_points.append(corners.astype(np.float32))
    usable = [v for v in views if v.used]
    if len(usable) < MIN_VIEWS:
        raise CalibrationError(f"only {len(usable)} views show the target (need {MIN_VIEWS}); "
                               + "; ".join(f"{v.name}: {v.reason}" for v in views if not v.used))
    flags = 0 if fit_k3 else cv2.CALIB_FIX_K3
    guess = None
    if narrow_lens:  # focal length from a free fit, then centre, aspect and a distortion-free lens held fixed
        _, free, _, _, _ = cv2.calibrateCamera(object_points, image_points, (width, height), None, None, flags=flags)
        guess = free.copy()
        guess[0, 2], guess[1, 2] = (width - 1) / 2, (height - 1) / 2
        guess[0, 0] = guess[1, 1] = 0.5 * (free[0, 0] + free[1, 1])  # square pixels
        flags |= (cv2.CALIB_FIX_PRINCIPAL_POINT | cv2.CALIB_USE_INTRINSIC_GUESS | cv2.CALIB_FIX_ASPECT_RATIO
                  | cv2.CALIB_ZERO_TANGENT_DIST | cv2.CALIB_FIX_K1 | cv2.CALIB_FIX_K2)
    for _ in range(3):  # calibrate, reject outlier views, repeat
        rms, matrix, dist, rvecs, tvecs = cv2.calibrateCamera(object_points, image_points, (width, height),
                                                              None if guess is None else guess.copy(), None,
                                                              flags=flags)
        per_view = []
        for obj, img, rvec, tvec in zip(object_points, image_points, rvecs, tvecs, strict=True):
            projected, _ = cv2.projectPoints(obj, rvec, tvec, matrix, dist)
            per_view.append(float(np.sqrt(np.mean(np.sum((projected.reshape(-1, 2) - img) ** 2, axis=1)))))
        worst = int(np.argmax(per_view))
        if per_view[worst] <= max_view_rms_px or len(object_points) <= MIN_VIEWS:
            break
        active = [v for v in views if v.used]
        active[worst].used = False
        active[worst].reason = f"reprojection RMS {per_view[worst]:.2f} px > {max_view_rms_px} px"
        del object_points[worst], image_points[worst]
    active = [v for v in views if v.used]
    for view, error, rvec, tvec in zip(active, per_view, rvecs, tvecs, strict=True):
        view.rms_px, view.camera_T_target = error, as_matrix(_pose(rvec, tvec))
    _check_conditioning(matrix, active, width, height)
    return Intrinsics(matrix, dist.ravel(), (width, height), float(rms), views, camera or {},
                      asdict(board))


def _check_conditioning(matrix: np.ndarray, views: list[ViewResult], width: int, height: int) -> None:
    """Focal length is unobservable when every view faces the camera squarely (no tilt)."""
    tilts = [np.degrees(np.arccos(abs(np.asarray(v.camera_T_target)[2, 2]))) for v in views]
    if max(tilts) < 5.0:
        raise CalibrationError(f"all views face the camera squarely (max tilt {max(tilts):.1f}°): tilt the target "
                               "by 20-45° in several directions")
    if not (0 < matrix[0, 2] < width and 0 < matrix[1, 2] < height):
        raise CalibrationError("the principal point fell outside the image: the views do not constrain the lens")
