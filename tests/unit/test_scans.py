"""Scanner export import (every format, real fixtures) and the export-folder watcher."""

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mulsen.acquisition.export_watch import ExportWatcher
from mulsen.core.errors import DataFormatError, MulsenError
from mulsen.dataset.scans import WRITE_FORMATS, read_scan, sniff_delimiter, write_scan
from mulsen.hardware_mocks.scanner_sim import EXTENSIONS, export, scan_pair
from mulsen.hardware_mocks.sim_cameras import BenchPart
from tests.conftest import REAL_FIXTURES

MESHES = REAL_FIXTURES / "mesh"
BUNNY = REAL_FIXTURES / "pointcloud"
PRECISION_MM = {"stl": 2e-4, "stl_ascii": 2e-4, "ply": 0.0, "ply_ascii": 1e-6, "obj": 1e-6, "xyz": 1e-6,
                "csv": 1e-6}


@pytest.fixture(scope="module")
def scan_a():
    return scan_pair(BenchPart("capsule", 4, "bent"), "small")[0]


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_every_format_round_trips_within_its_precision(tmp_path: Path, scan_a, fmt):
    path = tmp_path / f"scan{EXTENSIONS[fmt]}"
    faces = None if fmt in ("xyz", "csv") else scan_a.faces
    write_scan(path, scan_a.vertices, faces, fmt)
    scan = read_scan(path)
    assert scan.vertices.dtype == np.float64
    if fmt.startswith("stl"):
        # STL stores triangle corners: compare the triangles, whatever the vertex numbering
        expected = np.sort(scan_a.vertices[scan_a.faces].reshape(-1, 9), axis=0)
        got = np.sort(scan.vertices[scan.faces].reshape(-1, 9), axis=0)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=PRECISION_MM[fmt], rtol=0)
    else:
        np.testing.assert_allclose(scan.vertices, scan_a.vertices, atol=PRECISION_MM[fmt], rtol=0)
        if faces is not None:
            np.testing.assert_array_equal(scan.faces, scan_a.faces)
        else:
            assert scan.faces is None


def test_ascii_points_with_any_delimiter_header_and_normals(tmp_path: Path):
    points = np.array([[1.5, -2.25, 3.0, 0, 0, 1], [4.0, 5.0, -6.125, 0, 1, 0], [7, 8, 9, 1, 0, 0]])
    for name, delimiter in (("a.asc", ";"), ("b.txt", "\t"), ("c.csv", ","), ("d.xyz", "  ")):
        lines = ["# VXelements export", "X;Y;Z;NX;NY;NZ"] + [delimiter.join(f"{v:g}" for v in row) for row in points]
        (tmp_path / name).write_text("\r\n".join(lines) + "\r\n")
        scan = read_scan(tmp_path / name)
        np.testing.assert_allclose(scan.vertices, points[:, :3])
        np.testing.assert_allclose(scan.normals, points[:, 3:])
    assert sniff_delimiter(["1,2,3", "4,5,6"]) == "," and sniff_delimiter(["1 2 3"]) is None


def test_broken_exports_are_refused_with_the_reason(tmp_path: Path):
    cases = {
        "empty.xyz": (b"", "no points"),
        "header_only.asc": (b"x y z\n", "no points"),
        "two_columns.txt": (b"1 2\n3 4\n", "at least 3 columns"),
        "text.xyz": (b"1 2 3\n4 five 6\n", "non-numeric"),
        "truncated.ply": (b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\n"
                          b"property float y\nproperty float z\nend_header\n" + b"\0" * 20, "truncated"),
        "nomagic.ply": (b"hello", "not a PLY"),
        "bad.obj": (b"v 1 2 3\nv 1 x 3\n", "line 2"),
        "badface.obj": (b"v 1 2 3\nv 1 2 4\nv 2 2 3\nf 1 2 9\n", "no usable face"),
        "scan.e57": (b"x", "unsupported scan format"),
    }
    for name, (content, problem) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataFormatError, match=problem) as info:
            read_scan(path)
        assert name in str(info.value)
    with pytest.raises(DataFormatError, match="scan file not found"):
        read_scan(tmp_path / "missing.stl")
    os.mkfifo(tmp_path / "fifo.xyz")  # opening it would block until a writer came
    with pytest.raises(DataFormatError, match=r"fifo\.xyz: scan file is a FIFO; refused without opening it"):
        read_scan(tmp_path / "fifo.xyz")


