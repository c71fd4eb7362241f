"""The bad-input corpus: broken, hostile or odd inputs fed to the real ``mulsen`` command in a subprocess.

Every case states the exit status it must give (1: the data were checked and are invalid; 2: an expected
error; 0: a report that lists the bad input as its finding) and a text that names the culprit; an exit-2 case
must print exactly one line on stderr and no traceback. Grow this list with every bad-input bug found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mulsen.dataset.formats import write_ir, write_rgb
from mulsen.dataset.meshio import write_stl
from mulsen.dataset.release import pack_dataset
from mulsen.dataset.writer import DatasetWriter
from tests.conftest import make_content


@dataclass(frozen=True)
class World:
    dataset: Path  # a valid MulSen-AD dataset (capsule: 6 train, 4 test)
    model: Path  # a model trained on it
    capture: Path  # a capture folder for detect: rgb.png, infrared.png, pointcloud.stl
    release: Path  # the dataset packed
    captures: Path  # a simulated capture root (nut/001 with two scans)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from mulsen.detection import DetectorConfig, TripleADModel
    from mulsen.hardware_mocks.sim_cameras import BenchPart
    from mulsen.hardware_mocks.sim_captures import write_simulated_capture

    root = tmp_path_factory.mktemp("corpus")
    dataset = root / "ds"
    writer = DatasetWriter(dataset)
    for i in range(6):
        writer.add("capsule", "train", "good", make_content(seed=i))
    writer.add("capsule", "test", "good", make_content(seed=20))
    writer.add("capsule", "test", "crack", make_content(True, True, False, seed=21))
    writer.add("capsule", "test", "hole", make_content(False, True, True, seed=22))
    from mulsen.dataset.reader import MulsenDataset

    ds = MulsenDataset(dataset)
    model = TripleADModel("capsule", DetectorConfig(min_holdout=2)).fit(ds.load, ds.records("capsule", "train"))
    model.save(root / "model")
    capture = root / "capture"
    content = make_content(seed=30)
    capture.mkdir()
    write_rgb(capture / "rgb.png", content.rgb)
    write_ir(capture / "infrared.png", content.infrared)
    write_stl(capture / "pointcloud.stl", content.mesh)
    release = pack_dataset(dataset, "1.0", out=root / "release" / "ds-1.0.tar.gz")
    write_simulated_capture(root / "captures", "nut", "001", BenchPart.parse("nut:1"))
    return World(dataset, root / "model", capture, release, root / "captures")


Setup = Callable[[World, Path], list[str]]


@dataclass(frozen=True)
class Case:
    name: str
    setup: Setup  # builds the bad input in a fresh folder; returns the command's arguments
    status: int
    names: str  # stderr (status 2) or stdout (status 1) must contain this


CASES: list[Case] = []


def case(name: str, status: int, names: str) -> Callable[[Setup], Setup]:
    def register(setup: Setup) -> Setup:
        CASES.append(Case(name, setup, status, names))
        return setup
    return register


def _copy(src: Path, tmp: Path) -> Path:
    dst = tmp / src.name
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True)
    else:
        shutil.copy2(src, dst)
    return dst


def _detect(w: World, tmp: Path, file: str, data: bytes | None = None, fifo: bool = False) -> list[str]:
    capture = _copy(w.capture, tmp)
    (capture / file).unlink()
    if fifo:
        os.mkfifo(capture / file)
    elif data is not None:
        (capture / file).write_bytes(data)
    return ["detect", "--model", str(w.model), "--out", str(tmp / "out"), str(capture)]


def _model(w: World, tmp: Path, edit: Callable[[Path], None]) -> list[str]:
    model = _copy(w.model, tmp)
    edit(model)
    return ["detect", "--model", str(model), "--out", str(tmp / "out"), str(w.capture)]


def _model_json(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def edit(model: Path) -> None:
        doc = json.loads((model / "model.json").read_text())
        (model / "model.json").write_text(json.dumps(change(doc)))
    return edit


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _ascii_stl(facets: int, cut_after: int | None = None) -> bytes:
    text = "solid t\n" + "".join(f"facet normal 0 0 1\n outer loop\n  vertex {i} 0 0\n  vertex {i} 1 0\n"
                                 f"  vertex {i} 0 1\n endloop\nendfacet\n" for i in range(facets))
    if cut_after is not None:  # cut exactly at a facet boundary: whole triangles, no end
        text = text[: text.index("endfacet\n", 0) + 9] if cut_after == 1 else text
        return text.encode()
    return (text + "endsolid t\n").encode()


# -- detect: the sample's files ----------------------------------------------------------------------------
case("detect: capture folder missing", 2, "missing-capture")(
    lambda w, t: ["detect", "--model", str(w.model), "--out", str(t / "o"), str(t / "missing-capture")])
case("detect: rgb.png is text", 2, "rgb.png")(lambda w, t: _detect(w, t, "rgb.png", b"not an image"))
case("detect: rgb.png truncated", 2, "rgb.png")(
    lambda w, t: _detect(w, t, "rgb.png", (w.capture / "rgb.png").read_bytes()[:300]))
case("detect: rgb.png empty", 2, "rgb.png")(lambda w, t: _detect(w, t, "rgb.png", b""))
case("detect: rgb.png is a FIFO", 2, "rgb.png: image is a FIFO")(lambda w, t: _detect(w, t, "rgb.png", fifo=True))
case("detect: rgb.png is a folder", 2, "rgb.png: image expected, found a folder")(
    lambda w, t: _folder_instead(w, t, "rgb.png"))
case("detect: 16-bit IR beyond 8 bits", 2, "infrared.png: I;16 IR image")(
    lambda w, t: _detect(w, t, "infrared.png", _png((np.arange(32 * 24).reshape(24, 32) * 50).astype(np.uint16))))
case("detect: infrared.png truncated", 2, "infrared.png")(
    lambda w, t: _detect(w, t, "infrared.png", (w.capture / "infrared.png").read_bytes()[:100]))
case("detect: STL empty", 2, "pointcloud.stl: empty file")(lambda w, t: _detect(w, t, "pointcloud.stl", b""))
case("detect: binary STL truncated", 2, "pointcloud.stl: truncated or corrupt binary STL")(
    lambda w, t: _detect(w, t, "pointcloud.stl", (w.capture / "pointcloud.stl").read_bytes()[:-20]))
case("detect: ASCII STL cut at a facet boundary", 2, "does not end with 'endsolid'")(
    lambda w, t: _detect(w, t, "pointcloud.stl", _ascii_stl(40, cut_after=1)))
case("detect: ASCII STL with a word for a number", 2, "non-numeric vertex")(
    lambda w, t: _detect(w, t, "pointcloud.stl", _ascii_stl(3).replace(b"vertex 1 0 0", b"vertex one 0 0")))
case("detect: STL with NaN coordinates", 2, "non-finite")(
    lambda w, t: _detect(w, t, "pointcloud.stl", _ascii_stl(3).replace(b"vertex 1 0 0", b"vertex nan 0 0")))
case("detect: STL of random bytes", 2, "pointcloud.stl")(
    lambda w, t: _detect(w, t, "pointcloud.stl", os.urandom(1000)))


def _folder_instead(w: World, tmp: Path, file: str) -> list[str]:
    argv = _detect(w, tmp, file)
    (tmp / "capture" / file).mkdir()
    return argv


# -- detect: the model -------------------------------------------------------------------------------------
case("model: folder missing", 2, "model folder not found")(
    lambda w, t: ["detect", "--model", str(t / "nomodel"), "--out", str(t / "o"), str(w.capture)])
case("model: model.json not JSON", 2, "model.json")(
    lambda w, t: _model(w, t, lambda m: (m / "model.json").write_text("{oops")))
case("model: model.json is a list", 2, "expected a JSON object")(lambda w, t: _model(w, t, _model_json(lambda d: [])))
case("model: unknown config key", 2, "unknown field bogus")(
    lambda w, t: _model(w, t, _model_json(lambda d: {**d, "config": {**d["config"], "bogus": 1}})))
case("model: config missing", 2, "config: missing")(
    lambda w, t: _model(w, t, _model_json(lambda d: {k: v for k, v in d.items() if k != "config"})))
case("model: a setting missing", 2, "config.point_topk: missing")(
    lambda w, t: _model(w, t, _model_json(
        lambda d: {**d, "config": {k: v for k, v in d["config"].items() if k != "point_topk"}})))
case("model: setting out of range", 2, "coreset ratio must be in")(
    lambda w, t: _model(w, t, _model_json(lambda d: {**d, "config": {**d["config"], "coreset_ratio": 0}})))
case("model: future format", 2, "model.json")(
    lambda w, t: _model(w, t, _model_json(lambda d: {**d, "format": "mulsen-model/99"})))
case("model: one flipped byte in the arrays", 2, "model.safetensors: unreadable or tampered")(
    lambda w, t: _model(w, t, _flip_byte))
case("model: arrays missing", 2, "model.safetensors")(
    lambda w, t: _model(w, t, lambda m: (m / "model.safetensors").unlink()))
case("model: bank size edited", 2, "do not match")(
    lambda w, t: _model(w, t, _model_json(lambda d: {**d, "bank_sizes": {**d["bank_sizes"], "rgb": 1}})))
case("detect: false-alarm rate out of range", 2, "false-alarm rate")(
    lambda w, t: ["detect", "--model", str(w.model), "--false-alarm-rate", "2", "--out", str(t / "o"), str(w.capture)])
case("detect: --out is an existing file", 2, "not-a-folder")(
    lambda w, t: (t / "not-a-folder").write_text("x") and
    ["detect", "--model", str(w.model), "--out", str(t / "not-a-folder"), str(w.capture)])


def _flip_byte(model: Path) -> None:
    blob = bytearray((model / "model.safetensors").read_bytes())
    blob[len(blob) - 5] ^= 0x01
    (model / "model.safetensors").write_bytes(bytes(blob))


# -- train / evaluate --------------------------------------------------------------------------------------
case("train: dataset missing", 2, "no-dataset")(
    lambda w, t: ["train", str(t / "no-dataset"), "--category", "capsule", "--out", str(t / "m")])
case("train: unknown category", 2, "teapot")(
    lambda w, t: ["train", str(w.dataset), "--category", "teapot", "--out", str(t / "m")])
case("train: --out is an existing file", 2, "taken")(
    lambda w, t: (t / "taken").write_text("x") and
    ["train", str(w.dataset), "--category", "capsule", "--out", str(t / "taken")])
case("train: a corrupt training image", 2, "0.png")(lambda w, t: _train_with(w, t, "capsule/RGB/train/0.png", b"xx"))
case("train: a truncated training mesh", 2, "0.stl")(
    lambda w, t: _train_with(w, t, "capsule/Pointcloud/train/0.stl",
                             (w.dataset / "capsule/Pointcloud/train/0.stl").read_bytes()[:150]))
case("evaluate: models folder missing", 2, "no-models")(
    lambda w, t: ["evaluate", str(w.dataset), "--models", str(t / "no-models")])


def _train_with(w: World, tmp: Path, relative: str, data: bytes) -> list[str]:
    dataset = _copy(w.dataset, tmp)
    (dataset / relative).write_bytes(data)
    return ["train", str(dataset), "--category", "capsule", "--out", str(tmp / "m")]


# -- dataset validate (findings: status 1, named on stdout) ------------------------------------------------
def _validate_with(w: World, tmp: Path, relative: str, data: bytes | None = None, fifo: bool = False) -> list[str]:
    dataset = _copy(w.dataset, tmp)
    target = dataset / relative
    target.unlink()
    if fifo:
        os.mkfifo(target)
    elif data is not None:
        target.write_bytes(data)
    return ["dataset", "validate", str(dataset)]


case("validate: a FIFO named like an image", 1, "1.png: image is a FIFO")(
    lambda w, t: _validate_with(w, t, "capsule/RGB/train/1.png", fifo=True))
case("validate: ASCII STL cut at a facet boundary", 1, "2.stl")(
    lambda w, t: _validate_with(w, t, "capsule/Pointcloud/train/2.stl", _ascii_stl(300, cut_after=1)))
case("validate: 16-bit IR", 1, "3.png")(
    lambda w, t: _validate_with(w, t, "capsule/Infrared/train/3.png",
                                _png((np.arange(32 * 24).reshape(24, 32) * 50).astype(np.uint16))))
case("validate: data.csv with a word for a label", 1, "data.csv")(
    lambda w, t: _validate_with(w, t, "capsule/RGB/GT/crack/data.csv", b"object,RGB,Infrared,Pointcloud\n0,yes,1,0\n"))
case("validate: a grey mask", 1, "mask")(
    lambda w, t: _validate_with(w, t, "capsule/RGB/GT/crack/0.png", _png(np.full((48, 64), 100, np.uint8))))
case("validate: dataset folder missing", 1, "dataset folder not found")(
    lambda w, t: ["dataset", "validate", str(t / "nothing")])
case("validate: point GT with text", 1, "0.txt")(
    lambda w, t: _validate_with(w, t, "capsule/Pointcloud/GT/hole/0.txt", b"# x, y, z\n1,2,three\n"))


# -- dataset verify / pack ---------------------------------------------------------------------------------
def _tampered(w: World, tmp: Path, name: str, kind: bytes = tarfile.REGTYPE, link: str = "",
              data: bytes | None = b"x") -> list[str]:
    import io

    out = tmp / "t.tar.gz"
    with tarfile.open(w.release) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        if data is not None:
            info.size = len(data)
        dst.addfile(info, io.BytesIO(data) if data is not None else None)
    return ["dataset", "verify", str(out)]


case("verify: ../ member", 1, "climbs out")(lambda w, t: _tampered(w, t, "ds-1.0/../evil.txt"))
case("verify: absolute member", 1, "absolute member")(lambda w, t: _tampered(w, t, "/tmp/evil.txt"))
case("verify: symlink to /etc/passwd", 1, "a link to '/etc/passwd'")(
    lambda w, t: _tampered(w, t, "ds-1.0/x", tarfile.SYMTYPE, "/etc/passwd", None))
case("verify: hardlink to /etc/passwd", 1, "a link to '/etc/passwd'")(
    lambda w, t: _tampered(w, t, "ds-1.0/y", tarfile.LNKTYPE, "/etc/passwd", None))
case("verify: device member", 1, "special member")(lambda w, t: _tampered(w, t, "ds-1.0/d", tarfile.BLKTYPE, "", None))
case("verify: unlisted member", 1, "not in the manifest")(lambda w, t: _tampered(w, t, "ds-1.0/capsule/x.txt"))
case("verify: gzip CRC broken", 1, "gzip stream is corrupt")(lambda w, t: _broken_release(w, t, "crc"))
case("verify: truncated download", 1, "gzip stream is corrupt or truncated")(
    lambda w, t: _broken_release(w, t, "cut"))
case("verify: not an archive", 2, "garbage.tar.gz")(
    lambda w, t: (t / "garbage.tar.gz").write_bytes(b"hello world")
    and ["dataset", "verify", str(t / "garbage.tar.gz")])
case("verify: path missing", 2, "no such release")(lambda w, t: ["dataset", "verify", str(t / "nothing.tar.gz")])
case("verify: cut MANIFEST.json in a folder", 2, "MANIFEST.json")(lambda w, t: _cut_manifest_folder(w, t))
case("pack: version with a path", 2, "must be letters, digits")(
    lambda w, t: ["dataset", "pack", str(_copy(w.dataset, t)), "--version", "1.0/../../evil"])
case("pack: invalid dataset", 2, "does not validate")(
    lambda w, t: _pack_after(w, t, lambda d: (d / "capsule/Pointcloud/train/1.stl").write_bytes(b"solid x\n")))
case("pack: symlink in the dataset", 2, "a link")(
    lambda w, t: _pack_after(w, t, lambda d: (d / "capsule/RGB/train/9.png").symlink_to("/etc/passwd")))
case("pack: --out is an existing file", 2, "already exists")(
    lambda w, t: (t / "exists.tar.gz").write_text("x") and
    ["dataset", "pack", str(w.dataset), "--version", "2.0", "--out", str(t / "exists.tar.gz")])


def _broken_release(w: World, tmp: Path, how: str) -> list[str]:
    data = w.release.read_bytes()
    out = tmp / f"{how}.tar.gz"
    out.write_bytes(data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:] if how == "crc" else data[: len(data) // 2])
    return ["dataset", "verify", str(out)]


def _cut_manifest_folder(w: World, tmp: Path) -> list[str]:
    with tarfile.open(w.release) as tar:
        tar.extractall(tmp, filter="data")
    manifest = tmp / "ds-1.0" / "MANIFEST.json"
    manifest.write_text(manifest.read_text()[:200])
    return ["dataset", "verify", str(tmp / "ds-1.0")]


def _pack_after(w: World, tmp: Path, edit: Callable[[Path], object]) -> list[str]:
    dataset = _copy(w.dataset, tmp)
    edit(dataset)
    return ["dataset", "pack", str(dataset), "--version", "1.0"]


# -- dataset merge / build: capture records, transforms, annotations ---------------------------------------
def _capture_with(w: World, tmp: Path, file: str, data: bytes) -> Path:
    captures = _copy(w.captures, tmp)
    (captures / "nut/001" / file).write_bytes(data)
    return captures


case("merge: capture.json cut short", 2, "capture.json")(
    lambda w, t: ["dataset", "merge", str(_capture_with(w, t, "capture.json",
                                                        (w.captures / "nut/001/capture.json").read_bytes()[:40]))])
case("merge: --initial 3x3", 2, "initial.json")(
    lambda w, t: (t / "initial.json").write_text(json.dumps(np.eye(3).tolist())) and
    ["dataset", "merge", str(_copy(w.captures, t) / "nut/001"), "--initial", str(t / "initial.json")])
case("merge: --initial not JSON", 2, "initial.json")(
    lambda w, t: (t / "initial.json").write_text("[[1, 0") and
    ["dataset", "merge", str(_copy(w.captures, t) / "nut/001"), "--initial", str(t / "initial.json")])
case("merge: --initial not a rigid transform", 2, "initial.json")(
    lambda w, t: (t / "initial.json").write_text(json.dumps((2 * np.eye(4)).tolist())) and
    ["dataset", "merge", str(_copy(w.captures, t) / "nut/001"), "--initial", str(t / "initial.json")])
case("merge: --initial missing", 2, "initial.json")(
    lambda w, t: ["dataset", "merge", str(_copy(w.captures, t) / "nut/001"), "--initial", str(t / "initial.json")])
case("merge: --pairs without b", 2, "pairs.json")(
    lambda w, t: (t / "pairs.json").write_text(json.dumps({"a": [[0, 0, 0]] * 3})) and
    ["dataset", "merge", str(_copy(w.captures, t) / "nut/001"), "--pairs", str(t / "pairs.json")])
case("merge: scan_b.stl truncated", 2, "scan_b.stl")(
    lambda w, t: ["dataset", "merge", str(_capture_with(w, t, "scan_b.stl", b"solid x\nfacet"))])


def _build(w: World, tmp: Path, edit: Callable[[Path, Path], object]) -> list[str]:
    captures = _copy(w.captures, tmp)
    annotations = tmp / "annotations"
    (annotations / "nut/001").mkdir(parents=True)
    out = tmp / "out"
    edit(captures, annotations)
    return ["dataset", "build", "--captures", str(captures), "--annotations", str(annotations), "--out", str(out)]


case("build: sample.json is a list", 2, "sample.json")(
    lambda w, t: _build(w, t, lambda c, a: (a / "nut/001/sample.json").write_text("[1, 2]")))
case("build: sample.json names a number", 2, "sample.json")(
    lambda w, t: _build(w, t, lambda c, a: (a / "nut/001/sample.json").write_text('{"defect": 7}')))
case("build: LabelMe polygon at NaN", 2, "rgb.json")(
    lambda w, t: _build(w, t, lambda c, a: _labelme(a / "nut/001/rgb.json", [[1, 1], [float("nan"), 5], [5, 9]])))
case("build: LabelMe polygon off the image", 2, "lies off")(
    lambda w, t: _build(w, t, lambda c, a: _labelme(a / "nut/001/rgb.json",
                                                    [[5000, 5000], [5010, 5000], [5000, 5010]])))
case("build: LabelMe ellipse", 2, "unknown shape_type 'ellipse'")(
    lambda w, t: _build(w, t, lambda c, a: _labelme(a / "nut/001/rgb.json", [[1, 1], [5, 5]], "ellipse")))
case("build: LabelMe bad base64 image", 2, "imageData is not valid base64")(
    lambda w, t: _build(w, t, lambda c, a: _labelme(a / "nut/001/rgb.json", [[1, 1], [9, 1], [1, 9]],
                                                    image_data="%%%")))
case("build: point selection with text", 2, "pointcloud.txt")(
    lambda w, t: _build(w, t, lambda c, a: (a / "nut/001/pointcloud.txt").write_text("# x, y, z\n1,2,x\n")))


def _build_with_splits(w: World, tmp: Path, text: str) -> list[str]:
    (tmp / "splits.csv").write_text(text)
    return _build(w, tmp, lambda c, a: None) + ["--split-policy", "manifest", "--splits", str(tmp / "splits.csv")]


case("build: splits manifest without a split column", 2, "needs a header with category,sample_id,split")(
    lambda w, t: _build_with_splits(w, t, "category,sample_id\nnut,001\n"))
case("build: splits manifest with split 'val'", 2, "line 2: needs a category, a sample_id and split train or test")(
    lambda w, t: _build_with_splits(w, t, "category,sample_id,split\nnut,001,val\n"))
case("build: splits manifest lists a capture twice", 2, "is listed twice")(
    lambda w, t: _build_with_splits(w, t, "category,sample_id,split\nnut,001,train\nnut,001,test\n"))
case("build: splits manifest is a folder", 2, "splits manifest expected, found a folder")(
    lambda w, t: _build(w, t, lambda c, a: (t / "splits.csv").mkdir())
    + ["--split-policy", "manifest", "--splits", str(t / "splits.csv")])


def _labelme(path: Path, points: list, shape_type: str = "polygon", image_data: str | None = None) -> None:
    with Image.open(path.parents[3] / "captures" / "nut/001/rgb.png") as image:
        width, height = image.size
    path.write_text(json.dumps({"version": "5.4.1", "imagePath": "rgb.png", "imageData": image_data,
                                "imageHeight": height, "imageWidth": width,
                                "shapes": [{"label": "hole", "points": points, "shape_type": shape_type}]}))


# -- capture: pre-flight before any device -----------------------------------------------------------------
def _capture_sample(tmp: Path, calibration: Path | None = None, bench: str = '{"oops"') -> list[str]:
    (tmp / "bench.json").write_text(bench)
    argv = ["capture", "sample", "--out", str(tmp / "caps"), "--bench", str(tmp / "bench.json"),
            "--category", "nut", "--sample-id", "001"]
    return argv + (["--calibration", str(calibration)] if calibration else [])


def _calibration(tmp: Path, hand_eye: object) -> Path:
    """A calibration folder whose intrinsics and IR-RGB registration are fine and whose hand-eye is not."""
    from mulsen.calibration.records import IntrinsicsRecord, IrRgbRecord

    folder = tmp / "cal"
    folder.mkdir()
    IntrinsicsRecord(((1000.0, 0.0, 640.0), (0.0, 1000.0, 480.0), (0.0, 0.0, 1.0)), (0.0,) * 5, (1280, 960),
                     0.2).write(folder / "rgb_intrinsics.json")
    IrRgbRecord(((2.0, 0.0, 0.0), (0.0, 2.0, 0.0), (0.0, 0.0, 1.0)), 0.3, 40, (640, 480), (1280, 960),
                (0.4, 0.0, 0.5, 0.0, 3.14, 0.0)).write(folder / "ir_rgb.json")
    (folder / "hand_eye.json").write_text(json.dumps(hand_eye))
    return folder


case("capture: bench file not JSON", 2, "bench.json")(lambda w, t: _capture_sample(t))
case("capture: hand_eye.json without its matrix", 2, "hand_eye.json")(
    lambda w, t: _capture_sample(t, _calibration(t, {"format": "mulsen-hand-eye/1"})))
case("capture: hand_eye.json with a 2x2 matrix", 2, "hand_eye.json")(
    lambda w, t: _capture_sample(t, _calibration(t, {"format": "mulsen-hand-eye/1", "method": "park",
                                                     "tcp_T_camera_mm": [[1, 0], [0, 1]],
                                                     "base_T_target_mm": np.eye(4).tolist()})))
case("capture: calibration folder missing", 2, "no-cal")(lambda w, t: _capture_sample(t, t / "no-cal"))


def _stale_state(tmp: Path) -> Path:
    state = tmp / "bench"
    state.mkdir()
    (state / "devices.json").write_text(json.dumps({
        "state_dir": str(state), "part": "nut:1", "time_scale": 1.0, "clock_epoch": 0.0,
        "heater_port": str(state / "heater.tty"), "heater_edge_log": str(state / "edges.jsonl"),
        "run_token": "0123456789abcdef", "pids": {"heater": 2 ** 22 + 1}}))
    return state


case("capture: simulator state of a dead run", 2, "stale simulator state")(
    lambda w, t: ["capture", "rgb", str(t / "rgb"), "--sim", str(_stale_state(t))])
case("capture: simulator state not JSON", 2, "devices.json")(
    lambda w, t: (t / "devices.json").write_text("{") and ["capture", "rgb", str(t / "rgb"), "--sim", str(t)])


# -- reports and bench tools (session 8) ----------------------------------------------------------------------


def _broken_mask(w: World, tmp: Path) -> list[str]:
    dataset = _copy(w.dataset, tmp)
    (dataset / "capsule/Infrared/GT/hole/0.png").write_bytes(b"not a png")
    return ["dataset", "report", str(dataset), "--out", str(tmp / "report")]


case("dataset report: a category's mask unreadable (the page says so)", 0, "1 errors")(_broken_mask)
case("dataset report: no such dataset", 2, "missing-ds")(
    lambda w, t: ["dataset", "report", str(t / "missing-ds"), "--out", str(t / "r")])
case("dataset report: --out is a file", 2, "not-a-folder")(
    lambda w, t: (t / "not-a-folder").write_text("x") and ["dataset", "report", str(w.dataset), "--out",
                                                            str(t / "not-a-folder")])
case("evaluate: --report is a file", 2, "report.html")(
    lambda w, t: (t / "report.html").write_text("x") and ["evaluate", str(w.dataset), "--models",
                                                           str(w.model.parent), "--report", str(t / "report.html")])
case("evaluate: negative --report-samples", 2, "--report-samples")(
    lambda w, t: ["evaluate", str(w.dataset), "--models", str(w.model.parent), "--report", str(t / "r"),
                  "--report-samples", "-1"])
case("capture check: bench file not JSON", 2, "bench.json")(
    lambda w, t: (t / "bench.json").write_text("{heater") and ["capture", "check", "--bench", str(t / "bench.json")])
case("capture check: bench file without its cameras", 2, "bench.json")(
    lambda w, t: (t / "bench.json").write_text(json.dumps({"heater_port": "/dev/null"}))
    and ["capture", "check", "--bench", str(t / "bench.json")])
case("capture bench-template: the file exists", 2, "never overwritten")(
    lambda w, t: (t / "bench.json").write_text("{}") and ["capture", "bench-template", str(t / "bench.json")])


@pytest.mark.parametrize("bad", CASES, ids=[c.name for c in CASES])
def test_bad_input(world: World, tmp_path: Path, bad: Case):
    argv = bad.setup(world, tmp_path)
    env = {**os.environ, "MULSEN_NO_PROGRESS": "1"}
    try:
        result = subprocess.run([sys.executable, "-m", "mulsen.cli", *argv], capture_output=True, text=True,
                                timeout=120, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{bad.name}: hung")
    err = result.stderr.strip()
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == bad.status, (result.returncode, result.stdout[-2000:], err)
    if bad.status == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert bad.names in lines[0], err
    else:  # 1: found invalid; 0: handled and reported in the output (a report that lists the bad file)
        assert bad.names in result.stdout, result.stdout[-3000:]
    assert not list(tmp_path.rglob(".partial")), "a partial capture was left behind"


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 60 and len({c.name for c in CASES}) == len(CASES)
