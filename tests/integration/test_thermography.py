"""Heater protocol and driver (pyserial on a pty), and lock-in thermography through the simulators."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mulsen.acquisition.clock import ScaledClock
from mulsen.acquisition.heater import OVERTEMPERATURE, HeaterRefused, SerialHeater, open_heater
from mulsen.acquisition.steps import record_ir
from mulsen.acquisition.thermography import HeatingStatus, LockInSettings, run_lockin
from mulsen.core.atomic import atomic_folder
from mulsen.core.errors import DeviceError, MulsenError
from mulsen.hardware_mocks.devices import SimBench, running_simulators
from mulsen.hardware_mocks.heater_sim import HeaterModel, read_edge_log
from mulsen.hardware_mocks.processes import SimulatorProcess
from mulsen.hardware_mocks.sim_cameras import BenchPart, thermal_camera

pytest.importorskip("serial")
pytest.importorskip("harvesters")

SCALE = 20.0
PART = BenchPart("cube", 2, "detachment_inside")
FAST = LockInSettings(frequency_hz=0.5, periods=4, settle_periods=1, frame_rate_hz=10)


def test_protocol_model_answers_every_command_and_error():
    edges = []
    model = HeaterModel(on_edge=lambda t, on, p, why: edges.append((t, on, why)), watchdog_s=5.0)
    assert model.handle("*IDN?", 0.0) == "SIMLAB,HEATER,SIM0001,1.0"
    assert model.handle("outp on\r", 1.0) == "OK" and model.handle("OUTP?", 1.1) == "1"
    assert model.handle("MEAS:POW?", 1.2) == "500.0"
    assert model.handle("SOUR:POW 40", 1.3) == "OK" and model.handle("SOUR:POW?", 1.4) == "40"
    assert model.handle("MEAS:POW?", 1.5) == "200.0"
    assert model.handle("EVT?", 1.6) == "1.000000,1"
    assert model.handle("SOUR:POW 140", 1.7) == 'ERR -222,"Data out of range"'
    assert model.handle("SOUR:POW abc", 1.8) == 'ERR -100,"Command error"'
    assert model.handle("FOO", 1.9) == 'ERR -100,"Command error"'
    assert model.handle("SYST:ERR?", 2.0) == '-222,"Data out of range"'
    assert model.handle("SYST:ERR?", 2.0) == '-100,"Command error"'
    assert model.handle("SYST:ERR?", 2.0) == '-100,"Command error"'
    assert model.handle("SYST:ERR?", 2.0) == '0,"No error"'
    assert model.handle("SYST:TIME?", 2.5) == "2.500000"
    assert float(model.handle("MEAS:TEMP?", 2.6)) > 23.0  # it heats while on
    assert model.handle("*RST", 3.0) == "OK" and model.handle("OUTP?", 3.0) == "0"
    # device-timed modulation: edges every half period on the device clock
    assert model.handle("SOUR:MOD:FREQ 0.5", 4.0) == "OK" and model.handle("SOUR:MOD:SHAP SQU", 4.0) == "OK"
    assert model.handle("SOUR:MOD:STAT ON", 4.0) == "OK"
    for t in np.arange(4.0, 8.0, 0.05):
        model.handle("OUTP?", float(t))
    mod = [t for t, _, why in edges if why == "modulation"]
    np.testing.assert_allclose(np.diff(mod), 1.0, atol=1e-9)
    assert model.handle("SOUR:MOD:STAT OFF", 8.0) == "OK" and model.handle("OUTP?", 8.0) == "0"
    # the watchdog switches off a heater whose host went silent
    model.handle("OUTP ON", 10.0)
    model.advance(16.0)
    assert not model.output and edges[-1][2] == "watchdog" and edges[-1][0] == 16.0


def test_overtemperature_interlock_refuses_and_switches_off():
    model = HeaterModel(temperature_c=95.0, temp_limit_c=80.0, watchdog_s=0)
    assert model.handle("OUTP ON", 0.0) == 'ERR -300,"Overtemperature"'
    cool = HeaterModel(temp_limit_c=60.0, watchdog_s=0)
    assert cool.handle("OUTP ON", 0.0) == "OK"
    cool.advance(600.0)  # 60 K rise at full power crosses the 60 °C limit
    assert not cool.output


@pytest.fixture
def heater_sim(tmp_path: Path):
    """``start(*args, scale=SCALE)`` -> (simulator, shared clock, edge log)."""
    started: list[SimulatorProcess] = []

    def start(*extra: str, scale: float = SCALE):
        clock = ScaledClock(scale)
        log = tmp_path / f"edges{len(started)}.jsonl"
        sim = SimulatorProcess("mulsen.hardware_mocks.heater_sim", ["--edge-log", str(log), "--time-scale", str(scale),
                                                              "--clock-epoch", repr(clock.epoch), *extra])
        started.append(sim.start())
        return sim, clock, log

    yield start
    for sim in started:
        sim.stop()


def test_pyserial_driver_over_a_pty(heater_sim):
    sim, clock, _ = heater_sim("--initial-temp", "90", "--temp-limit", "80")
    with open_heater(sim.endpoint, clock) as heater:
        assert heater.identify().startswith("SIMLAB,HEATER")
        with pytest.raises(HeaterRefused, match="error -300 Overtemperature") as info:
            heater.switch(True)
        assert info.value.code == OVERTEMPERATURE
        assert heater.errors() == ['-300,"Overtemperature"']
        assert abs(heater.clock_offset()) < 0.05  # one clock shared by both processes
    with pytest.raises(DeviceError, match="cannot open the serial port"):
        SerialHeater("/dev/does-not-exist")


def test_garbled_replies_are_retried_and_silence_times_out(heater_sim, caplog):
    sim, clock, _ = heater_sim("--garble-every", "2")
    heater = SerialHeater(sim.endpoint, clock, timeout_s=0.3)
    for _ in range(4):
        assert heater.query("OUTP?") == "0"
    assert "garbled reply" in caplog.text
    os.kill(sim.process.pid, signal.SIGSTOP)  # the controller hangs
    try:
        t0 = time.monotonic()
        with pytest.raises(DeviceError, match=r"no reply within 0.3 s to 'OUTP\?' after 3 tries"):
            heater.query("OUTP?")
        assert time.monotonic() - t0 < 1.5
    finally:
        os.kill(sim.process.pid, signal.SIGCONT)
        heater.close()


def test_controller_watchdog_switches_off_when_the_host_goes_silent(heater_sim):
    sim, clock, log = heater_sim("--watchdog", "2")
    heater = SerialHeater(sim.endpoint, clock)
    heater.switch(True)
    time.sleep(4.0 / SCALE)  # 4 simulated seconds without a word
    assert not heater.is_on()
    assert read_edge_log(log)[-1]["reason"] == "watchdog"
    heater.close()


def test_lockin_through_the_simulators_recovers_the_physics(heater_sim):
    # 10x simulated time leaves the camera loop real-time margin on a loaded 2-core machine
    sim, clock, log = heater_sim(scale=10.0)
    seen: list[HeatingStatus] = []
    with open_heater(sim.endpoint, clock) as heater, thermal_camera(PART, clock, log, "small") as camera:
        capture = run_lockin(camera, heater, clock, FAST, on_status=seen.append)
        assert not heater.is_on()
    # the operator's view: every period counted, the heater seen on and off, the wall clock (not the 10x one)
    total = FAST.periods + FAST.settle_periods
    assert seen[0].period == 0 and {s.period for s in seen} == set(range(total + 1))
    assert any(s.heater_on for s in seen) and not all(s.heater_on for s in seen)
    assert all(s.settling == (1 <= s.period <= FAST.settle_periods) for s in seen)
    assert seen[-1].elapsed_real_s == pytest.approx(FAST.heating_s / 10.0, rel=0.1)
    assert seen[-1].remaining_real_s < 0.2 and seen[0].remaining_real_s > 0.8 * FAST.heating_s / 10.0
    assert seen[-1].frames == len(capture.frame_times)
    assert seen[-1].fps == pytest.approx(FAST.frame_rate_hz, rel=0.1)
    # the live estimate is the lock-in amplitude of the central quarter's mean signal
    h, w = capture.result.amplitude.shape
    centre = (slice(h // 4, h - h // 4), slice(w // 4, w - w // 4))
    phasor = capture.result.amplitude[centre] * np.exp(1j * np.radians(capture.result.phase_deg[centre]))
    assert seen[-1].amplitude == pytest.approx(abs(phasor.mean()), rel=0.05)
    assert seen[-1].snr > 10 and "heater" in seen[-1].text() and f"period {total}/{total}" in seen[-1].text()
    device_edges = read_edge_log(log)
    on_times = np.array([e["t"] for e in device_edges if e["on"]])
    frame_period = 1 / FAST.frame_rate_hz
    # the heater switched at f: every edge within one frame period of the planned grid
    planned = on_times[0] + np.arange(len(on_times)) / FAST.frequency_hz
    assert len(on_times) == FAST.periods + FAST.settle_periods
    assert np.abs(on_times - planned).max() < frame_period
    assert device_edges[-1]["on"] is False
    host = np.array([t for t, on in capture.edges if on])
    assert np.abs(host - on_times).max() < 0.01  # our log = the controller's edges on the shared clock
    maps, result = camera.maps, capture.result
    on = maps.amplitude > 1.0
    # the 2 % / 1° physics bounds hold for the demodulator itself (test_lockin.py); through the real
    # drivers, host scheduling jitter of the simulated clock may cost a little more amplitude
    assert np.median(np.abs(result.amplitude[on] - maps.amplitude[on]) / maps.amplitude[on]) < 0.03
    assert np.median(np.abs(result.phase_deg[on] - maps.phase_deg[on])) < 1.0
    sound = np.median(result.phase_deg[on & ~maps.mask])
    contrast = np.where(on, np.abs(result.phase_deg - sound), 0)
    peak = np.unravel_index(np.argmax(contrast), contrast.shape)
    rows, cols = np.nonzero(maps.mask)
    assert abs(peak[0] - rows.mean()) < 3 and abs(peak[1] - cols.mean()) < 3


def test_host_timed_edges_land_at_f_within_one_frame_period(heater_sim):
    sim, clock, log = heater_sim(scale=5.0)  # host timing: keep real-time jitter small against the frame period
    settings = LockInSettings(frequency_hz=0.5, periods=3, settle_periods=1, frame_rate_hz=10, heater_timing="host")
    with open_heater(sim.endpoint, clock) as heater, thermal_camera(PART, clock, log, "small") as camera:
        capture = run_lockin(camera, heater, clock, settings)
    device = np.array([e["t"] for e in read_edge_log(log)])
    assert len(device) == 2 * (settings.periods + settings.settle_periods)
    planned = device[0] + np.arange(len(device)) * 0.5 / settings.frequency_hz
    assert np.abs(device - planned).max() < 1 / settings.frame_rate_hz
    assert capture.result.frames_used >= 0.5 * settings.periods / settings.frequency_hz * settings.frame_rate_hz


def test_killing_the_heater_mid_run_raises_and_leaves_no_output(heater_sim, tmp_path: Path):
    sim, clock, log = heater_sim()
    out = tmp_path / "capture"
    killer = threading.Timer(0.3, sim.kill)
    with pytest.raises(DeviceError, match=r"heater .*(connection lost|no reply)"), atomic_folder(out) as folder, \
            open_heater(sim.endpoint, clock) as heater, thermal_camera(PART, clock, log, "small") as camera:
        killer.start()
        record_ir(camera, heater, clock, FAST, folder, save_raw=True, show_progress=False)
    killer.join()
    assert not out.exists() and not list(tmp_path.glob(".capture*"))


@pytest.mark.slow
def test_ctrl_c_during_heating_switches_off_and_writes_nothing(tmp_path: Path):
    state = tmp_path / "bench"
    out = tmp_path / "ir"
    with running_simulators(state, PART, time_scale=5.0, image_size="small") as (bench, _):
        env = {**os.environ, "MULSEN_NO_PROGRESS": "1"}
        # Ctrl-C as a terminal delivers it: a test run started in the background of a non-interactive shell
        # inherits SIGINT ignored, and so would the command (Python then installs no KeyboardInterrupt handler)
        proc = subprocess.Popen([sys.executable, "-m", "mulsen.cli", "capture", "ir", str(out), "--sim", str(state),
                                 "--frequency", "0.5", "--periods", "20", "--fps", "10"], env=env,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 30
        while not any(e["on"] for e in read_edge_log(bench.heater_edge_log)):
            assert time.monotonic() < deadline and proc.poll() is None, "heating never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130 and err.strip().endswith("error: interrupted"), err
        assert f"capture ir interrupted: nothing written ({out} does not exist); heater confirmed off" in err
        assert "Traceback" not in err
        assert not out.exists() and not list(tmp_path.glob(".ir*"))
        assert read_edge_log(bench.heater_edge_log)[-1]["on"] is False
        with open_heater(bench.heater_port, bench.clock()) as heater:
            assert not heater.is_on()


@pytest.mark.slow
def test_capture_ir_command_writes_tagged_tiffs_and_the_mulsen_png(tmp_path: Path):
    import tifffile

    from mulsen.cli import main
    from mulsen.dataset.formats import read_ir

    with running_simulators(tmp_path / "bench", PART, time_scale=SCALE, image_size="small"):
        assert main(["capture", "ir", str(tmp_path / "ir"), "--sim", str(tmp_path / "bench"), "--frequency", "0.5",
                     "--periods", "4", "--fps", "10", "--save-raw"]) == 0
        assert main(["capture", "ir", str(tmp_path / "ir"), "--sim", str(tmp_path / "bench")]) == 2  # no overwrite
        assert main(["capture", "rgb", str(tmp_path / "rgb"), "--sim", str(tmp_path / "bench")]) == 0
    folder = tmp_path / "ir"
    with tifffile.TiffFile(folder / "ir_amplitude.tiff") as tif:
        amplitude = tif.asarray()
        tags = tif.shaped_metadata[0]
    assert amplitude.dtype == np.float32 and amplitude.shape == (120, 160)
    assert tags["f_lock_hz"] == 0.5 and tags["n_periods"] == 4 and tags["unit"] == "K"
    gray = read_ir(folder / "infrared.png")
    assert gray.shape == (480, 640)
    record = json.loads((folder / "ir_lockin.json").read_text())
    assert len(record["edges"]) == 10 and record["heater_off_confirmed"]
    frames = tifffile.imread(folder / "ir_frames.tiff")
    assert frames.dtype == np.uint16 and frames.shape[1:] == (120, 160)
    assert len(np.loadtxt(folder / "ir_frames.times.txt")) == frames.shape[0] == record["frames"]["count"]
    assert (tmp_path / "rgb" / "rgb.png").exists()
    # the simulators stopped with their run: no state points at them any more
    assert not (tmp_path / "bench" / "devices.json").exists() and not (tmp_path / "bench" / "heater.tty").exists()
    with pytest.raises(MulsenError, match="no simulator state"):
        SimBench.load(tmp_path / "bench")
