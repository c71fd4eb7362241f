"""Every export a lab meets: PCD (ascii, binary, binary_compressed, organised), PTS with count lines, point
lists with colour/intensity columns, OBJ continuations and bad faces; each against an independent reader
(open3d) or hand-written values."""

from __future__ import annotations

from pathlib import Path

import lzf
import numpy as np
import pytest

from mulsen.acquisition.export_watch import ExportWatcher
from mulsen.core.errors import DataFormatError, MulsenError
from mulsen.dataset.scans import SCAN_SUFFIXES, read_scan
from tests.conftest import REAL_FIXTURES

PCL = REAL_FIXTURES / "pointcloud" / "pcl_pcd"
RNG = np.random.default_rng(7)
POINTS = RNG.normal(0, 30, (50, 3)).astype(np.float32)
NORMALS = (lambda n: (n / np.linalg.norm(n, axis=1, keepdims=True)).astype(np.float32))(RNG.normal(size=(50, 3)))
COLOURS = RNG.integers(0, 256, (50, 3)).astype(np.uint8)
INTENSITY = RNG.uniform(0, 1, 50).astype(np.float32)


def _pcd(mode: str, width: int = 50, height: int = 1, nan_rows: tuple[int, ...] = (),
         viewpoint: str = "0 0 0 1 0 0 0") -> bytes:
    """A PCL-layout file: x y z rgb(float-packed) normal_x.. intensity, the way pcl::io::savePCDFile writes it."""
    pts = POINTS.copy()
    pts[list(nan_rows)] = np.nan
    packed = ((COLOURS[:, 0].astype(np.uint32) << 16) | (COLOURS[:, 1].astype(np.uint32) << 8)
              | COLOURS[:, 2]).view(np.float32)
    columns = [pts[:, 0], pts[:, 1], pts[:, 2], packed, NORMALS[:, 0], NORMALS[:, 1], NORMALS[:, 2], INTENSITY]
    header = ("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
              "FIELDS x y z rgb normal_x normal_y normal_z intensity\nSIZE 4 4 4 4 4 4 4 4\n"
              "TYPE F F F F F F F F\nCOUNT 1 1 1 1 1 1 1 1\n"
              f"WIDTH {width}\nHEIGHT {height}\nVIEWPOINT {viewpoint}\nPOINTS {width * height}\nDATA {mode}\n").encode()
    table = np.stack(columns, axis=1).astype("<f4")
    if mode == "ascii":  # shortest text that gives back each float32 exactly (the packed colour included)
        lines = []
        for row in table:
            lines.append(" ".join(np.format_float_positional(v, unique=True) if np.isfinite(v) else "nan"
                                  for v in row))
        body = ("\n".join(lines) + "\n").encode()
    elif mode == "binary":
        body = table.tobytes()
    else:
        raw = np.ascontiguousarray(table.T).tobytes()  # field after field
        packed_body = lzf.compress(raw, len(raw) + len(raw) // 16 + 64)  # random floats do not shrink
        body = np.array([len(packed_body), len(raw)], "<u4").tobytes() + packed_body
    return header + body


@pytest.mark.parametrize("mode", ["ascii", "binary", "binary_compressed"])
def test_pcd_every_data_mode_reads_points_normals_colours_intensity_and_viewpoint(tmp_path: Path, mode):
    path = tmp_path / f"cloud_{mode}.pcd"
    path.write_bytes(_pcd(mode, viewpoint="10 -20 300 1 0 0 0"))
    scan = read_scan(path)
    assert scan.format == f"pcd ({mode})" and scan.faces is None and not scan.notes
    np.testing.assert_array_equal(scan.vertices, POINTS.astype(np.float64))
    np.testing.assert_array_equal(scan.normals, NORMALS.astype(np.float64))
    np.testing.assert_array_equal(scan.colors, COLOURS)
    np.testing.assert_array_equal(scan.intensity, INTENSITY.astype(np.float64))
    np.testing.assert_array_equal(scan.viewpoint, [10, -20, 300])


def test_pcd_organised_cloud_drops_points_without_a_return_and_says_so(tmp_path: Path):
    path = tmp_path / "organised.pcd"
    path.write_bytes(_pcd("binary_compressed", width=10, height=5, nan_rows=(0, 7, 49)))
    scan = read_scan(path)
    keep = np.setdiff1d(np.arange(50), [0, 7, 49])
    np.testing.assert_array_equal(scan.vertices, POINTS[keep].astype(np.float64))
    np.testing.assert_array_equal(scan.colors, COLOURS[keep])
    assert scan.format == "pcd (binary_compressed, 10x5 organised)"
    assert scan.notes == ["dropped 3 of 50 points without a return (NaN)"]


def test_pcd_agrees_with_open3d(tmp_path: Path):
    o3d = pytest.importorskip("open3d")
    for mode in ("ascii", "binary", "binary_compressed"):
        path = tmp_path / f"c_{mode}.pcd"
        path.write_bytes(_pcd(mode))
        ref = o3d.io.read_point_cloud(str(path))
        scan = read_scan(path)
        np.testing.assert_allclose(scan.vertices, np.asarray(ref.points), rtol=0, atol=1e-5)
        np.testing.assert_array_equal(scan.colors, np.round(np.asarray(ref.colors) * 255).astype(np.uint8))


@pytest.mark.skipif(not PCL.exists(), reason="shared real fixtures absent")
def test_real_pcl_files_match_open3d_in_every_data_mode():
    """PCL's own test data: VERSION .5 and 0.7, ascii/binary/binary_compressed, rgb/rgba/intensity/normals,
    a 640x480 organised stereo cloud with NaNs. Points equal open3d's values rounded to the declared float32."""
    o3d = pytest.importorskip("open3d")
    files = sorted(PCL.glob("*.pcd"))
    assert len(files) == 8
    modes = set()
    for path in files:
        scan = read_scan(path)
        ref = o3d.io.read_point_cloud(str(path), remove_nan_points=False)
        keep = np.all(np.isfinite(np.asarray(ref.points)), axis=1)  # a point without a return is dropped
        modes.add(scan.format.split()[1].strip("(),"))
        np.testing.assert_array_equal(scan.vertices, np.asarray(ref.points)[keep].astype(np.float32),
                                      err_msg=path.name)
        if ref.has_normals():
            np.testing.assert_allclose(scan.normals, np.asarray(ref.normals)[keep].astype(np.float32), equal_nan=True)
        if ref.has_colors():
            np.testing.assert_array_equal(scan.colors,
                                          np.round(np.asarray(ref.colors)[keep] * 255).astype(np.uint8))
    assert modes == {"ascii", "binary", "binary_compressed"}
    organised = read_scan(PCL / "table_scene_mug_stereo_textured.pcd")
    assert organised.notes == ["dropped 97920 of 307200 points without a return (NaN)"]
    assert read_scan(PCL / "cturtle.pcd").intensity.shape == (167198,)


def test_broken_pcd_files_are_refused_with_the_reason(tmp_path: Path):
    good = _pcd("binary")
    compressed = _pcd("binary_compressed")
    cases = {
        "truncated_binary.pcd": (good[:-40], "binary data is truncated"),
        "truncated_compressed.pcd": (compressed[:-10], "sizes do not fit"),
        "corrupt_lzf.pcd": (compressed[:compressed.index(b"DATA binary_compressed\n") + 31]
                            + bytes(len(compressed) - compressed.index(b"DATA binary_compressed\n") - 31),
                            "does not decompress|sizes do not fit"),
        "no_data.pcd": (good[:good.index(b"DATA")], "no DATA line"),
        "fields.pcd": (good.replace(b"SIZE 4 4 4 4 4 4 4 4", b"SIZE 4 4 4"), "same number of entries"),
        "points.pcd": (good.replace(b"POINTS 50", b"POINTS 51"), "not WIDTH x HEIGHT"),
        "huge.pcd": (good.replace(b"WIDTH 50", b"WIDTH 99999999999").replace(b"POINTS 50", b""), "not a count"),
        "mode.pcd": (good.replace(b"DATA binary", b"DATA binary_zstd"), "unknown PCD DATA"),
        "type.pcd": (good.replace(b"TYPE F F F F", b"TYPE F F F Q"), "unsupported SIZE"),
        "noxyz.pcd": (good.replace(b"FIELDS x y z", b"FIELDS a b c"), "no x/y/z fields"),
        "text.pcd": (b"hello world\n", "not a PCD header line"),
        "ascii_text.pcd": (_pcd("ascii").replace(b"DATA ascii\n", b"DATA ascii\nabc "), "non-numeric"),
    }
    for name, (content, problem) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataFormatError, match=problem) as info:
            read_scan(path)
        assert str(info.value).startswith(str(path)), name


