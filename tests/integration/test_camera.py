"""GenICam camera driver: pixel decoding on synthetic buffers, and harvesters against TLSimu.cti."""

from pathlib import Path

import numpy as np
import pytest

from mulsen.acquisition.camera import CameraConfig, GenICamCamera, decode_pixels, find_producer, simulator_producer
from mulsen.core.errors import DeviceError, MulsenError
from mulsen.hardware_mocks.sim_cameras import IR_SERIAL, RGB_SERIAL, BenchPart, encode_pixels, rgb_camera

harvesters = pytest.importorskip("harvesters")

COLOUR = (200, 90, 30)


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    channel = {"R": 0, "G": 1, "B": 2}
    raw = np.empty(rgb.shape[:2], rgb.dtype)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        raw[dy::2, dx::2] = rgb[dy::2, dx::2, channel[pattern[k]]]
    return raw


@pytest.mark.parametrize(("name", "pattern"), [("RG", "RGGB"), ("GR", "GRBG"), ("GB", "GBRG"), ("BG", "BGGR")])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_every_bayer_order_demosaics_to_the_true_colour(name, pattern, dtype):
    rgb = np.empty((12, 16, 3), dtype)
    rgb[:] = np.array(COLOUR, dtype) * (1 if dtype == np.uint8 else 257)
    bits = "8" if dtype == np.uint8 else "16"
    image = decode_pixels(_mosaic(rgb, pattern).reshape(-1), 16, 12, f"Bayer{name}{bits}")
    assert image.shape == (12, 16, 3) and image.dtype == dtype
    np.testing.assert_array_equal(image[2:-2, 2:-2], rgb[2:-2, 2:-2])


def test_mono16_and_colour_buffers_decode_with_row_padding_stripped():
    mono = np.arange(6 * 5, dtype=np.uint16).reshape(6, 5)
    padded = np.concatenate([mono, np.full((6, 3), 65535, np.uint16)], axis=1)  # stride 8 > width 5
    out = decode_pixels(padded.reshape(-1), 5, 6, "Mono16")
    assert out.dtype == np.uint16 and np.array_equal(out, mono)
    rgb = np.random.default_rng(0).integers(0, 255, (4, 3, 3), dtype=np.uint8)
    assert np.array_equal(decode_pixels(rgb.reshape(-1), 3, 4, "RGB8"), rgb)
    assert np.array_equal(decode_pixels(rgb[..., ::-1].reshape(-1), 3, 4, "BGR8"), rgb)
    bgra = np.concatenate([rgb[..., ::-1], np.full((4, 3, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(decode_pixels(bgra.reshape(-1), 3, 4, "BGRa8"), rgb)
    with pytest.raises(MulsenError, match="Mono12Packed is not supported"):
        decode_pixels(mono.reshape(-1), 5, 6, "Mono12Packed")
    with pytest.raises(MulsenError, match="does not hold"):
        decode_pixels(mono.reshape(-1)[:-1], 5, 6, "Mono16")
    raw = encode_pixels(rgb.repeat(2, 0).repeat(2, 1), "BayerRG8")
    assert decode_pixels(raw, 6, 8, "BayerRG8").shape == (8, 6, 3)


def test_harvesters_enumerates_selects_and_software_triggers_the_simulated_device():
    config = CameraConfig(cti=simulator_producer(), serial_number=RGB_SERIAL, roi=(0, 0, 320, 240),
                          pixel_format="RGB8", timeout_s=1.0)
    with GenICamCamera(config) as camera:
        frames = [camera.grab() for _ in range(3)]
        identity = camera.identity()
    assert [f.image.shape for f in frames] == [(240, 320, 3)] * 3
    assert all(f.image.dtype == np.uint8 and f.image.flags.owndata for f in frames)
    assert frames[0].timestamp < frames[1].timestamp < frames[2].timestamp
    assert not np.array_equal(frames[0].image, frames[1].image)  # TLSimu's ramp moves every frame
    assert identity["model"] == "TLSimuColor" and identity["serial_number"] == RGB_SERIAL
    assert identity["settings"]["TriggerSource"] == "Software"
    mono = CameraConfig(cti=simulator_producer(), serial_number=IR_SERIAL, roi=(0, 0, 64, 48))
    with GenICamCamera(mono) as camera:  # the device was released: it opens again
        assert camera.grab().image.shape == (48, 64)


def test_an_armed_trigger_that_never_fires_gives_a_clear_timeout():
    config = CameraConfig(name="ir camera", cti=simulator_producer(), serial_number=IR_SERIAL, roi=(0, 0, 64, 48),
                          timeout_s=0.3)
    with GenICamCamera(config) as camera, pytest.raises(DeviceError, match=r"ir camera: no frame within 0.3 s"):
        camera.fetch()


def test_device_and_producer_problems_are_one_line_errors(tmp_path: Path, monkeypatch):
    missing = tmp_path / "nothing.cti"
    with pytest.raises(DeviceError, match=f"{missing} does not exist"):
        GenICamCamera(CameraConfig(cti=str(missing))).__enter__()
    junk = tmp_path / "junk.cti"
    junk.write_bytes(b"not a shared library")
    with pytest.raises(DeviceError, match="not a loadable GenTL producer"):
        GenICamCamera(CameraConfig(cti=str(junk))).__enter__()
    with pytest.raises(DeviceError, match=r"no single device matches .*found: TLSimuMono SN_InterfaceA_0"):
        GenICamCamera(CameraConfig(cti=simulator_producer(), serial_number="NOPE")).__enter__()
    with pytest.raises(DeviceError, match="feature ExposureTime is not supported by TLSimuColor"):
        GenICamCamera(CameraConfig(cti=simulator_producer(), serial_number=RGB_SERIAL, exposure_us=8000)).__enter__()
    with pytest.raises(DeviceError, match="PixelFormat='Foo' is not offered"):
        GenICamCamera(CameraConfig(cti=simulator_producer(), serial_number=RGB_SERIAL, pixel_format="Foo")).__enter__()
    with pytest.raises(DeviceError, match="cannot set Width=7"):
        GenICamCamera(CameraConfig(cti=simulator_producer(), serial_number=RGB_SERIAL, roi=(0, 0, 7, 8))).__enter__()
    monkeypatch.delenv("GENICAM_GENTL64_PATH", raising=False)
    with pytest.raises(MulsenError, match="GENICAM_GENTL64_PATH"):
        find_producer(None)
    monkeypatch.setenv("GENICAM_GENTL64_PATH", str(Path(simulator_producer()).parent))
    assert find_producer(None).endswith(".cti")


def test_simulated_rgb_camera_shows_the_virtual_part_through_the_real_transport():
    from mulsen.acquisition.clock import ScaledClock
    from mulsen.hardware_mocks.world.render_rgb import render_rgb
    from mulsen.hardware_mocks.world.scene import camera_for

    part = BenchPart("nut", 3, "color")
    with rgb_camera(part, ScaledClock(), "small") as camera:
        frame = camera.grab()
        identity = camera.identity()
    assert frame.image.shape == (240, 320, 3) and frame.pixel_format == "BayerRG8"
    assert identity["model"] == "TLSimuColor" and "nut:3:color" in identity["simulated"]
    scene = part.scene()
    centre = tuple(scene.part.pose_xy_mm)
    reference, _ = render_rgb(scene, camera_for("rgb", "small", centre), np.random.default_rng(0))
    # Bayer sampling + demosaicing loses detail but not the picture: same image within a few grey levels
    assert np.median(np.abs(frame.image.astype(int) - reference.astype(int))) <= 4
