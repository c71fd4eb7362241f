"""Lock-in demodulation (pure functions) and the IRBIS export reader."""

from pathlib import Path

import numpy as np
import pytest

from mulsen.acquisition.irbis import read_irbis_export
from mulsen.acquisition.lockin import (
    LockInAccumulator,
    LockInWindow,
    amplitude_to_gray,
    demodulate,
    design_rows,
    fit_edge_train,
    mulsen_ir_image,
)
from mulsen.core.errors import DataFormatError
from mulsen.hardware_mocks.world import sample_part
from mulsen.hardware_mocks.world.defects import Defect
from mulsen.hardware_mocks.world.scene import Scene, camera_for
from mulsen.hardware_mocks.world.thermal import HeatingSchedule, render_ir_sequence, thermal_length_mm, thermal_maps
from tests.conftest import REAL_FIXTURES

IRBIS = REAL_FIXTURES / "thermal" / "lockin_irbis"


def test_streaming_fit_equals_batch_least_squares_on_irregular_times():
    rng = np.random.default_rng(0)
    window = LockInWindow(0.2, t_on=1.0, settle_periods=1, periods=3)
    times = np.sort(rng.uniform(0, 22, 300))  # irregular spacing, some outside the window
    frames = rng.integers(29000, 31000, (len(times), 6, 5)).astype(np.uint16)
    accumulator = LockInAccumulator((6, 5), window, scale=0.01, block=7)  # odd block: partial flushes
    for frame, t in zip(frames, times, strict=True):
        accumulator.add(frame, t)
    result = accumulator.result()
    keep = window.contains(times)
    assert result.frames_used == keep.sum()
    coef, *_ = np.linalg.lstsq(design_rows(times[keep], window), frames[keep].reshape(keep.sum(), -1) * 0.01,
                               rcond=None)
    amplitude = np.hypot(coef[3], coef[4]).reshape(6, 5)
    np.testing.assert_allclose(result.amplitude, amplitude, rtol=1e-4, atol=1e-6)
    phase = (np.rad2deg(np.arctan2(-coef[4], coef[3])) + 90 + 180) % 360 - 180
    np.testing.assert_allclose(result.phase_deg, phase.reshape(6, 5), atol=1e-2)


def test_pure_sinusoid_gives_its_amplitude_and_phase_under_strong_drift():
    f, t_on = 0.25, 0.5
    window = LockInWindow(f, t_on, settle_periods=1, periods=5)
    times = np.arange(0, 30, 0.04)
    true_phase = np.deg2rad(-60.0)
    # flux fundamental is sin(w t'); response lags by 60 deg -> sin(w t' - 60 deg) = cos(w t' - 90 - 60)
    signal = 3.0 * np.sin(2 * np.pi * f * (times - t_on) + true_phase) + 5.0 + 0.2 * times + 0.004 * times ** 2
    frames = (np.full((len(times), 2, 2), 1.0) * signal[:, None, None])
    result = demodulate(frames, times, window)
    np.testing.assert_allclose(result.amplitude, 3.0, rtol=1e-6)
    np.testing.assert_allclose(result.phase_deg, -60.0, atol=1e-4)
    np.testing.assert_allclose(result.drift_per_s, 0.2 + 2 * 0.004 * 0.5 * (window.start + window.stop), rtol=1e-6)


def _defect_scene():
    part = sample_part("cube", np.random.default_rng(2), pose_jitter_mm=0, yaw_jitter_deg=0)
    mu = thermal_length_mm(part.spec.thermal.diffusivity_m2s, part.spec.thermal.lockin_hz)
    defect = Defect("detachment_inside", frozenset({"infrared"}), (2.0, -1.5), radius=3.0, ir_radius=3.0,
                    depth_mm=0.4 * mu)
    return Scene(part, [defect])


@pytest.mark.parametrize("drift_k_per_s", [0.0, 0.05])
def test_simulated_subsurface_defect_is_recovered_with_physics_values(drift_k_per_s):
    maps = thermal_maps(_defect_scene(), camera_for("ir", "small"))
    f = maps.frequency_hz
    schedule = HeatingSchedule(f, t_on=1.0)
    window = LockInWindow(f, schedule.t_on, settle_periods=1, periods=5)
    times = np.arange(0, window.stop + 0.5, 1 / 10.0)
    frames = render_ir_sequence(maps, schedule, times, np.random.default_rng(1), drift_k_per_s=drift_k_per_s)
    result = demodulate(frames, times, window, scale=0.01)
    on = maps.amplitude > 1.0
    amplitude_error = np.abs(result.amplitude[on] - maps.amplitude[on]) / maps.amplitude[on]
    phase_error = np.abs(result.phase_deg[on] - maps.phase_deg[on])
    assert np.median(amplitude_error) < 0.02 and np.median(phase_error) < 1.0
    defect_px = maps.mask
    assert np.abs(result.amplitude[defect_px] - maps.amplitude[defect_px]).mean() / \
        maps.amplitude[defect_px].mean() < 0.02
    assert np.abs(result.phase_deg[defect_px] - maps.phase_deg[defect_px]).mean() < 1.0
    sound = np.median(result.phase_deg[on & ~defect_px])
    assert sound == pytest.approx(-45.0, abs=1.0)
    contrast = np.where(on, np.abs(result.phase_deg - sound), 0)
    peak = np.unravel_index(np.argmax(contrast), contrast.shape)
    rows, cols = np.nonzero(defect_px)
    assert abs(peak[0] - rows.mean()) < 3 and abs(peak[1] - cols.mean()) < 3


