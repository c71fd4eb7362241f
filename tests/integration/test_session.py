"""The capture session through the real drivers against all simulators: content, faults, resume, batch."""

import errno
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mulsen.acquisition.heater import open_heater
from mulsen.acquisition.session import CaptureInterrupted, CaptureSession, SampleRequest, SessionConfig
from mulsen.acquisition.thermography import LockInSettings
from mulsen.core.errors import DeviceError, MulsenError
from mulsen.hardware_mocks.devices import running_simulators
from mulsen.hardware_mocks.heater_sim import read_edge_log
from mulsen.hardware_mocks.scanner_sim import scan_pair
from mulsen.hardware_mocks.sim_bench import SimulatedBench
from mulsen.hardware_mocks.sim_cameras import BenchPart
from tests.browser import IMAGES_JS, chromium, open_page

pytest.importorskip("urx")
pytest.importorskip("harvesters")

PART = BenchPart("nut", 3, "hole")
CONFIG = SessionConfig(lockin=LockInSettings(frequency_hz=0.5, periods=4, settle_periods=1, frame_rate_hz=10),
                       scan_settle_s=0.3, scan_timeout_s=20)


@pytest.fixture
def bench(tmp_path: Path):
    with running_simulators(tmp_path / "bench", PART, time_scale=20.0, image_size="small") as (state, processes):
        yield state, processes


def _session(tmp_path, state, announce=None, **config):
    cfg = SessionConfig(**{**CONFIG.__dict__, **config})
    return CaptureSession(tmp_path / "captures", SimulatedBench(state), cfg, show_progress=False,
                          announce=announce)


def _heater_is_off(state) -> bool:
    with open_heater(state.heater_port, state.clock()) as heater:
        return not heater.is_on() and read_edge_log(state.heater_edge_log)[-1]["on"] is False


def _triangles(vertices, faces):
    return np.sort(vertices[faces].reshape(-1, 9), axis=0)


@pytest.mark.slow
def test_a_simulated_capture_records_the_virtual_part(tmp_path: Path, bench):
    from mulsen.dataset.formats import read_rgb
    from mulsen.dataset.scans import read_scan
    from mulsen.hardware_mocks.world.render_rgb import render_rgb
    from mulsen.hardware_mocks.world.scene import camera_for
    from mulsen.hardware_mocks.world.thermal import thermal_maps

    state, _ = bench
    folder = _session(tmp_path, state).capture(SampleRequest("nut", "001", operator="tester", part=str(PART)))
    assert folder == tmp_path / "captures" / "nut" / "001"
    assert sorted(p.name for p in folder.iterdir()) == [
        "capture.json", "infrared.png", "ir_amplitude.tiff", "ir_lockin.json", "ir_phase.tiff", "rgb.json",
        "rgb.png", "scan_a.stl", "scan_b.stl"]
    assert not (tmp_path / "captures" / ".partial").exists()
    record = json.loads((folder / "capture.json").read_text())
    assert record["request"]["part"] == "nut:3:hole" and record["operator"] == "tester"
    assert record["devices"]["simulated_part"] == "nut:3:hole"
    assert record["devices"]["heater"].startswith("SIMLAB,HEATER")
    assert record["steps"]["ir"]["heater_off_confirmed"] and record["failures"] == []

    scene = PART.scene()
    # the arm went above the part found in the IR image, within a millimetre of where it really lies
    located = np.array(record["steps"]["arm"]["part_bench_xy_mm"])
    assert np.linalg.norm(located - scene.part.pose_xy_mm) < 1.0 and record["steps"]["arm"]["placement"] == \
        "nominal geometry"
    # IR amplitude = the physics of this part (with its hole)
    import tifffile

    maps = thermal_maps(scene, camera_for("ir", "small"))
    amplitude = tifffile.imread(folder / "ir_amplitude.tiff")
    on = maps.amplitude > 1.0
    assert np.median(np.abs(amplitude[on] - maps.amplitude[on]) / maps.amplitude[on]) < 0.03
    # RGB = this part seen from where the arm really holds the camera when it stopped
    from mulsen.hardware_mocks.rig import rgb_view

    view = rgb_view(record["steps"]["arm"]["reached_pose"], "small")
    reference, _ = render_rgb(scene, view, np.random.default_rng(1))
    assert np.median(np.abs(read_rgb(folder / "rgb.png").astype(int) - reference.astype(int))) <= 4
    # both scans = the scanner's two passes over this part, upright then flipped
    expected_a, expected_b, _ = scan_pair(PART, "small")
    for name, expected in (("scan_a.stl", expected_a), ("scan_b.stl", expected_b)):
        scan = read_scan(folder / name)
        np.testing.assert_allclose(_triangles(scan.vertices, scan.faces),
                                   _triangles(expected.vertices, expected.faces), atol=2e-4)
    assert _heater_is_off(state)
    script = [json.loads(x)["line"] for x in (state.state_dir / "robot_script.jsonl").read_text().splitlines()]
    assert [line.split("(")[0] for line in script] == ["movel"]


