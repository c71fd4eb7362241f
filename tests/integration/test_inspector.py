"""The inspector's loop: the Python API of the README, verdicts flagged when the input is unlike the training
data, category checks, fresh captures merged on the fly, and outputs that never collide."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mulsen.cli import main
from mulsen.core.errors import MulsenError
from mulsen.dataset.formats import write_ir, write_rgb
from mulsen.dataset.meshio import write_stl
from mulsen.dataset.reader import MulsenDataset
from mulsen.detection import DetectorConfig
from mulsen.detection.inspector import Detector
from mulsen.hardware_mocks.world.generate import GenerationConfig, generate_dataset

README = Path(__file__).resolve().parents[2] / "README.md"


def _capture(folder: Path, data, category: str | None = None) -> Path:
    folder.mkdir(parents=True)
    write_rgb(folder / "rgb.png", data.rgb)
    write_ir(folder / "infrared.png", data.infrared)
    write_stl(folder / "pointcloud.stl", data.mesh)
    if category:
        from mulsen.dataset.captures import CAPTURE_FILE, CaptureRecord, SampleRequest

        CaptureRecord(request=SampleRequest(category, folder.name), finished="now", operator="test",
                      files=("infrared.png", "pointcloud.stl", "rgb.png")).write(folder / CAPTURE_FILE)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    generate_dataset(root / "demo_out" / "sim_dataset",
                     GenerationConfig(categories=("capsule",), train=8, test_good=2, test_bad=2, seed=5))
    dataset = MulsenDataset(root / "demo_out" / "sim_dataset")
    good = [dataset.load(r) for r in dataset.records("capsule", "test") if r.key.defect_type == "good"]
    _capture(root / "demo_out" / "fresh_part", good[0], "capsule")
    detector = Detector.fit(dataset, "capsule", DetectorConfig(min_holdout=2))
    detector.save(root / "model")
    return root, dataset, good, Detector.load(root / "model")


def test_the_readme_example_runs_as_written(world, monkeypatch, capsys):
    root, _, _, _ = world
    code = re.search(r"```python\n(from mulsen import Detector.*?)```", README.read_text(), re.S)
    assert code, "the README's Python example is gone"
    monkeypatch.chdir(root)
    exec(compile(code.group(1), "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed[0] in ("normal", "anomalous") and (root / "models/capsule/model.json").exists()


def test_inputs_unlike_the_training_data_are_flagged(world):
    _, _, good, detector = world
    sample = good[1]
    assert detector.predict(sample).reliable
    bigger = Image.fromarray(sample.rgb).resize((sample.rgb.shape[1] * 2, sample.rgb.shape[0] * 2))
    resized = type(sample)(**{**sample.__dict__, "rgb": np.asarray(bigger)})
    detection = detector.predict(resized)
    assert not detection.reliable and any("RGB image is" in w for w in detection.warnings)
    in_metres = type(sample.mesh)(sample.mesh.vertices / 1000.0, sample.mesh.faces)
    detection = detector.predict(type(sample)(**{**sample.__dict__, "mesh": in_metres}))
    assert any("part radius" in w and "length unit" in w for w in detection.warnings), detection.warnings
    # another scanner: ten times the noise roughens the whole surface, not one spot
    rng = np.random.default_rng(0)
    rough = type(sample.mesh)(sample.mesh.vertices + rng.normal(0, 0.3, sample.mesh.vertices.shape), sample.mesh.faces)
    detection = detector.predict(type(sample)(**{**sample.__dict__, "mesh": rough}))
    assert any("whole pointcloud anomaly map is raised" in w for w in detection.warnings), detection.warnings


def test_a_capture_of_another_category_is_refused_unless_forced(world, tmp_path: Path):
    _, _, good, detector = world
    folder = _capture(tmp_path / "001", good[1], "nut")
    with pytest.raises(MulsenError, match="a nut capture, but the model is for capsule"):
        detector.predict(folder)
    assert detector.predict(folder, force=True).category == "capsule"


def test_detect_mirrors_sample_paths_and_writes_scores_and_the_model_identity(world, tmp_path: Path, capsys):
    root, _, good, _ = world
    a = _capture(tmp_path / "line1" / "010", good[0], "capsule")
    b = _capture(tmp_path / "line2" / "010", good[1], "capsule")
    out = tmp_path / "out"
    assert main(["detect", "--model", str(root / "model"), "--out", str(out), str(a), str(b)]) == 0
    for line in ("line1", "line2"):
        folder = out / line / "010"
        report = json.loads((folder / "report.json").read_text())
        assert report["format"] == "mulsen-detection/2" and report["model"]["category"] == "capsule"
        assert len(report["model"]["arrays_sha256"]) == 64 and report["reliable"] is True
        assert report["files"] == {"rgb": "rgb_overlay.png", "infrared": "infrared_overlay.png",
                                   "pointcloud": "pointcloud_scores.ply"}
    from mulsen.dataset.scans import read_scan

    scan = read_scan(out / "line2" / "010" / "pointcloud_scores.ply")
    assert len(scan.vertices) == len(good[1].mesh.vertices)
    np.testing.assert_allclose(scan.vertices, good[1].mesh.vertices, atol=1e-3)
    data = (out / "line2" / "010" / "pointcloud_scores.ply").read_bytes()
    body = data[data.index(b"end_header\n") + 11:]
    vertex = np.frombuffer(body, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1"),
                                  ("score", "<f4")], count=len(scan.vertices))
    expected = Detector.load(root / "model").predict(good[1]).maps["pointcloud"]
    np.testing.assert_allclose(vertex["score"], expected, rtol=1e-5)
    assert "samples anomalous; results in" in capsys.readouterr().out


@pytest.mark.slow
def test_a_fresh_capture_with_two_scans_is_merged_before_judging(world, tmp_path: Path, capsys):
    from mulsen.hardware_mocks.sim_cameras import BenchPart
    from mulsen.hardware_mocks.sim_captures import write_simulated_capture

    root, _, _, _ = world
    folder = write_simulated_capture(tmp_path / "caps", "capsule", "001", BenchPart.parse("capsule:3"))
    assert not (folder / "pointcloud.stl").exists()
    assert main(["detect", "--model", str(root / "model"), "--out", str(tmp_path / "out"), str(folder)]) == 0
    assert (folder / "pointcloud.stl").exists() and (folder / "alignment.json").exists()
    assert (tmp_path / "out" / "001" / "report.json").exists()


def test_evaluate_keeps_partial_results_writes_strict_json_per_sample_scores_and_confusion(world, tmp_path: Path,
                                                                                           capsys):
    root, dataset, _, _ = world
    models = tmp_path / "models"
    shutil.copytree(root / "model", models / "capsule")
    out = tmp_path / "eval"
    argv = ["evaluate", str(dataset.root), "--models", str(models), "--category", "capsule", "--category", "nut",
            "--all-combinations", "--out", str(out)]
    assert main([*argv, "--strict"]) == 2
    assert "no model for nut" in capsys.readouterr().err and not (out / "results.json").exists()
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "warning: no model for nut" in captured.err
    assert "Verdicts at each model's calibrated threshold" in captured.out

    def no_nan(value: str) -> float:
        raise AssertionError(f"{value} in results.json")

    results = json.loads((out / "results.json").read_text(), parse_constant=no_nan)
    assert results["missing_models"] == ["nut"]
    tests = dataset.records("capsule", "test")
    for counts in results["categories"][0]["confusion"].values():
        assert sum(counts.values()) == len(tests)
    rows = (out / "per_sample.csv").read_text().splitlines()
    assert len(rows) == 1 + len(tests) and rows[0].startswith("category,sample,label,RGB,IR,PC")
    assert rows[0].endswith("Triple verdict")


@pytest.mark.slow
def test_a_model_trained_on_generated_data_judges_simulated_captures(tmp_path: Path):
    """One world, one look: ``mulsen sim dataset`` samples and captures of the simulated bench (two scans
    merged by the aligner, the 640x480 IR image) are alike, so a model trained on the first judges the second
    without warnings, normals near the held-out normals and planted defects far above them."""
    from mulsen.hardware_mocks.sim_cameras import BenchPart
    from mulsen.hardware_mocks.sim_captures import write_simulated_capture

    generate_dataset(tmp_path / "ds", GenerationConfig(categories=("nut",), train=20, test_good=1, test_bad=1, seed=8))
    detector = Detector.fit(MulsenDataset(tmp_path / "ds"), "nut", DetectorConfig())
    held_out = detector.model.holdout_scores.mean(axis=0)
    ratios = []  # each captured normal's score over the held-out generated normals' mean, per modality
    for seed in (31, 32, 33, 36, 37, 38, 39, 40):  # eight: the median of four moved by 0.15 with the sampling
        folder = write_simulated_capture(tmp_path / "caps", "nut", f"{seed:03d}", BenchPart("nut", seed))
        detection = detector.predict(folder)
        assert detection.reliable, detection.warnings
        ratios.append([detection.scores[m] / held_out[k] for k, m in enumerate(detector.model.config.modalities)])
    ratios_array = np.array(ratios)
    # before: point-cloud scores ~10x the normals' on every capture (z-scores of ~1400)
    assert np.median(ratios_array, axis=0).max() < 1.2 and ratios_array.max() < 2.0, ratios
    for seed, kind in ((34, "hole"), (35, "crack")):
        folder = write_simulated_capture(tmp_path / "caps", "nut", f"{seed:03d}", BenchPart("nut", seed, kind))
        detection = detector.predict(folder)
        assert detection.reliable and detection.anomalous, (kind, detection.normalised)


def test_watch_judges_each_finished_capture_once_and_survives_restarts(world, tmp_path: Path, capsys):
    import threading
    import time

    from mulsen.detection.inspector import VERDICTS_FILE, watch

    root, _, good, _ = world
    models = tmp_path / "models"
    shutil.copytree(root / "model", models / "capsule")
    captures, out = tmp_path / "captures", tmp_path / "out"
    _capture(captures / "capsule" / "001", good[0], "capsule")
    _capture(captures / ".partial" / "capsule" / "002", good[1], "capsule")  # a capture still in progress
    broken = _capture(captures / "capsule" / "003", good[1], "capsule")
    (broken / "rgb.png").write_bytes(b"not a png")
    _capture(captures / "nut" / "004", good[1], "nut")  # no model for nut: logged, not fatal
    assert main(["detect", "--watch", str(captures), "--model", str(models), "--out", str(out), "--once"]) == 0
    lines = [json.loads(line) for line in (out / VERDICTS_FILE).read_text().splitlines()]
    assert [(v["capture"], v["decision"] in ("normal", "anomalous")) for v in lines] == [
        ("capsule/001", True), ("capsule/003", False), ("nut/004", False)]
    assert "rgb.png" in lines[1]["problem"] and "models/nut" in lines[2]["problem"]
    assert (out / "capsule" / "001" / "report.json").exists()
    # a restart judges nothing twice; a capture renamed into place while watching is judged within a second
    stop, found = threading.Event(), []
    thread = threading.Thread(target=watch, args=(captures, models, out, 0.05), kwargs={"stop": stop,
                                                                                    "report": found.append})
    thread.start()
    try:
        time.sleep(0.3)
        assert found == []
        (captures / ".partial" / "capsule" / "002").rename(captures / "capsule" / "002")
        deadline = time.monotonic() + 30
        while not found and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(30)
    assert [v.capture for v in found] == ["capsule/002"] and found[0].seconds < 1.0
    assert len((out / VERDICTS_FILE).read_text().splitlines()) == 4
