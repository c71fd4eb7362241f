"""Dual-scan alignment: the part is scanned upright (A), turned over, and scanned again (B).

Scan B is brought onto scan A by point-to-plane ICP (numpy normal equations on scipy KD-tree
pairs) over shrinking correspondence distances, symmetric in the last steps, started from the flip
prior: the part was turned over on the bench, which is a 180° rotation about *some* horizontal axis
(a different placement yaw only changes which axis), so a fan of such axes is tried and the best
converged candidate wins. Global FPFH + RANSAC (open3d) is only a fallback, because it locks onto
symmetric wrong solutions when the overlap is thin. Every result must pass the quality gates
(overlap fitness, inlier RMSE) or nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mulsen.core.errors import DataFormatError, MulsenError
from mulsen.core.files import read_json
from mulsen.core.geometry import apply_transform, rotation_angle_deg, rotation_from_rotvec

from .meshio import smooth_vertex_normals, vertex_normals
from .records import Mesh

# How many points each stage works with: the flip candidates are screened cheaply, the two best are
# brought close on thinned copies, and only the last step, whose pairs set the accuracy, uses many.
SCREEN_POINTS = 1500
SCREEN_ITERATIONS = 12
COARSE_POINTS = 20000  # thinned copy of A for the coarse stages
MIDDLE_POINTS = 5000
FINE_POINTS = 20000
FINAL_POINTS = 50000  # the rotation's noise floor falls as 1/sqrt(pairs): 20000 left ~0.05° tails at 100k
NORMAL_SMOOTHING_ROUNDS = 3
NOISY_NORMAL_DEG = 5.0
FINAL_ITERATIONS = 20
FINAL_RADIUS = 1.5
QUALITY_RADIUS = 0.75  # pairs nearer than this many spacings count for fitness and RMSE


class AlignmentError(MulsenError):
    """The scans could not be aligned within the quality gates."""


@dataclass(frozen=True)
class AlignmentGates:
    # share of B's points with an A partner: a flip overlaps on the walls only, 0.3-0.8 for the simulated parts,
    # while a pose 20° off the real bunny pair still reached 0.065
    min_fitness: float = 0.1
    max_rmse_spacing: float = 0.5  # point-to-plane RMSE of the pairs, in units of the median point spacing
    min_overlap_points: int = 50
    # take the FPFH + RANSAC pose when it passes every gate but the flip check (a part that was not turned
    # over, or one whose up direction the normals cannot tell); off by default, offered in the refusal
    accept_fallback: bool = False


@dataclass(frozen=True)
class Candidate:
    """One starting pose that was finished, and whether it passed the gates."""

    candidate: str
    fitness: float
    inlier_rmse: float
    passed: bool
    failed: tuple[str, ...] = ()  # each gate it missed, with its numbers


@dataclass
class AlignmentResult:
    transform: np.ndarray  # 4x4, scan B coordinates -> scan A coordinates
    fitness: float
    rmse: float  # same length unit as the scans (mm)
    overlap_ratio: float
    spacing: float
    method: str
    candidates: list[Candidate] = field(default_factory=list)


def read_initial_transform(path: str | Path) -> np.ndarray:
    """A 4x4 rigid transform (B -> A, mm) from a JSON file: finite, an orthonormal rotation, last row 0 0 0 1."""
    data = read_json(path, "initial transform file")
    try:
        matrix = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataFormatError(path, "initial transform must be a 4x4 list of numbers") from None
    if matrix.shape != (4, 4):
        raise DataFormatError(path, f"initial transform must be a 4x4 matrix, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise DataFormatError(path, "initial transform has NaN or infinite entries")
    rotation = matrix[:3, :3]
    if not np.allclose(matrix[3], [0, 0, 0, 1], atol=1e-9) or not np.allclose(rotation @ rotation.T, np.eye(3),
                                                                                 atol=1e-4) \
            or np.linalg.det(rotation) < 0:
        raise DataFormatError(path, "initial transform is not rigid (rotation must be orthonormal with det +1, "
                                    "last row 0 0 0 1)")
    return matrix


def read_point_pairs(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(points in scan B, the same points in scan A) from ``{"a": [[x, y, z], ...], "b": [...]}``."""
    data = read_json(path, "point pairs file")
    if not isinstance(data, dict) or set(data) != {"a", "b"}:
        raise DataFormatError(path, 'point pairs must be {"a": [[x, y, z], ...], "b": [[x, y, z], ...]}')
    try:
        a, b = (np.asarray(data[k], dtype=np.float64) for k in ("a", "b"))
    except (TypeError, ValueError):
        raise DataFormatError(path, "point pairs must be lists of [x, y, z] numbers") from None
    if a.ndim != 2 or a.shape[1:] != (3,) or a.shape != b.shape or len(a) < 3:
        raise DataFormatError(path, f"point pairs need the same number (>= 3) of [x, y, z] points in a and b, "
                                    f"got shapes {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise DataFormatError(path, "point pairs have NaN or infinite coordinates")
    return b, a


def rigid_from_pairs(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares rigid transform (Kabsch) mapping ``source`` points onto ``target`` (>= 3 pairs)."""
    source, target = np.asarray(source, float), np.asarray(target, float)
    if len(source) < 3 or source.shape != target.shape:
        raise AlignmentError("need at least three point pairs of the same length")
    cs, ct = source.mean(0), target.mean(0)
    if np.linalg.matrix_rank(source - cs, tol=1e-9) < 2:
        raise AlignmentError("the point pairs are collinear: pick three points that span a triangle")
    u, _, vt = np.linalg.svd((source - cs).T @ (target - ct))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = ct - rotation @ cs
    return transform


def _cloud(points: np.ndarray, normals: np.ndarray | None = None):
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, float)))
    if normals is not None:
        cloud.normals = o3d.utility.Vector3dVector(np.asarray(normals, float))
    return cloud


def mesh_normals(mesh: Mesh) -> np.ndarray:
    """Vertex normals, smoothed (edges kept) where scanner noise visibly tilts them.

    A fine scan's own vertex normals tilt by about atan(noise / spacing) (18° for 0.03 mm noise at
    0.09 mm spacing): residuals along tilted normals pull the fit off by hundredths of a degree,
    and a tight normal-agreement test rejects good pairs. A coarse scan's normals are already
    true, and smoothing them would only blur its rims.
    """
    normals = vertex_normals(mesh.vertices, mesh.faces)
    smoothed = smooth_vertex_normals(normals, mesh.faces, NORMAL_SMOOTHING_ROUNDS, max_angle_deg=25.0)
    tilt = np.degrees(np.arccos(np.clip(np.median(np.einsum("ij,ij->i", normals, smoothed)), -1, 1)))
    return smoothed if tilt > NOISY_NORMAL_DEG else normals


def cloud_normals(points: np.ndarray, viewpoint: np.ndarray | None, neighbours: int = 20) -> np.ndarray:
    """Normals of a bare point cloud (PCA of the k nearest neighbours), turned towards the scanner, or, when
    the export does not say where the scanner was, away from the cloud's centroid (outward on a part)."""
    cloud = _cloud(points)
    import open3d as o3d

    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(neighbours))
    normals = np.asarray(cloud.normals)
    if viewpoint is None:
        flip = np.einsum("ij,ij->i", normals, points - points.mean(axis=0)) < 0
    else:
        flip = np.einsum("ij,ij->i", normals, np.asarray(viewpoint, float) - points) < 0
    normals[flip] *= -1
    return normals