def test_a_captured_sample_is_never_overwritten(tmp_path: Path, bench):
    state, _ = bench
    (tmp_path / "captures" / "nut" / "002").mkdir(parents=True)
    with pytest.raises(MulsenError, match="already captured"):
        _session(tmp_path, state).capture(SampleRequest("nut", "002"))


def _fault_at(step, action):
    def announce(text):
        if text.endswith(f"step {step} ({['ir', 'arm', 'rgb', 'scans'].index(step) + 1}/4)"):
            action()
    return announce


@pytest.mark.slow
def test_controller_hangup_at_the_arm_step_then_resume(tmp_path: Path, bench):
    state, processes = bench
    request = SampleRequest("nut", "003", part=str(PART))
    hang_up = _fault_at("arm", lambda: os.kill(processes["robot"].process.pid, signal.SIGUSR2))
    with pytest.raises(DeviceError, match=r"robot 127.0.0"):
        _session(tmp_path, state, hang_up).capture(request)
    final, partial = tmp_path / "captures/nut/003", tmp_path / "captures/.partial/nut/003"
    assert not final.exists() and (partial / "ir_amplitude.tiff").exists()
    progress = json.loads((partial / "progress.json").read_text())
    assert list(progress["steps"]) == ["ir"] and progress["failures"][0]["step"] == "arm"
    assert _heater_is_off(state)
    edges_before = len(read_edge_log(state.heater_edge_log))
    with pytest.raises(MulsenError, match=r"interrupted capture .*steps done: ir\).*--resume"):
        _session(tmp_path, state).capture(request)
    folder = _session(tmp_path, state).capture(request, resume=True)
    record = json.loads((folder / "capture.json").read_text())
    assert len(record["resumed"]) == 1 and record["failures"][0]["step"] == "arm"
    assert len(read_edge_log(state.heater_edge_log)) == edges_before  # the IR step was not heated twice


@pytest.mark.slow
def test_ctrl_c_and_disk_full_leave_no_sample_and_the_heater_off(tmp_path: Path, bench, monkeypatch):
    state, _ = bench

    def ctrl_c():
        raise KeyboardInterrupt

    with pytest.raises(CaptureInterrupted) as stopped:  # a KeyboardInterrupt that knows what is kept
        _session(tmp_path, state, _fault_at("rgb", ctrl_c)).capture(SampleRequest("nut", "004"))
    assert not (tmp_path / "captures/nut/004").exists() and _heater_is_off(state)
    assert isinstance(stopped.value, KeyboardInterrupt)
    assert (stopped.value.step, stopped.value.kept, stopped.value.heater_off) == ("rgb", ["ir", "arm"], True)
    assert stopped.value.summary() == (f"nut/004 interrupted during the rgb step; steps kept: ir, arm (in "
                                       f"{tmp_path / 'captures/.partial/nut/004'}); heater confirmed off")

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("mulsen.acquisition.steps.write_rgb", full)
    with pytest.raises(MulsenError, match="writing the rgb step failed: No space left on device"):
        _session(tmp_path, state).capture(SampleRequest("nut", "005"))
    assert not (tmp_path / "captures/nut/005").exists() and _heater_is_off(state)
    discarded = _session(tmp_path, state)
    monkeypatch.undo()
    discarded.capture(SampleRequest("nut", "005"), discard=True)
    assert (tmp_path / "captures/nut/005/capture.json").exists()