def test_pts_with_point_count_lines_and_intensity_colour_columns(tmp_path: Path):
    rows = [f"{p[0]:.4f} {p[1]:.4f} {p[2]:.4f} {int(i * 2000 - 1000)} {c[0]} {c[1]} {c[2]}"
            for p, i, c in zip(POINTS, INTENSITY, COLOURS, strict=True)]
    (tmp_path / "leica.pts").write_text("30\n" + "\n".join(rows[:30]) + "\n20\n" + "\n".join(rows[30:]) + "\n")
    scan = read_scan(tmp_path / "leica.pts")
    np.testing.assert_allclose(scan.vertices, POINTS, atol=6e-5)
    np.testing.assert_array_equal(scan.colors, COLOURS)
    np.testing.assert_array_equal(scan.intensity, [int(i * 2000 - 1000) for i in INTENSITY])
    assert scan.normals is None and scan.format == "pts (space-separated)"
    (tmp_path / "short.pts").write_text("60\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match="announce 60 points but 50 follow"):
        read_scan(tmp_path / "short.pts")


def test_colour_columns_are_colours_never_normals(tmp_path: Path):
    rows = [f"{p[0]:.4f} {p[1]:.4f} {p[2]:.4f} {c[0]} {c[1]} {c[2]}" for p, c in zip(POINTS, COLOURS, strict=True)]
    (tmp_path / "plain.xyz").write_text("\n".join(rows) + "\n")  # no header: whole numbers 0-255 are colours
    scan = read_scan(tmp_path / "plain.xyz")
    assert scan.normals is None
    np.testing.assert_array_equal(scan.colors, COLOURS)
    (tmp_path / "cc.txt").write_text("//X Y Z R G B\n" + "\n".join(rows) + "\n")  # CloudCompare's header
    np.testing.assert_array_equal(read_scan(tmp_path / "cc.txt").colors, COLOURS)
    unit = [f"{p[0]:.4f},{p[1]:.4f},{p[2]:.4f},{c[0] / 255:.6f},{c[1] / 255:.6f},{c[2] / 255:.6f}"
            for p, c in zip(POINTS, COLOURS, strict=True)]
    (tmp_path / "unit.csv").write_text("x,y,z,red,green,blue\n" + "\n".join(unit) + "\n")
    np.testing.assert_array_equal(read_scan(tmp_path / "unit.csv").colors, COLOURS)
    normals = [f"{p[0]:.4f} {p[1]:.4f} {p[2]:.4f} {n[0]:.6f} {n[1]:.6f} {n[2]:.6f}"
               for p, n in zip(POINTS, NORMALS, strict=True)]
    (tmp_path / "normals.xyz").write_text("\n".join(normals) + "\n")  # unit vectors on every row: normals
    scan = read_scan(tmp_path / "normals.xyz")
    assert scan.colors is None
    np.testing.assert_allclose(scan.normals, NORMALS, atol=1e-6)
    odd = [f"{p[0]:.4f} {p[1]:.4f} {p[2]:.4f} 0.5 7.25 -3" for p in POINTS]
    (tmp_path / "odd.xyz").write_text("\n".join(odd) + "\n")
    with pytest.raises(DataFormatError, match="6 columns without a header line naming them"):
        read_scan(tmp_path / "odd.xyz")
    (tmp_path / "mismatch.xyz").write_text("x y z r g b\n" + "\n".join(r.rsplit(" ", 1)[0] for r in rows) + "\n")
    with pytest.raises(DataFormatError, match="header names 6 columns"):
        read_scan(tmp_path / "mismatch.xyz")


def test_obj_continuation_lines_and_one_bad_face_skipped_with_a_note(tmp_path: Path, caplog):
    text = ("# exported\nv 0 0 0\nv 1 0 \\\n 0\nv 0 1 0\nv 1 1 0\n"
            "f 1 2 3\nf 2 4 \\\n3\nf 1 2 99\nf 1 x 3\n")
    (tmp_path / "mesh.obj").write_text(text)
    scan = read_scan(tmp_path / "mesh.obj")
    np.testing.assert_array_equal(scan.vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(scan.faces, [[0, 1, 2], [1, 3, 2]])
    assert scan.notes == ["skipped 2 malformed face(s) (line 10, 11)"]
    # and the user hears of it: every note is a warning naming the file
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"{tmp_path / 'mesh.obj'}: skipped 2 malformed face(s) (line 10, 11)"]


def test_watcher_takes_pcd_and_names_files_it_cannot_read(tmp_path: Path):
    assert ".pcd" in SCAN_SUFFIXES
    watcher = ExportWatcher(tmp_path, settle_s=0.05, poll_s=0.02)
    (tmp_path / "scan_1.pcd").write_bytes(_pcd("binary_compressed"))
    found = watcher.wait_for(1, timeout_s=10)
    assert found[0].path.name == "scan_1.pcd" and len(found[0].scan.vertices) == 50
    (tmp_path / "scan_2.e57").write_bytes(b"x")
    with pytest.raises(MulsenError, match=r"not scan formats, ignored: scan_2\.e57 \(readable: .*\.pcd"):
        watcher.wait_for(1, timeout_s=0.3)