def scan_normals(scan: Mesh, viewpoint: np.ndarray | None) -> np.ndarray:
    if len(scan.faces):
        return mesh_normals(scan)
    return cloud_normals(scan.vertices, viewpoint)


def median_spacing(points: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    sample = points[:: max(1, len(points) // 5000)]
    distances, _ = cKDTree(points).query(sample, k=2)
    return float(np.median(distances[:, 1]))


def viewing_direction(normals: np.ndarray) -> np.ndarray:
    """The direction a partial scan was seen from: its mean normal (walls cancel, the face seen dominates)."""
    mean = normals.mean(axis=0)
    norm = np.linalg.norm(mean)
    if norm < 1e-6:
        raise AlignmentError("cannot tell the scan's up direction (normals cancel out); give an initial transform")
    return mean / norm


def flip_candidates(a_points: np.ndarray, b_points: np.ndarray, up: np.ndarray, steps: int = 24
                    ) -> list[tuple[str, np.ndarray]]:
    """Initial transforms for B: a half turn about horizontal axes every 180/steps degrees, bbox centres matched."""
    helper = np.array([1.0, 0, 0]) if abs(up[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(up, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    centre_a = 0.5 * (a_points.min(0) + a_points.max(0))
    centre_b = 0.5 * (b_points.min(0) + b_points.max(0))
    out = []
    for k in range(steps):
        theta = np.pi * k / steps
        axis = np.cos(theta) * e1 + np.sin(theta) * e2
        rotation = 2 * np.outer(axis, axis) - np.eye(3)  # half turn about ``axis``
        transform = np.eye(4)
        transform[:3, :3] = rotation
        transform[:3, 3] = centre_a - rotation @ centre_b
        out.append((f"flip about {np.degrees(theta):.1f} deg", transform))
    return out


@dataclass
class _Target:
    """Scan A prepared for nearest-neighbour queries."""

    points: np.ndarray
    normals: np.ndarray
    tree: Any  # scipy.spatial.cKDTree

    @classmethod
    def of(cls, points: np.ndarray, normals: np.ndarray) -> _Target:
        from scipy.spatial import cKDTree

        return cls(points, normals, cKDTree(points))


def pairing(target: _Target, b_points: np.ndarray, b_normals: np.ndarray, transform: np.ndarray, threshold: float,
            min_normal_cos: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """B moved by ``transform``, which of its points pair with A (nearer than ``threshold``, normals agreeing),
    and the index of each one's nearest A point."""
    rotation = transform[:3, :3]
    moved = b_points @ rotation.T + transform[:3, 3]
    workers = -1 if len(moved) > 20000 else 1  # a thread pool costs more than it saves on small queries
    distance, index = target.tree.query(moved, distance_upper_bound=threshold, workers=workers)
    ok = distance < np.inf
    ok[ok] = np.einsum("ij,ij->i", b_normals[ok] @ rotation.T, target.normals[index[ok]]) > min_normal_cos
    return moved, ok, index


def icp(target: _Target, b_points: np.ndarray, b_normals: np.ndarray, initial: np.ndarray, threshold: float,
        iterations: int = 30, min_normal_cos: float = 0.5, symmetric: bool = False
        ) -> tuple[np.ndarray, float, float, int]:
    """Point-to-plane ICP of B onto A; pairs farther than ``threshold`` or whose normals disagree are ignored.
    Returns (transform, fitness, point-to-plane RMSE, pairs).

    The normal test is what keeps a thin part's flipped bottom from sliding onto the top surface it
    faces (the opposite side of the same plate): only the walls, seen from both sides, pair up.
    ``symmetric``: residuals run along the mean of both scans' normals (Rusinkiewicz's symmetric
    objective), not A's alone. After a flip only A saw the top rim and only B the bottom rim, so A's
    normals tilt at one rim only, and the one-sided objective pushes the part up or down its walls by
    a tenth of a mm. It is for the last, short-range steps: from far away the one-sided form
    converges more reliably.
    """
    transform = initial.copy()
    fitness, rmse, count = 0.0, np.inf, 0
    for _ in range(iterations):
        moved, ok, index = pairing(target, b_points, b_normals, transform, threshold, min_normal_cos)
        count = int(ok.sum())
        if count < 6:
            return transform, 0.0, np.inf, count
        p, q, n = moved[ok], target.points[index[ok]], target.normals[index[ok]]
        if symmetric:
            n = n + b_normals[ok] @ transform[:3, :3].T
            n /= np.linalg.norm(n, axis=1, keepdims=True)
        residual = np.einsum("ij,ij->i", p - q, n)
        fitness, rmse = count / len(b_points), float(np.sqrt(np.mean(residual ** 2)))
        jacobian = np.hstack([np.cross(p, n), n])
        rhs = -residual
        normal_matrix = jacobian.T @ jacobian
        try:
            step = np.linalg.solve(normal_matrix, jacobian.T @ rhs)
        except np.linalg.LinAlgError:  # degenerate pairs (e.g. one flat patch): least squares instead
            step = np.linalg.lstsq(jacobian, rhs, rcond=None)[0]
        update = np.eye(4)
        update[:3, :3] = rotation_from_rotvec(step[:3])
        update[:3, 3] = step[3:]
        transform = update @ transform
        if np.linalg.norm(step[:3]) < 1e-6 and np.linalg.norm(step[3:]) < 1e-4 * threshold:
            break
    return transform, fitness, rmse, count


def refine(target: _Target, b_points: np.ndarray, b_normals: np.ndarray, initial: np.ndarray, spacing: float,
           scales=(20.0, 8.0, 3.0, 1.5), max_points: int | None = None, iterations: int = 30):
    """ICP over shrinking correspondence distances (in units of the point spacing)."""
    if max_points and len(b_points) > max_points:
        pick = np.linspace(0, len(b_points) - 1, max_points).astype(int)
        b_points, b_normals = b_points[pick], b_normals[pick]
    transform, fitness, rmse, count = initial, 0.0, np.inf, 0
    for factor in scales:
        transform, fitness, rmse, count = icp(target, b_points, b_normals, transform, factor * spacing, iterations)
    return transform, fitness, rmse, count


def align_scans(scan_a: Mesh, scan_b: Mesh, gates: AlignmentGates | None = None, initial: np.ndarray | None = None,
                point_pairs: tuple[np.ndarray, np.ndarray] | None = None, steps: int = 12,
                allow_global: bool = True, viewpoints: tuple[np.ndarray | None, np.ndarray | None] | None = None
                ) -> AlignmentResult:
    """Align scan B onto scan A; raise AlignmentError when no result passes the gates.

    Meshes carry their own (outward) normals; bare point clouds orient estimated normals towards
    ``viewpoints`` (the scanner position of each scan, in its own frame), or outward where it is None.
    """
    gates = gates or AlignmentGates()
    # Work around A's centre: scanner frames lie metres from their origin, which ruins ICP's conditioning.
    origin = 0.5 * (scan_a.vertices.min(0) + scan_a.vertices.max(0))
    a_points, b_points = scan_a.vertices - origin, scan_b.vertices - origin
    if len(a_points) < gates.min_overlap_points or len(b_points) < gates.min_overlap_points:
        raise AlignmentError(f"scans too small to align ({len(a_points)} and {len(b_points)} points)")
    a_normals = scan_normals(scan_a, None if viewpoints is None else viewpoints[0])
    b_normals = scan_normals(scan_b, None if viewpoints is None else viewpoints[1])
    spacing = median_spacing(a_points)
    target = _Target.of(a_points, a_normals)
    shift, unshift = np.eye(4), np.eye(4)
    shift[:3, 3], unshift[:3, 3] = -origin, origin
    if point_pairs is not None:
        pairs_a, pairs_b = (np.asarray(p, float) for p in point_pairs)
        candidates = [("three point pairs", shift @ rigid_from_pairs(pairs_b, pairs_a) @ unshift)]
        method = "manual point pairs + ICP"
    elif initial is not None:
        candidates = [("manual initial transform", shift @ np.asarray(initial, float) @ unshift)]
        method = "manual initial transform + ICP"
    else:
        up = viewing_direction(a_normals)
        candidates = flip_candidates(a_points, b_points, up, steps)
        method = "flip prior + ICP"
    up_a, up_b = viewing_direction(a_normals), viewing_direction(b_normals)
    flip_required = point_pairs is None and initial is None

    def is_flip(transform: np.ndarray) -> bool:  # the turned-over part: B's up must point down in A
        return float(up_a @ transform[:3, :3] @ up_b) < -np.cos(np.radians(20)) or not flip_required

    # Coarse work on a thinned copy of A (about COARSE_POINTS), then full resolution for the last steps.
    stride = max(1, len(a_points) // COARSE_POINTS)
    coarse_target = _Target.of(a_points[::stride], a_normals[::stride]) if stride > 1 else target
    coarse_spacing = median_spacing(a_points[::stride]) if stride > 1 else spacing
    screened = []
    for name, transform in candidates:
        coarse, fitness, rmse, _ = refine(coarse_target, b_points, b_normals, transform, coarse_spacing,
                                          scales=(20.0, 8.0), max_points=SCREEN_POINTS, iterations=SCREEN_ITERATIONS)
        if is_flip(coarse):
            screened.append((fitness, -rmse, name, coarse))
    screened.sort(key=lambda item: (item[0], item[1]), reverse=True)
    report, best = [], None
    settled: list[np.ndarray] = []
    for _, _, name, coarse in screened[:2]:
        transform = refine(coarse_target, b_points, b_normals, coarse, coarse_spacing, scales=(3.0, 1.5),
                           max_points=MIDDLE_POINTS, iterations=20)[0]
        if any(_same_pose(transform, other, 3 * coarse_spacing) for other in settled):
            continue  # both candidates ran into the same basin: finishing it twice gives the same answer
        settled.append(transform)
        transform, fitness, rmse, pairs = _finish(target, b_points, b_normals, transform, spacing)
        failed = gate_failures(gates, fitness, rmse, pairs, spacing, is_flip(transform))
        passed = not failed
        report.append(Candidate(name, round(fitness, 5), round(rmse, 6), passed, failed))
        if passed and (best is None or (fitness, -rmse) > (best[1], -best[2])):
            best = (transform, fitness, rmse)
    if best is None and allow_global and point_pairs is None and initial is None:
        transform = _global_registration(_cloud(a_points, a_normals), b_points, b_normals, spacing)
        transform = refine(target, b_points, b_normals, transform, spacing, max_points=MIDDLE_POINTS)[0]
        transform, fitness, rmse, pairs = _finish(target, b_points, b_normals, transform, spacing)
        failed = gate_failures(gates, fitness, rmse, pairs, spacing, is_flip(transform))
        passed = not failed or (gates.accept_fallback and failed == (NOT_A_FLIP,))
        report.append(Candidate("FPFH + RANSAC", round(fitness, 5), round(rmse, 6), passed, failed))
        if passed:
            best = (transform, fitness, rmse)
            method = "FPFH + RANSAC fallback + ICP" + (" (accepted without the flip check)" if failed else "")
    if best is None:
        if not report:
            raise AlignmentError("no candidate turned the scan over (the flip prior failed); supply an initial "
                                 "transform or three point pairs")
        reasons = "; ".join(f"{r.candidate}: {', '.join(r.failed)}" for r in report)
        offer = " or accept the FPFH + RANSAC pose, which passed every other gate (--accept-fallback)" if any(
            r.candidate == "FPFH + RANSAC" and r.failed == (NOT_A_FLIP,) for r in report) else ""
        raise AlignmentError(f"no alignment passed the gates ({reasons}); supply an initial transform or three "
                             f"point pairs{offer}")
    transform, fitness, rmse = best
    overlap = _overlap_ratio(a_points, apply_transform(transform, b_points), 1.5 * spacing)
    return AlignmentResult(unshift @ transform @ shift, fitness, rmse, overlap, spacing, method, report)


def _finish(target: _Target, b_points: np.ndarray, b_normals: np.ndarray, transform: np.ndarray, spacing: float):
    """Full-resolution ICP on FINE_POINTS of B, then on FINAL_POINTS; returns (transform, fitness, RMSE, pairs)."""
    for count, iterations in ((FINE_POINTS, 15), (FINAL_POINTS, FINAL_ITERATIONS)):
        pick = np.linspace(0, len(b_points) - 1, min(count, len(b_points))).astype(int)
        transform = icp(target, b_points[pick], b_normals[pick], transform, FINAL_RADIUS * spacing, iterations,
                        symmetric=True)[0]
    return (transform, *fit_quality(target, b_points[pick], b_normals[pick], transform, QUALITY_RADIUS * spacing))


def fit_quality(target: _Target, b_points: np.ndarray, b_normals: np.ndarray, transform: np.ndarray,
                threshold: float) -> tuple[float, float, int]:
    """(fitness, point-to-plane RMSE, pairs) of B placed by ``transform``: what the gates judge."""
    moved, ok, index = pairing(target, b_points, b_normals, transform, threshold)
    count = int(ok.sum())
    if count == 0:
        return 0.0, np.inf, 0
    residual = np.einsum("ij,ij->i", moved[ok] - target.points[index[ok]], target.normals[index[ok]])
    return count / len(b_points), float(np.sqrt(np.mean(residual ** 2))), count


def _same_pose(first: np.ndarray, second: np.ndarray, tolerance: float) -> bool:
    """Whether two transforms of B agree to a degree and ``tolerance`` (at the working origin)."""
    return bool(rotation_angle_deg(first, second) < 1.0 and np.linalg.norm(first[:3, 3] - second[:3, 3]) < tolerance)


NOT_A_FLIP = "not turned over (B's top does not face down in A, within 20 deg)"


def gate_failures(gates: AlignmentGates, fitness: float, rmse: float, pairs: int, spacing: float,
                  flipped: bool = True) -> tuple[str, ...]:
    """Each gate a finished pose misses, with its numbers (empty: it passes). Lengths are in the scans' unit."""
    failed = []
    if pairs == 0:
        return ("no point of B lies near A",) + (() if flipped else (NOT_A_FLIP,))
    if fitness < gates.min_fitness:
        failed.append(f"overlap fitness {fitness:.3f} < {gates.min_fitness:g}")
    if not rmse <= gates.max_rmse_spacing * spacing:
        failed.append(f"inlier RMSE {rmse:.3g} > {gates.max_rmse_spacing:g} x point spacing {spacing:.3g}")
    if pairs < gates.min_overlap_points:
        failed.append(f"{pairs} paired points < {gates.min_overlap_points}")
    if not flipped:
        failed.append(NOT_A_FLIP)
    return tuple(failed)


def _overlap_ratio(a_points: np.ndarray, b_aligned: np.ndarray, radius: float) -> float:
    """Share of all points (A and B) that have a partner in the other scan within ``radius``."""
    from scipy.spatial import cKDTree

    near_b = cKDTree(a_points).query(b_aligned, distance_upper_bound=radius)[0] < np.inf
    near_a = cKDTree(b_aligned).query(a_points, distance_upper_bound=radius)[0] < np.inf
    return float((near_a.sum() + near_b.sum()) / (len(a_points) + len(b_aligned)))


def _global_registration(a_cloud, b_points: np.ndarray, b_normals: np.ndarray, spacing: float) -> np.ndarray:
    import open3d as o3d

    reg = o3d.pipelines.registration
    voxel = 4 * spacing
    clouds = []
    for cloud in (a_cloud, _cloud(b_points, b_normals)):
        down = cloud.voxel_down_sample(voxel)
        feature = reg.compute_fpfh_feature(down, o3d.geometry.KDTreeSearchParamHybrid(radius=5 * voxel, max_nn=100))
        clouds.append((down, feature))
    (a_down, a_feature), (b_down, b_feature) = clouds
    result = reg.registration_ransac_based_on_feature_matching(
        b_down, a_down, b_feature, a_feature, True, 1.5 * voxel, reg.TransformationEstimationPointToPoint(False), 3,
        [reg.CorrespondenceCheckerBasedOnDistance(1.5 * voxel)], reg.RANSACConvergenceCriteria(100000, 0.999))
    return np.asarray(result.transformation)


def merge_scans(scan_a: Mesh, scan_b: Mesh, transform: np.ndarray, duplicate_radius: float) -> Mesh:
    """Scan A plus the faces of aligned scan B that A does not already cover; unused points dropped. Point
    clouds (no faces): A plus B's points farther than ``duplicate_radius`` from A."""
    from scipy.spatial import cKDTree

    b_points = apply_transform(transform, scan_b.vertices)
    covered = cKDTree(scan_a.vertices).query(b_points, distance_upper_bound=duplicate_radius)[0] < np.inf
    if not len(scan_a.faces) or not len(scan_b.faces):
        return Mesh(np.concatenate([scan_a.vertices, b_points[~covered]]), np.zeros((0, 3), np.int64))
    keep_faces = scan_b.faces[~covered[scan_b.faces].all(axis=1)]
    used = np.unique(keep_faces)
    remap = -np.ones(len(b_points), np.int64)
    remap[used] = np.arange(len(used)) + len(scan_a.vertices)
    vertices = np.concatenate([scan_a.vertices, b_points[used]])
    faces = np.concatenate([scan_a.faces, remap[keep_faces]])
    return Mesh(vertices, faces)
