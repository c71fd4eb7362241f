"""Laser-scanner renderer: the part's surface mesh in the scanner frame, full or as a partial scan.

The mesh is built from the height field: a top grid inside the footprint, a flat bottom and the
side walls joining their boundaries. Vertices are in scanner millimetres, uncentred (the scanner
looks down from about 2 m), like the MulSen-AD STL files.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from mulsen.dataset.meshio import vertex_normals
from mulsen.dataset.records import Mesh

from .scene import Scene

# scanner frame: x along the bench, y and z flipped (the scanner looks down), origin ~2.09 m above
SCANNER_ROTATION = np.diag([1.0, -1.0, -1.0])
SCANNER_OFFSET_MM = np.array([-340.0, 5.0, 2090.0])
SCAN_NOISE_MM = 0.03


@dataclass
class PartMesh:
    """A mesh in the part frame with per-vertex bookkeeping for ground truth and partial scans."""

    vertices: np.ndarray  # (N, 3) part frame, z up from the bench
    faces: np.ndarray
    is_top: np.ndarray  # (N,) vertex belongs to the top (defect-bearing) surface
    pc_region: np.ndarray  # (N,) exact geometric-defect region (top vertices only)


def grid_spacing_for(scene: Scene, target_top_vertices: int) -> float:
    r = scene.part.half_extent_mm
    xs = np.linspace(-r, r, 200)
    uu, vv = np.meshgrid(xs, xs)
    area = scene.part.inside(uu, vv).mean() * (2 * r) ** 2
    return float(np.sqrt(area / target_top_vertices))


def part_mesh(scene: Scene, spacing_mm: float, wall_rows: int = 1) -> PartMesh:
    """Closed surface mesh of the part (with geometric defects) on a regular grid.

    ``wall_rows`` > 1 samples the side walls with that many rows of faces (a scanner sees walls as
    densely as the rest; the dataset generator and the scanner simulator both scan it that way).
    """
    r = scene.part.half_extent_mm + spacing_mm
    axis = np.arange(-r, r + spacing_mm, spacing_mm)
    uu, vv = np.meshgrid(axis, axis)
    inside = scene.part.inside(uu, vv)
    _rows, _cols = uu.shape
    quad = inside[:-1, :-1] & inside[1:, :-1] & inside[:-1, 1:] & inside[1:, 1:]
    used = np.zeros_like(inside)
    used[:-1, :-1] |= quad
    used[1:, :-1] |= quad
    used[:-1, 1:] |= quad
    used[1:, 1:] |= quad
    index = -np.ones(uu.shape, dtype=np.int64)
    index[used] = np.arange(used.sum())
    n_top = int(used.sum())
    tu, tv = uu[used], vv[used]
    top = np.stack([tu, tv, scene.height(tu, tv)], axis=1)
    bottom = np.stack([tu, tv, np.zeros(n_top)], axis=1)
    qi, qj = np.nonzero(quad)
    a, b = index[qi, qj], index[qi, qj + 1]
    c, d = index[qi + 1, qj], index[qi + 1, qj + 1]
    top_faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    bottom_faces = top_faces[:, ::-1] + n_top
    # boundary edges of the top surface (used by exactly one triangle) become walls
    edges = np.concatenate([top_faces[:, [0, 1]], top_faces[:, [1, 2]], top_faces[:, [2, 0]]])
    key = np.sort(edges, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    boundary = edges[counts[inverse.ravel()] == 1]
    p, q = boundary[:, 0], boundary[:, 1]
    ring = np.unique(boundary)
    # rows of wall vertices between each top-ring vertex (row 0) and the bottom vertex below it (last row)
    levels = [np.arange(len(top))]
    extra = []
    for k in range(1, wall_rows):
        at = np.full(len(top), -1, np.int64)
        at[ring] = n_top * 2 + (k - 1) * len(ring) + np.arange(len(ring))
        levels.append(at)
        extra.append(top[ring] * [1.0, 1.0, 1.0 - k / wall_rows])
    levels.append(np.arange(len(top)) + n_top)
    walls = np.concatenate([np.concatenate([np.stack([hi[q], hi[p], lo[p]], 1), np.stack([hi[q], lo[p], lo[q]], 1)])
                            for hi, lo in itertools.pairwise(levels)])
    vertices = np.concatenate([top, bottom, *extra])
    faces = np.concatenate([top_faces, bottom_faces, walls])
    is_top = np.zeros(len(vertices), bool)
    is_top[:n_top] = True
    region = np.zeros(len(vertices), bool)
    region[:n_top] = scene.region(tu, tv, "pointcloud")
    return PartMesh(vertices, faces, is_top, region)


def to_scanner_frame(scene: Scene, points_part: np.ndarray, flipped: bool = False, height_mm: float | None = None,
                     placement: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Part frame -> bench frame (pose; optionally flipped upside down) -> scanner frame.

    ``flipped``: turned over about the part's x axis, resting on what was its top (``height_mm``, by
    default the points' highest z). ``placement`` (dx mm, dy mm, dyaw rad) is where the operator put the
    part back down relative to its first pose.
    """
    pts = np.asarray(points_part, float).copy()
    if flipped:
        top = pts[:, 2].max() if height_mm is None else height_mm
        pts[:, 1] = -pts[:, 1]
        pts[:, 2] = top - pts[:, 2]
    x, y = scene.part_to_world(pts[:, 0], pts[:, 1])
    dx, dy, dyaw = placement
    if dx or dy or dyaw:
        cx, cy = scene.part.pose_xy_mm
        c, s = np.cos(dyaw), np.sin(dyaw)
        x, y = c * (x - cx) - s * (y - cy) + cx + dx, s * (x - cx) + c * (y - cy) + cy + dy
    bench = np.stack([x, y, pts[:, 2]], axis=1)
    return bench @ SCANNER_ROTATION.T + SCANNER_OFFSET_MM