@pytest.mark.skipif(not MESHES.exists(), reason="shared real fixtures absent")
def test_real_empty_and_corrupt_files_are_rejected_and_real_meshes_load():
    for name in ("stl_empty_ascii.stl", "stl_empty_bin.stl", "ply_empty_ascii.ply", "ply_empty_bin.ply",
                 "ply_empty_header.ply"):
        with pytest.raises(DataFormatError):
            read_scan(MESHES / "trimesh_models" / "emptyIO" / name)
    ascii_points = read_scan(MESHES / "trimesh_models" / "emptyIO" / "ply_points_ascii.ply")
    binary_points = read_scan(MESHES / "trimesh_models" / "emptyIO" / "ply_points_bin.ply")  # + normals
    assert ascii_points.vertices.shape == (8, 3) and ascii_points.faces is None and ascii_points.normals is None
    assert binary_points.faces is None and binary_points.normals.shape == (8, 3)
    np.testing.assert_allclose(np.abs(ascii_points.vertices), 1.0)
    assert read_scan(MESHES / "trimesh_models" / "unit_sphere.STL").vertices.shape == (642, 3)
    ascii_donut = read_scan(MESHES / "numpy_stl" / "stl_ascii" / "HalfDonut.stl")
    binary_donut = read_scan(MESHES / "numpy_stl" / "stl_binary" / "HalfDonut.stl")  # one trailing byte
    np.testing.assert_allclose(ascii_donut.vertices, binary_donut.vertices, atol=1e-5)


@pytest.mark.skipif(not BUNNY.exists(), reason="shared real fixtures absent")
def test_real_range_scans_with_extra_elements_and_properties_load():
    raw = read_scan(BUNNY / "stanford_bunny_raw_scans" / "bun000.ply")  # + a 204800-row range_grid list element
    assert raw.vertices.shape == (40256, 3) and raw.faces is None
    zipper = read_scan(BUNNY / "stanford_bunny_reconstruction" / "bun_zipper.ply")  # + confidence, intensity
    assert zipper.vertices.shape == (35947, 3) and zipper.faces.shape == (69451, 3)
    np.testing.assert_allclose(zipper.vertices[0], [-0.0378297, 0.12794, 0.00447467], rtol=1e-6)


@pytest.mark.parametrize("mode", ["direct", "rename"])
def test_watcher_waits_until_each_export_is_completely_written(tmp_path: Path, scan_a, mode):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "old_scan.stl").write_bytes(b"ignored: there before the watch started")
    watcher = ExportWatcher(folder, settle_s=0.3, poll_s=0.02)
    writer = threading.Thread(target=lambda: [export(scan_a, folder / f"scan_{k}.ply", "ply_ascii", 0.8, mode)
                                              for k in (1, 2)])
    t0 = time.monotonic()
    writer.start()
    found = watcher.wait_for(2, timeout_s=20)
    writer.join()
    assert [f.path.name for f in found] == ["scan_1.ply", "scan_2.ply"]
    assert all(len(f.scan.vertices) == len(scan_a.vertices) for f in found)  # never a half-written file
    assert time.monotonic() - t0 >= 1.6


def test_watcher_times_out_and_reports_a_broken_export(tmp_path: Path):
    watcher = ExportWatcher(tmp_path, settle_s=0.05, poll_s=0.02)
    with pytest.raises(MulsenError, match=r"0 of 2 scans appeared within 0.2 s"):
        watcher.wait_for(2, timeout_s=0.2)
    (tmp_path / "broken.stl").write_bytes(b"solid x\nfacet normal 0 0 1\n")
    with pytest.raises(DataFormatError, match=r"broken.stl"):
        watcher.wait_for(1, timeout_s=5)
    with pytest.raises(MulsenError, match="does not exist"):
        ExportWatcher(tmp_path / "nowhere")