@pytest.mark.slow
def test_a_dead_scanner_times_out_and_a_dead_heater_is_reported(tmp_path: Path, bench):
    state, processes = bench
    with pytest.raises(MulsenError, match="0 of 2 scans appeared within 1 s"):
        _session(tmp_path, state, _fault_at("scans", processes["scanner"].kill), scan_timeout_s=1.0).capture(
            SampleRequest("nut", "006"))
    assert not (tmp_path / "captures/nut/006").exists()
    with pytest.raises(DeviceError, match="heater"):
        _session(tmp_path, state, _fault_at("ir", processes["heater"].kill)).capture(SampleRequest("nut", "007"))
    assert not (tmp_path / "captures/nut/007").exists()


@pytest.mark.slow
def test_batch_command_captures_a_plan_and_resumes(tmp_path: Path, bench, capsys):
    from mulsen.cli import main

    state, _ = bench
    plan = tmp_path / "plan.csv"
    plan.write_text("category,sample_id,part\nnut,101,nut:5\ncapsule,102,capsule:6:crack\n")
    args = ["capture", "batch", "--plan", str(plan), "--out", str(tmp_path / "captures"), "--sim", str(state.state_dir),
            "--frequency", "0.5", "--periods", "3", "--fps", "10", "--scan-timeout", "20"]
    os.environ["MULSEN_NO_PROGRESS"] = "1"
    assert main(args) == 0
    assert "2 captured, 0 already present" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 captured, 2 already present" in capsys.readouterr().out
    record = json.loads((tmp_path / "captures/capsule/102/capture.json").read_text())
    assert record["devices"]["simulated_part"] == "capsule:6:crack"
    # each capture came with its contact sheet (listed in capture.json), and the batch with their index
    assert "preview.png" in record["files"]
    sheet = np.asarray(Image.open(tmp_path / "captures/capsule/102/preview.png").convert("RGB"), float)
    assert sheet.shape[1] > 4 * sheet.shape[0] and sheet.std() > 20  # five panels in a row, not blank
    index = tmp_path / "captures" / "index.html"
    assert 'src="capsule/102/preview.png"' in index.read_text() and 'src="nut/101/preview.png"' in index.read_text()
    if chromium() is not None:
        with open_page(index, tmp_path / "chromium") as page:
            assert page.problems == []
            shown = page.evaluate(IMAGES_JS)
        assert len(shown) == 2 and all(i["complete"] and i["stats"]["std"] > 20 for i in shown)
    plan.write_text("category,sample_id\nnut,1\nnut,1\n")
    assert main(args) == 2
    assert "planned twice" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_during_capture_sample_says_what_is_kept_and_how_to_resume(tmp_path: Path, bench, capsys,
                                                                           monkeypatch):
    from mulsen.cli import main

    state, _ = bench

    def ctrl_c(*_args, **_kwargs):
        raise KeyboardInterrupt

    args = ["capture", "sample", "--out", str(tmp_path / "captures"), "--category", "nut", "--sample-id", "31",
            "--sim", str(state.state_dir), "--frequency", "0.5", "--periods", "3", "--fps", "10"]
    monkeypatch.setattr("mulsen.acquisition.session.record_rgb", ctrl_c)
    assert main(args) == 130
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("nut/31 interrupted during the rgb step; steps kept: ir, arm (in ")
    assert err[0].endswith("heater confirmed off")
    assert err[1] == "resume with: mulsen " + " ".join(args) + " --resume"
    assert err[2] == "error: interrupted"
    monkeypatch.undo()
    edges = len(read_edge_log(state.heater_edge_log))
    assert main(err[1].split()[3:]) == 0  # the command as printed (no quoting needed here) finishes the sample
    assert (tmp_path / "captures/nut/31/capture.json").exists()
    assert len(read_edge_log(state.heater_edge_log)) == edges  # the kept IR step was not heated again


def test_a_device_that_does_not_open_leaves_no_partial_sample(tmp_path: Path, bench):
    """Pre-flight: the robot simulator is gone before the capture starts; nothing heats, nothing is written."""
    state, processes = bench
    processes["robot"].kill()
    edges_before = len(read_edge_log(state.heater_edge_log)) if state.heater_edge_log.exists() else 0
    with pytest.raises(MulsenError):
        _session(tmp_path, state).capture(SampleRequest("nut", "001", part=str(PART)))
    assert not (tmp_path / "captures" / ".partial").exists()
    edges = read_edge_log(state.heater_edge_log) if state.heater_edge_log.exists() else []
    assert not any(edge["on"] for edge in edges[edges_before:])  # the heater never switched on