def test_accumulator_rejects_frames_that_cannot_be_fitted():
    window = LockInWindow(0.5, 0.0, 0, 2)
    accumulator = LockInAccumulator((2, 2), window)
    for t in (0.1, 0.2, 0.3):
        accumulator.add(np.ones((2, 2)), t)
    with pytest.raises(ValueError, match="only 3 frames"):
        accumulator.result()
    with pytest.raises(ValueError, match="shape"):
        accumulator.add(np.ones((3, 2)), 0.5)


def test_edge_train_fit_averages_out_jitter():
    rng = np.random.default_rng(4)
    half = 1.25
    truth = 3.0 + half * np.arange(40)
    jittered = truth + rng.normal(0, 0.02, 40)
    onset, fitted_half = fit_edge_train(jittered, float(np.median(np.diff(jittered))), fit_period=True)
    assert onset == pytest.approx(3.0, abs=0.015) and fitted_half == pytest.approx(half, abs=1e-3)
    onset, _ = fit_edge_train(truth + rng.normal(0, 0.02, 40), half)
    assert onset == pytest.approx(3.0, abs=0.01)


def test_gray_mapping_is_fixed_and_resampled_to_mulsen_size():
    amplitude = np.array([[0.0, 2.0], [4.0, 9.0]])
    np.testing.assert_array_equal(amplitude_to_gray(amplitude, 4.0), [[0, 128], [255, 255]])
    big = np.full((240, 320), 2.0, np.float32)
    image = mulsen_ir_image(big, 4.0)
    assert image.shape == (480, 640) and image.dtype == np.uint8 and np.all(image == 128)


@pytest.mark.skipif(not IRBIS.exists(), reason="shared real fixtures absent")
def test_real_irbis_exports_load_with_their_header_values():
    amp = read_irbis_export(IRBIS / "QF01_FreqSweep_reverse_Results_0008_Period0001_Amp.txt")
    phase = read_irbis_export(IRBIS / "QF01_FreqSweep_reverse_Results_0008_Period0001_Phase.txt")
    for image in (amp, phase):
        assert image.data.shape == (164, 1280) and image.data.dtype == np.float32
        assert image.lockin_frequency_hz == pytest.approx(7.547)
        assert image.frame_rate_hz == 400.0 and image.periods == 454
        assert image.settings["LIT.FramesPerPeriod"] == "53"
    assert amp.content == "Amplitude" and amp.unit == "mK"
    assert phase.content == "Phase" and phase.unit == "°"  # a Latin-1 0xB0 byte in the file
    assert amp.data.min() >= 0 and np.abs(phase.data).max() <= 180
    assert amp.data[0, :3].tolist() == pytest.approx([0.907, 1.458, 0.405])
    assert phase.data[0, :2].tolist() == pytest.approx([-41.796, 163.132])


@pytest.mark.skipif(not IRBIS.exists(), reason="shared real fixtures absent")
def test_damaged_irbis_exports_are_refused_with_the_reason(tmp_path: Path):
    text = (IRBIS / "QF01_FreqSweep_reverse_Results_0008_Period0001_Amp.txt").read_bytes().decode("latin-1")
    lines = text.splitlines()
    cases = {
        "truncated.txt": ("\n".join(lines[:-5]), "rows"),
        "narrow.txt": ("\n".join(lines[:-1] + [";".join(lines[-1].split(";")[:-3])]), "bad number|wide"),
        "nodata.txt": (text.split("[Data]")[0], "no \\[Data\\]"),
        "other.txt": ("hello\n", "not an IRBIS export"),
        "badnumber.txt": ("\n".join(lines[:-1] + [lines[-1].replace(";", ";x", 1)]), "bad number"),
    }
    for name, (content, problem) in cases.items():
        path = tmp_path / name
        path.write_bytes(content.encode("latin-1"))
        with pytest.raises(DataFormatError, match=problem) as info:
            read_irbis_export(path)
        assert name in str(info.value)
