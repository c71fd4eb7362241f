"""Eye-in-hand calibration of the RGB camera on the UR5 flange (OpenCV ``calibrateHandEye``).

Every method OpenCV offers is run on most of the poses and judged on the held-out rest: the target
lies still on the bench, so ``base_T_tcp · tcp_T_camera · camera_T_target`` must be the same for every
pose; the spread of the held-out predictions is the consistency figure. Units: millimetres.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from mulsen.core.geometry import rotation_angle_deg, rotvec_from_rotation
from mulsen.core.records import to_plain

from .intrinsics import CalibrationError
from .records import HandEyeRecord, as_matrix

METHODS = ("tsai", "park", "horaud", "andreff", "daniilidis")


@dataclass
class HandEyeResult:
    tcp_T_camera: np.ndarray  # 4x4 mm
    method: str
    base_T_target: np.ndarray  # where the target lay (mean over the poses)
    comparison: dict[str, dict[str, float | str]] = field(default_factory=dict)  # method -> held-out spread
    poses: int = 0

    def save(self, path: str | Path) -> None:
        HandEyeRecord(method=self.method, tcp_T_camera_mm=as_matrix(self.tcp_T_camera),
                      base_T_target_mm=as_matrix(self.base_T_target), poses=self.poses,
                      comparison=to_plain(self.comparison)).write(path)

    @classmethod
    def load(cls, path: str | Path) -> HandEyeResult:
        record = HandEyeRecord.read(path)
        return cls(np.asarray(record.tcp_T_camera_mm, float), record.method, np.asarray(record.base_T_target_mm, float),
                   record.comparison, record.poses)


def check_pose_diversity(base_T_tcp: list[np.ndarray]) -> None:
    """Hand-eye needs rotations about at least two different axes between poses (and enough of them)."""
    if len(base_T_tcp) < 4:
        raise CalibrationError(f"{len(base_T_tcp)} poses: hand-eye needs at least 4 (10-20 recommended)")
    axes = []
    for a, b in itertools.pairwise(base_T_tcp):
        rotvec = rotvec_from_rotation(a[:3, :3].T @ b[:3, :3])
        if np.linalg.norm(rotvec) > np.radians(3):
            axes.append(rotvec / np.linalg.norm(rotvec))
    if len(axes) < 2:
        raise CalibrationError("the poses barely rotate the tool (< 3° between poses): hand-eye is unobservable; "
                               "tilt the camera 15-35° in different directions")
    spread = max(np.degrees(np.arccos(np.clip(abs(a @ b), 0, 1))) for a in axes for b in axes)
    if spread < 10:
        raise CalibrationError("every pose change rotates about the same axis (coplanar motion): hand-eye is "
                               "unobservable; vary the tilt direction")


def _solve(base_T_tcp: list[np.ndarray], camera_T_target: list[np.ndarray], method: str) -> np.ndarray:
    import cv2

    flag = getattr(cv2, f"CALIB_HAND_EYE_{method.upper()}")
    rotation, translation = cv2.calibrateHandEye([m[:3, :3] for m in base_T_tcp], [m[:3, 3] for m in base_T_tcp],
                                                 [m[:3, :3] for m in camera_T_target],
                                                 [m[:3, 3] for m in camera_T_target], method=flag)
    result = np.eye(4)
    result[:3, :3], result[:3, 3] = rotation, translation.ravel()
    return result


def _target_in_base(base_T_tcp, camera_T_target, tcp_T_camera) -> list[np.ndarray]:
    return [b @ tcp_T_camera @ c for b, c in zip(base_T_tcp, camera_T_target, strict=True)]


def _mean_pose(poses: list[np.ndarray]) -> np.ndarray:
    mean = np.eye(4)
    mean[:3, :3] = Rotation.from_matrix([p[:3, :3] for p in poses]).mean().as_matrix()
    mean[:3, 3] = np.mean([p[:3, 3] for p in poses], axis=0)
    return mean


def calibrate_hand_eye(base_T_tcp: list[np.ndarray], camera_T_target: list[np.ndarray],
                       methods: tuple[str, ...] = METHODS, holdout_every: int = 4) -> HandEyeResult:
    """Solve with each method on the training poses; keep the one most consistent on the held-out poses."""
    check_pose_diversity(base_T_tcp)
    held = [k for k in range(len(base_T_tcp)) if k % holdout_every == holdout_every - 1]
    train = [k for k in range(len(base_T_tcp)) if k not in held]
    comparison: dict[str, dict[str, float | str]] = {}
    best: tuple[float, str] | None = None
    for method in methods:
        try:
            solution = _solve([base_T_tcp[k] for k in train], [camera_T_target[k] for k in train], method)
        except Exception as exc:  # cv2.error: a method can fail to converge on a given set of poses
            comparison[method] = {"failed": str(exc).strip().splitlines()[-1][:120]}
            continue
        reference = _mean_pose(_target_in_base([base_T_tcp[k] for k in train], [camera_T_target[k] for k in train],
                                               solution))
        predicted = _target_in_base([base_T_tcp[k] for k in held], [camera_T_target[k] for k in held], solution)
        rotation = max(rotation_angle_deg(p, reference) for p in predicted)
        translation = max(float(np.linalg.norm(p[:3, 3] - reference[:3, 3])) for p in predicted)
        comparison[method] = {"heldout_rotation_deg": round(rotation, 4),
                              "heldout_translation_mm": round(translation, 4)}
        score = translation + 10 * rotation
        if best is None or score < best[0]:
            best = (score, method)
    if best is None:
        raise CalibrationError("every hand-eye method failed on these poses: " + "; ".join(
            f"{m}: {r['failed']}" for m, r in comparison.items()))
    method = best[1]
    solution = _solve(base_T_tcp, camera_T_target, method)  # final fit on every pose
    target = _mean_pose(_target_in_base(base_T_tcp, camera_T_target, solution))
    return HandEyeResult(solution, method, target, comparison, len(base_T_tcp))
