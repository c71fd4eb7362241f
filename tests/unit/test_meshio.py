from pathlib import Path

import numpy as np
import pytest

from mulsen.core.errors import DataFormatError
from mulsen.dataset.meshio import dedup_vertices, read_stl, stable_mesh, write_stl
from tests.conftest import REAL_FIXTURES, grid_mesh

MESH_DIR = REAL_FIXTURES / "mesh"
needs_real = pytest.mark.skipif(not MESH_DIR.is_dir(), reason="shared/fixtures/real/mesh not present")


def test_dedup_keeps_first_occurrence_order():
    corners = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 0], [2, 2, 2], [-0.0, 0, 0]], dtype=np.float32)
    vertices, index = dedup_vertices(corners)
    assert vertices.tolist() == [[1, 0, 0], [0, 0, 0], [2, 2, 2]]
    assert index.tolist() == [0, 1, 0, 2, 1]  # -0.0 equals 0.0


def test_write_read_round_trip_is_dedup_stable(tmp_path: Path):
    mesh = stable_mesh(grid_mesh())
    write_stl(tmp_path / "m.stl", mesh)
    back = read_stl(tmp_path / "m.stl")
    assert np.array_equal(back.vertices, mesh.vertices)
    assert np.array_equal(back.faces, mesh.faces)
    with pytest.raises(FileExistsError):
        write_stl(tmp_path / "m.stl", mesh)


def test_truncated_binary_stl_is_a_clear_error(tmp_path: Path):
    write_stl(tmp_path / "m.stl", stable_mesh(grid_mesh()))
    data = (tmp_path / "m.stl").read_bytes()
    (tmp_path / "cut.stl").write_bytes(data[:-120])
    with pytest.raises(DataFormatError, match=r"cut.stl: truncated or corrupt binary STL"):
        read_stl(tmp_path / "cut.stl")
    (tmp_path / "empty.stl").write_bytes(b"")
    with pytest.raises(DataFormatError, match="empty file"):
        read_stl(tmp_path / "empty.stl")


@needs_real
def test_binary_header_starting_with_solid_is_read_as_binary():
    mesh = read_stl(MESH_DIR / "trimesh_models" / "plate_holes.STL")
    assert mesh.faces.shape == (1252, 3)
    extent = mesh.vertices.max(0) - mesh.vertices.min(0)
    assert np.allclose(sorted(extent), sorted([203.2, 304.8, 12.7]), atol=1e-3)
    rear = read_stl(MESH_DIR / "numpy_stl" / "stl_binary" / "rear_case.stl")
    assert rear.faces.shape == (18808, 3)


@needs_real
def test_ascii_and_binary_twins_agree_and_trailing_byte_is_tolerated():
    ascii_mesh = read_stl(MESH_DIR / "numpy_stl" / "stl_ascii" / "HalfDonut.stl")
    binary_mesh = read_stl(MESH_DIR / "numpy_stl" / "stl_binary" / "HalfDonut.stl")  # one trailing byte
    assert ascii_mesh.faces.shape == binary_mesh.faces.shape == (288, 3)
    a = np.sort(ascii_mesh.vertices.view("f8,f8,f8").ravel())
    b = np.sort(binary_mesh.vertices.view("f8,f8,f8").ravel())
    assert len(a) == len(b)
    assert np.allclose(a.view(np.float64), b.view(np.float64), atol=1e-5)


@needs_real
@pytest.mark.parametrize("name", ["stl_empty_ascii.stl", "stl_empty_bin.stl"])
def test_empty_real_stl_files_are_rejected(name: str):
    with pytest.raises(DataFormatError, match="no triangles"):
        read_stl(MESH_DIR / "trimesh_models" / "emptyIO" / name)


@needs_real
def test_matches_open3d_vertex_order_on_real_binary_meshes():
    o3d = pytest.importorskip("open3d")
    paths = [MESH_DIR / "trimesh_models" / "unit_sphere.STL", MESH_DIR / "numpy_stl" / "stl_binary" / "rear_case.stl",
             MESH_DIR / "trimesh_models" / "20mm-xyz-cube.stl"]
    for path in paths:
        ours = read_stl(path)
        ref = o3d.io.read_triangle_mesh(str(path))
        ref.remove_duplicated_vertices()
        assert np.array_equal(ours.vertices, np.asarray(ref.vertices)), path
        assert np.array_equal(ours.faces, np.asarray(ref.triangles)), path


def test_dedup_folds_signed_zeros_and_keeps_first_occurrence_order():
    rng = np.random.default_rng(3)
    vertices = rng.normal(size=(500, 3)).astype(np.float32)
    corners = vertices[rng.integers(0, 500, 3000)]
    corners[::7] = -0.0  # -0.0 and 0.0 are one vertex
    corners[::11] = 0.0
    unique, index = dedup_vertices(corners)
    np.testing.assert_array_equal(unique[index], corners + 0.0)
    assert [tuple(v) for v in unique] == list(dict.fromkeys(tuple(v) for v in (corners + 0.0)))


@pytest.mark.parametrize("path", ["open3d", "sort"])
def test_both_dedup_paths_agree_on_a_large_scan_with_signed_zeros(path, monkeypatch):
    """Large meshes go through open3d's hash map when it is installed, small ones (and any without open3d)
    through the sort: the same vertices in the same first-occurrence order either way."""
    from mulsen.dataset import meshio

    rng = np.random.default_rng(5)
    vertices = rng.normal(size=(20000, 3)).astype(np.float32)
    corners = vertices[rng.integers(0, 20000, 3 * 40000)]
    corners[::13, 0] = -0.0
    corners[::17, 0] = 0.0
    assert len(corners) >= meshio.OPEN3D_DEDUP_MIN
    if path == "open3d":
        pytest.importorskip("open3d")
        assert meshio._open3d_dedup(corners + 0.0) is not None
    else:
        monkeypatch.setattr(meshio, "_open3d_dedup", lambda corners: None)
    unique, index = dedup_vertices(corners)
    assert unique.dtype == np.float32 and index.dtype == np.int64
    np.testing.assert_array_equal(unique[index], corners + 0.0)
    assert [tuple(v) for v in unique] == list(dict.fromkeys(tuple(v) for v in (corners + 0.0)))


def test_face_products_and_smoothed_normals_equal_their_plain_definitions():
    """face_cross (per coordinate) is np.cross of the edges; the sparse smoothing is the plain loop: each
    round, every vertex adds the unit mean normal of each face it belongs to (duplicated corners included)."""
    from mulsen.dataset.meshio import face_cross, smooth_vertex_normals, vertex_normals

    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(60, 3))
    faces = rng.integers(0, 60, (150, 3))
    faces[0] = (4, 4, 7)  # a degenerate face: a vertex twice
    tri = vertices[faces]
    assert np.array_equal(face_cross(vertices, faces), np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    normals = vertex_normals(vertices, faces)
    expected = normals.copy()
    for _ in range(3):
        face_mean = expected[faces].sum(axis=1)
        face_mean /= np.linalg.norm(face_mean, axis=1, keepdims=True)
        summed = expected.copy()
        np.add.at(summed, faces.ravel(), np.repeat(face_mean, 3, axis=0))
        length = np.linalg.norm(summed, axis=1, keepdims=True)
        expected = summed / np.where(length > 0, length, 1)
    assert np.allclose(smooth_vertex_normals(normals, faces, 3), expected, atol=1e-12)