def flip_transform(scene: Scene, height_mm: float, placement: tuple[float, float, float] = (0.0, 0.0, 0.0)
                   ) -> np.ndarray:
    """The exact 4x4 transform taking scan B (flipped, re-placed) coordinates onto scan A's."""
    from mulsen.dataset.align import rigid_from_pairs

    probe = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10], [5, -7, 3]], float)
    upright = to_scanner_frame(scene, probe)
    flipped = to_scanner_frame(scene, probe, flipped=True, height_mm=height_mm, placement=placement)
    return rigid_from_pairs(flipped, upright)


def scan_mesh(scene: Scene, mesh: PartMesh, rng: np.random.Generator, noise_mm: float = SCAN_NOISE_MM) -> Mesh:
    """The whole part (both scans merged) in the scanner frame with scanner noise along the normals."""
    normals = vertex_normals(mesh.vertices, mesh.faces)
    noisy = mesh.vertices + normals * rng.normal(0, noise_mm, (len(mesh.vertices), 1))
    return Mesh(to_scanner_frame(scene, noisy), mesh.faces)


def resample_on_surface(vertices: np.ndarray, faces: np.ndarray, face_normals: np.ndarray, normals: np.ndarray,
                        rng: np.random.Generator, jitter: float) -> np.ndarray:
    """Vertices moved within their tangent plane by up to ``jitter`` edge lengths (creases stay put).

    Two passes of a real scanner never sample the same surface points; without this the two scans
    of the simulated part would share exact vertex positions, a coincidence that rewards matching
    points rather than surfaces. ``face_normals`` and ``normals`` (per vertex) are unit vectors.
    """
    crease = np.zeros(len(vertices), bool)
    for k in range(3):  # a vertex whose faces bend by more than ~10° is on an edge or rim
        crease[faces[:, k][np.einsum("ij,ij->i", face_normals, normals[faces[:, k]]) < np.cos(np.radians(10))]] = True
    edge = float(np.median(np.linalg.norm(vertices[faces[:, 1]] - vertices[faces[:, 0]], axis=1)))
    offset = rng.uniform(-jitter * edge, jitter * edge, vertices.shape)
    offset -= normals * np.einsum("ij,ij->i", offset, normals)[:, None]
    offset[crease] = 0
    return vertices + offset


def partial_scan(scene: Scene, mesh: PartMesh, rng: np.random.Generator, flipped: bool = False,
                 cone_cos: float = -0.6, noise_mm: float = SCAN_NOISE_MM,
                 placement: tuple[float, float, float] = (0.0, 0.0, 0.0), jitter: float = 0.15) -> Mesh:
    """What one hand-held pass sees: faces whose normal points within the scanner's cone of views.

    A hand-held scanner swept around the part sees every face except those turned towards the bench
    (normal more than ~127° from the view). Scan A (part upright) sees the top, rims and walls; scan B
    (part flipped, then put back at ``placement``) the bottom, rims and walls: they overlap on the walls
    and rims only, as in the real dual-scan procedure. Each pass samples its own surface points
    (``jitter``, see ``resample_on_surface``). The flip pivots on the mesh's full height, so
    ``flip_transform`` is exact.
    """
    tri = mesh.vertices[mesh.faces]
    face_normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    face_normal /= np.linalg.norm(face_normal, axis=1, keepdims=True)
    keep = face_normal[:, 2] * (-1 if flipped else 1) > cone_cos
    faces = mesh.faces[keep]
    normals = vertex_normals(mesh.vertices, mesh.faces)
    used = np.unique(faces)
    remap = -np.ones(len(mesh.vertices), np.int64)
    remap[used] = np.arange(len(used))
    sampled = mesh.vertices
    if jitter:
        sampled = resample_on_surface(mesh.vertices, mesh.faces, face_normal, normals, rng, jitter)
    noisy = sampled[used] + normals[used] * rng.normal(0, noise_mm, (len(used), 1))
    height = float(mesh.vertices[:, 2].max())
    return Mesh(to_scanner_frame(scene, noisy, flipped, height, placement), remap[faces])
