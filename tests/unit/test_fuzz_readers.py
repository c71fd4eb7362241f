"""Property-based fuzzing of every reader and record: arbitrary and mutated inputs give either a valid result or
the toolkit's own error (``MulsenError``), never another exception and never a hang.

Example counts are bounded so that the whole file stays within seconds in CI (``MULSEN_FUZZ_EXAMPLES`` raises
them for a longer local run; 400 per reader passed).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mulsen.core.errors import MulsenError
from tests.conftest import grid_mesh, make_content

FUZZ = settings(max_examples=int(os.environ.get("MULSEN_FUZZ_EXAMPLES", "60")), deadline=3000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """Truncations, byte flips, insertions and deletions of a valid file, plus arbitrary bytes."""
    n = len(valid)
    cut = st.integers(0, n).map(lambda k: valid[:k])
    flip = st.lists(st.tuples(st.integers(0, max(n - 1, 0)), st.integers(1, 255)), min_size=1, max_size=8).map(
        lambda edits: bytes(_flip(valid, edits)))
    insert = st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=64)).map(
        lambda e: valid[: e[0]] + e[1] + valid[e[0]:])
    delete = st.tuples(st.integers(0, n), st.integers(1, 64)).map(lambda e: valid[: e[0]] + valid[e[0] + e[1]:])
    return st.one_of(cut, flip, insert, delete, st.binary(max_size=512))


def _flip(data: bytes, edits: list[tuple[int, int]]) -> bytearray:
    out = bytearray(data)
    for position, mask in edits:
        if out:
            out[position % len(out)] ^= mask
    return out


def _check(read: Callable[[Path], object], path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        read(path)
    except MulsenError as exc:
        text = str(exc)
        assert "\n" not in text.strip() and text, repr(text)


# -- meshes, point clouds, point GT ---------------------------------------------------------------------------
def _stl_bytes(ascii_: bool) -> bytes:
    import tempfile

    from mulsen.dataset.meshio import write_stl

    mesh = grid_mesh(n=4)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.stl"
        write_stl(path, mesh)
        data = path.read_bytes()
    if not ascii_:
        return data
    tri = mesh.vertices[mesh.faces]
    text = "solid m\n" + "".join("facet normal 0 0 1\n outer loop\n" + "".join(
        f"  vertex {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in t) + " endloop\nendfacet\n" for t in tri)
    return (text + "endsolid m\n").encode()


@pytest.mark.parametrize("ascii_", [False, True], ids=["binary", "ascii"])
def test_stl_reader(tmp_path: Path, ascii_: bool):
    from mulsen.dataset.meshio import read_stl

    @FUZZ
    @given(_mutations(_stl_bytes(ascii_)))
    def run(data: bytes) -> None:
        _check(read_stl, tmp_path / "m.stl", data)

    run()


def _scan_bytes(fmt: str) -> bytes:
    import tempfile

    from mulsen.dataset.scans import write_scan

    mesh = grid_mesh(n=4)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"s.{fmt}"
        write_scan(path, mesh.vertices, mesh.faces if fmt in ("ply", "obj") else None, fmt)
        return path.read_bytes()


def _read_only_bytes(fmt: str) -> bytes:
    """Valid files of the formats the toolkit reads but never writes."""
    if fmt == "pts":
        return b"3\n1.0 2.0 3.0 -120 10 20 30\n4.0 5.0 6.0 15 40 50 60\n7 8 9 0 255 255 255\n"
    from tests.unit.test_scan_formats import _pcd

    return _pcd(fmt.split("_", 1)[1])


@pytest.mark.parametrize("fmt", ["ply", "obj", "xyz", "pts", "pcd_ascii", "pcd_binary", "pcd_binary_compressed"])
def test_scan_readers(tmp_path: Path, fmt: str):
    from mulsen.dataset.scans import WRITE_FORMATS, read_scan

    valid = _scan_bytes(fmt) if fmt in WRITE_FORMATS else _read_only_bytes(fmt)
    suffix = fmt.split("_")[0]

    @FUZZ
    @given(_mutations(valid))
    def run(data: bytes) -> None:
        _check(read_scan, tmp_path / f"s.{suffix}", data)

    run()


def test_point_gt_and_selection_reader(tmp_path: Path):
    from mulsen.dataset.formats import read_pc_gt

    valid = b"# x, y, z\n1.0,2.0,3.0\n4.5,-1,2e3\n"

    @FUZZ
    @given(_mutations(valid))
    def run(data: bytes) -> None:
        _check(read_pc_gt, tmp_path / "0.txt", data)

    run()


# -- images and masks -------------------------------------------------------------------------------------------
def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("reader", ["read_rgb", "read_ir", "read_mask"])
def test_image_readers(tmp_path: Path, reader: str):
    from mulsen.dataset import formats

    content = make_content(seed=1)
    valid = _png(content.rgb if reader == "read_rgb" else content.infrared)
    read = getattr(formats, reader)

    @FUZZ
    @given(_mutations(valid))
    def run(data: bytes) -> None:
        _check(read, tmp_path / "0.png", data)

    run()


# -- csv --------------------------------------------------------------------------------------------------------
def test_labels_csv_reader(tmp_path: Path):
    from mulsen.dataset.formats import parse_labels_csv, read_labels_csv

    valid = b"object,RGB,Infrared,Pointcloud\n0,1,0,1\n1,0,1,1\n"

    def read(path: Path) -> None:
        parse_labels_csv(path)  # the lenient form never raises
        read_labels_csv(path)

    @FUZZ
    @given(_mutations(valid))
    def run(data: bytes) -> None:
        _check(read, tmp_path / "data.csv", data)

    run()


def test_capture_plan_reader(tmp_path: Path):
    from mulsen.commands.capture import read_plan

    valid = b"category,sample_id,part,operator\nnut,001,nut:1,ann\nnut,002,nut:2:hole,\n"

    @FUZZ
    @given(_mutations(valid))
    def run(data: bytes) -> None:
        _check(read_plan, tmp_path / "plan.csv", data)

    run()


# -- JSON: LabelMe, transforms, records ---------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 6, 10 ** 6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25)


def _json_mutations(valid: dict) -> st.SearchStrategy[bytes]:
    """Valid documents with one field replaced, dropped or added; arbitrary JSON; mutated bytes."""
    keys = sorted(valid)

    def replace(edit: tuple[int, object]) -> bytes:
        key = keys[edit[0] % len(keys)]
        return json.dumps({**valid, key: edit[1]}).encode()

    def drop(index: int) -> bytes:
        key = keys[index % len(keys)]
        return json.dumps({k: v for k, v in valid.items() if k != key}).encode()

    def nested(edit: tuple[int, int, object]) -> bytes:  # one level down, where records nest
        key = keys[edit[0] % len(keys)]
        inner = valid[key]
        if isinstance(inner, dict) and inner:
            sub = sorted(inner)[edit[1] % len(inner)]
            return json.dumps({**valid, key: {**inner, sub: edit[2]}}).encode()
        if isinstance(inner, list) and inner:
            changed = list(inner)
            changed[edit[1] % len(inner)] = edit[2]
            return json.dumps({**valid, key: changed}).encode()
        return json.dumps({**valid, key: edit[2]}).encode()

    text = json.dumps(valid).encode()
    return st.one_of(st.tuples(st.integers(0, 99), JSON_VALUES).map(replace), st.integers(0, 99).map(drop),
                     st.tuples(st.integers(0, 99), st.integers(0, 99), JSON_VALUES).map(nested),
                     JSON_VALUES.map(lambda v: json.dumps(v).encode()), _mutations(text))


def test_labelme_reader_and_rasteriser(tmp_path: Path):
    from mulsen.dataset.annotations import defect_mask, read_labelme

    valid = {"version": "5.4.1", "imagePath": "absent.png", "imageData": None, "imageHeight": 40, "imageWidth": 50,
             "shapes": [{"label": "hole", "points": [[1, 1], [20, 3], [9, 30]], "shape_type": "polygon"},
                        {"label": "crack", "points": [[5, 5], [9, 9]], "shape_type": "rectangle"}]}

    def read(path: Path) -> None:
        mask, _ = defect_mask(read_labelme(path))
        assert mask.shape == (40, 50) or mask.ndim == 2

    @FUZZ
    @given(_json_mutations(valid))
    def run(data: bytes) -> None:
        _check(read, tmp_path / "rgb.json", data)

    run()


def test_transform_and_pair_readers(tmp_path: Path):
    from mulsen.dataset.align import read_initial_transform, read_point_pairs

    @FUZZ
    @given(st.one_of(JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                     _mutations(json.dumps(np.eye(4).tolist()).encode())))
    def run(data: bytes) -> None:
        _check(read_initial_transform, tmp_path / "t.json", data)

    run()

    @FUZZ
    @given(_json_mutations({"a": [[0, 0, 0], [1, 0, 0], [0, 1, 0]], "b": [[0, 0, 1], [1, 0, 1], [0, 1, 1]]}))
    def run_pairs(data: bytes) -> None:
        _check(read_point_pairs, tmp_path / "p.json", data)

    run_pairs()


def _records() -> list[tuple[str, object]]:
    """(name, a valid record) of every record type a user hands the toolkit."""
    from mulsen.calibration.records import HandEyeRecord, IntrinsicsRecord, IrRgbRecord
    from mulsen.dataset.captures import CaptureRecord, CaptureSteps, IrStep, SampleRequest
    from mulsen.dataset.release import FileEntry, ReleaseManifest
    from mulsen.detection.config import DetectorConfig
    from mulsen.detection.persistence import ModelRecord

    eye = tuple(tuple(float(v) for v in row) for row in np.eye(4))
    return [
        ("intrinsics", IntrinsicsRecord(((1000.0, 0.0, 640.0), (0.0, 1000.0, 480.0), (0.0, 0.0, 1.0)), (0.0,) * 5,
                                        (1280, 960), 0.2)),
        ("hand-eye", HandEyeRecord("park", eye, eye, 12)),
        ("ir-rgb", IrRgbRecord(((2.0, 0.0, 0.0), (0.0, 2.0, 0.0), (0.0, 0.0, 1.0)), 0.3, 40, (640, 480), (1280, 960),
                               (0.4, 0.0, 0.5, 0.0, 3.14, 0.0))),
        ("capture", CaptureRecord(request=SampleRequest("nut", "001", "ann", "", "nut:1"), finished="now",
                                  operator="ann", devices={"heater": "sim"},
                                  steps=CaptureSteps(ir=IrStep(["ir_amplitude.tiff"], 60, 50, 12, True, 60.0)),
                                  files=("rgb.png",))),
        ("manifest", ReleaseManifest("ds", "1.0", "now", "mulsen", 1, 10, {"nut/train": 1}, (),
                                     {"nut/RGB/train/0.png": FileEntry(10, "0" * 64)})),
        ("model", ModelRecord("nut", DetectorConfig(), {"rgb": 10, "infrared": 10, "pointcloud": 10}, "0" * 64)),
    ]


@pytest.mark.parametrize("name", [name for name, _ in _records()])
def test_record_readers(tmp_path: Path, name: str):
    record = dict(_records())[name]
    valid = json.loads(record.to_json())  # type: ignore[attr-defined]
    cls = type(record)

    @FUZZ
    @given(_json_mutations(valid))
    def run(data: bytes) -> None:
        _check(cls.read, tmp_path / "record.json", data)

    run()


def test_simulator_state_reader(tmp_path: Path):
    from mulsen.hardware_mocks.devices import SimBench

    valid = {"state_dir": str(tmp_path), "part": "nut:1", "time_scale": 1.0, "clock_epoch": 0.0,
             "heater_port": "/dev/null", "heater_edge_log": str(tmp_path / "e"), "run_token": "ab", "pids": {}}

    @FUZZ
    @given(_json_mutations(valid))
    def run(data: bytes) -> None:
        _check(lambda p: SimBench.load(p, check=False), tmp_path / "devices.json", data)

    run()