@pytest.mark.slow
def test_capture_sample_with_detect_judges_the_part_right_after_capture(tmp_path: Path, bench, capsys):
    from mulsen.cli import main
    from mulsen.dataset.reader import MulsenDataset
    from mulsen.detection.config import DetectorConfig
    from mulsen.detection.inspector import Detector
    from mulsen.hardware_mocks.world.generate import GenerationConfig, generate_dataset

    state, _ = bench
    generate_dataset(tmp_path / "ds", GenerationConfig(categories=("nut",), train=8, test_good=1, test_bad=1, seed=3))
    Detector.fit(MulsenDataset(tmp_path / "ds"), "nut", DetectorConfig(min_holdout=2)).save(tmp_path / "models/nut")
    args = ["capture", "sample", "--out", str(tmp_path / "captures"), "--sim", str(state.state_dir),
            "--frequency", "0.5", "--periods", "3", "--fps", "10", "--scan-timeout", "20",
            "--category", "nut", "--sample-id", "201", "--part", "nut:3:hole", "--detect", str(tmp_path / "models")]
    os.environ["MULSEN_NO_PROGRESS"] = "1"
    assert main(args) == 0
    assert "nut/201: anomalous" in capsys.readouterr().out
    verdict = json.loads((tmp_path / "captures/_detections/verdicts.jsonl").read_text().splitlines()[0])
    assert verdict["capture"] == "nut/201" and verdict["decision"] == "anomalous" and verdict["reliable"]
    assert (tmp_path / "captures/_detections/nut/201/report.json").exists()
    assert (tmp_path / "captures/nut/201/pointcloud.stl").exists()  # merged on the way
    # no model for the category: refused before any device moves
    args[args.index("--category") + 1], args[args.index("--sample-id") + 1] = "capsule", "202"
    assert main(args) == 2
    assert "models/capsule" in capsys.readouterr().err
    assert not (tmp_path / "captures" / ".partial").exists()


def test_capture_check_lists_every_device_and_every_problem(tmp_path: Path, bench, capsys):
    from mulsen.cli import main

    state, processes = bench
    assert main(["capture", "check", "--sim", str(state.state_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:5]] == ["ok   heater", "ok   ir camera", "ok   rgb camera",
                                                           "ok   robot", "ok   scanner exports"]
    assert "output confirmed off" in lines[0] and "one 160x120 Mono16 frame" in lines[1]
    assert lines[-1] == "5 of 5 devices ok"
    processes["robot"].kill()  # one dead device: reported, and the others still checked
    assert main(["capture", "check", "--sim", str(state.state_dir)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].startswith("FAIL robot: ") and all(line.startswith("ok") for line in lines[:3] + lines[4:5])
    assert lines[-1] == "4 of 5 devices ok; failed: robot"


def test_bench_template_is_a_bench_file_with_comments(tmp_path: Path, capsys):
    from mulsen.acquisition.bench import BenchFile, RealBench
    from mulsen.cli import main

    out = tmp_path / "bench.json"
    assert main(["capture", "bench-template", str(out)]) == 0
    text = json.loads(out.read_text())
    assert text["#heater_port"] and text["ir_camera"]["#"]  # commented
    loaded = BenchFile.read(out)  # the comments are ignored, every field is there
    assert loaded.heater_port == "/dev/ttyUSB0" and loaded.rgb_camera.pixel_format == "BayerRG8"
    assert main(["capture", "bench-template", str(out)]) == 2  # never overwritten
    # filled in with devices that are not there: every one fails with its reason, in one run
    text.update(heater_port=str(tmp_path / "no-tty"), robot_host="127.0.0.254", scan_export_dir=str(tmp_path / "x"))
    for camera in ("ir_camera", "rgb_camera"):
        text[camera]["cti"] = str(tmp_path / "missing.cti")
    out.write_text(json.dumps(text))
    capsys.readouterr()
    RealBench.load(out)
    assert main(["capture", "check", "--bench", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and all(line.startswith("FAIL ") for line in lines[:5])
    assert "no-tty" in lines[0] and "missing.cti" in lines[1] and "does not exist" in lines[4]
    assert lines[-1].startswith("0 of 5 devices ok")
