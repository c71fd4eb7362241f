"""GenICam cameras through harvesters (GenTL): configuration, triggered grabs, pixel decoding.

``decode_pixels`` is a pure function on the buffer's array; ``GenICamCamera`` owns the device and
is a context manager that always stops acquisition and releases the device.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mulsen.core.errors import ConfigError, DeviceError, MulsenError

from .clock import Clock, host_clock

log = logging.getLogger(__name__)

# GenICam names the colour of the top-left 2x2 cell; OpenCV names the cell one step further in,
# so GenICam BayerRG is OpenCV BayerBG (checked against a test pattern in the tests).
_BAYER_TO_CV = {"RG": "BG", "GR": "GB", "GB": "GR", "BG": "RG"}
_MONO = {"Mono8", "Mono10", "Mono12", "Mono14", "Mono16"}
_COLOUR = {"RGB8": (3, False), "BGR8": (3, True), "RGBa8": (4, False), "BGRa8": (4, True)}


def decode_pixels(data: np.ndarray, width: int, height: int, pixel_format: str) -> np.ndarray:
    """Buffer array -> image: (H, W) for Mono, (H, W, 3) RGB for colour and demosaiced Bayer.

    Row padding (a stride wider than the image) is stripped. Mono10/12/14/16 arrive widened to uint16.
    """
    if pixel_format in _MONO or pixel_format.startswith("Bayer"):
        channels = 1
    elif pixel_format in _COLOUR:
        channels = _COLOUR[pixel_format][0]
    else:
        raise MulsenError(f"pixel format {pixel_format} is not supported (use Mono8/10/12/16, Bayer*8/10/12/16, "
                          "RGB8, BGR8, RGBa8 or BGRa8)")
    flat = np.asarray(data).reshape(-1)
    row = width * channels
    if flat.size < row * height or flat.size % height:
        raise MulsenError(f"buffer of {flat.size} values does not hold a {width}x{height} {pixel_format} image")
    image = flat.reshape(height, -1)[:, :row]
    if channels > 1:
        image = image.reshape(height, width, channels)
        reverse = _COLOUR[pixel_format][1]
        image = image[..., 2::-1] if reverse else image[..., :3]
        return np.ascontiguousarray(image)
    if pixel_format.startswith("Bayer"):
        import cv2

        code = getattr(cv2, f"COLOR_Bayer{_BAYER_TO_CV[pixel_format[5:7]]}2RGB")
        return cv2.cvtColor(np.ascontiguousarray(image), code)
    return np.ascontiguousarray(image)


@dataclass(frozen=True)
class Frame:
    image: np.ndarray
    timestamp: float  # clock seconds at the trigger (or at arrival in free run)
    pixel_format: str
    device: str


class Camera(Protocol):
    """Anything that returns frames: a GenICam device, or a simulator built on one."""

    name: str

    def grab(self) -> Frame: ...

    def identity(self) -> dict: ...


@dataclass
class CameraConfig:
    """Which device to open and how to set it up; every setting left None keeps the device's value."""

    name: str = "camera"
    cti: str | None = None
    serial_number: str | None = None
    model: str | None = None
    pixel_format: str | None = None
    exposure_us: float | None = None
    gain_db: float | None = None
    roi: tuple[int, int, int, int] | None = None  # x, y, width, height
    trigger: str = "software"  # software | free
    timeout_s: float = 2.0
    extra: dict[str, Any] = field(default_factory=dict)  # further GenICam features by node name

    def __post_init__(self) -> None:
        if self.trigger not in ("software", "free"):
            raise ConfigError(f"{self.name}: trigger must be 'software' or 'free', got {self.trigger!r}")


def find_producer(cti: str | None) -> str:
    """The GenTL producer: the configured file, else the first ``*.cti`` on ``GENICAM_GENTL64_PATH``."""
    if cti:
        return cti  # existence and validity are checked by harvesters with explicit flags
    for folder in os.environ.get("GENICAM_GENTL64_PATH", "").split(os.pathsep):
        found = sorted(Path(folder).glob("*.cti")) if folder else []
        if found:
            return str(found[0])
    raise MulsenError("no GenTL producer: give --cti PATH or set GENICAM_GENTL64_PATH to a folder holding a .cti file")


def simulator_producer() -> str:
    """``TLSimu.cti`` from genicam 1.5.0 (the test/dev dependency), never vendored."""
    try:
        import genicam
    except ImportError as exc:
        raise MulsenError("the GenTL simulator needs 'genicam==1.5.0' (pip install mulsen-toolkit[hardware])") from exc
    path = Path(genicam.__file__).parent / "TLSimu.cti"
    if not path.exists():
        raise MulsenError(f"{path} is missing: the GenTL simulator ships only with genicam==1.5.0")
    return str(path)


# A GenTL producer is a process-wide singleton: a second Harvester on the same .cti sees no devices.
# Cameras on one producer therefore share one Harvester, reset when the last camera closes.
_HARVESTERS: dict[str, list] = {}
_HARVESTERS_LOCK = threading.Lock()


def _shared_harvester(cti: str, device: str, factory):
    with _HARVESTERS_LOCK:
        entry = _HARVESTERS.get(cti)
        if entry is None:
            harvester = factory()
            try:
                harvester.add_file(cti, check_existence=True, check_validity=True)
            except FileNotFoundError:
                raise DeviceError(device, f"GenTL producer {cti} does not exist") from None
            except OSError as exc:
                raise DeviceError(device, f"{cti} is not a loadable GenTL producer ({exc})") from None
            harvester.update()
            entry = _HARVESTERS[cti] = [harvester, 0]
        entry[1] += 1
        return entry[0]


def _release_harvester(harvester) -> None:
    with _HARVESTERS_LOCK:
        for cti, entry in list(_HARVESTERS.items()):
            if entry[0] is harvester:
                entry[1] -= 1
                if entry[1] == 0:
                    del _HARVESTERS[cti]
                    harvester.reset()


class GenICamCamera:
    """A camera opened through harvesters. Use as ``with GenICamCamera(config) as cam: cam.grab()``."""

    def __init__(self, config: CameraConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or host_clock()
        self.name = config.name
        self._harvester: Any = None  # harvesters' Harvester and ImageAcquirer once open (untyped library)
        self._acquirer: Any = None
        self._settings: dict = {}
        self._device: dict = {}

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> GenICamCamera:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> None:
        try:
            from harvesters.core import Harvester
        except ImportError as exc:
            raise MulsenError("cameras need 'harvesters' (pip install mulsen-toolkit[hardware])") from exc
        cti = find_producer(self.config.cti)
        self._harvester = _shared_harvester(cti, self.name, Harvester)
        devices = self._harvester.device_info_list
        if not devices:
            raise DeviceError(self.name, f"no device found through {cti}")
        key = {k: v for k, v in (("serial_number", self.config.serial_number), ("model", self.config.model)) if v}
        sigint = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
        try:
            self._acquirer = self._harvester.create(key or 0)
        except (ValueError, IndexError) as exc:
            listed = ", ".join(f"{d.model} {d.serial_number}" for d in devices)
            raise DeviceError(self.name, f"no single device matches {key or 'the first'} ({exc}); found: {listed}") \
                from None
        finally:
            if sigint is not None:
                # harvesters installs a SIGINT handler that silently destroys the acquirer, which swallows
                # Ctrl-C; we restore ours so an interrupt takes the normal path (heater off, no partial output)
                signal.signal(signal.SIGINT, sigint)
        match = next(d for d in devices if (not key.get("serial_number") or d.serial_number == key["serial_number"])
                     and (not key.get("model") or d.model == key["model"]))
        self._device = {"vendor": match.vendor, "model": match.model, "serial_number": match.serial_number,
                        "producer": cti}
        self._configure()
        self._acquirer.start()

    def _configure(self) -> None:
        c = self.config
        if c.roi is not None:
            x, y, w, h = c.roi
            self._set("Width", int(w))
            self._set("Height", int(h))
            if x or y:
                self._set("OffsetX", int(x))
                self._set("OffsetY", int(y))
        if c.pixel_format is not None:
            self._set("PixelFormat", c.pixel_format)
        if c.exposure_us is not None:
            self._set("ExposureTime", float(c.exposure_us))
        if c.gain_db is not None:
            self._set("Gain", float(c.gain_db))
        for name, value in c.extra.items():
            self._set(name, value)
        if c.trigger == "software":
            self._set("TriggerMode", "On")
            self._set("TriggerSource", "Software")
            self._require("TriggerSoftware")
        elif self._node_map.has_node("TriggerMode"):
            self._set("TriggerMode", "Off")

    @property
    def _node_map(self):
        return self._acquirer.remote_device.node_map

    def _require(self, name: str) -> None:
        if not self._node_map.has_node(name):
            model = self._device.get("model", "this device")
            raise DeviceError(self.name, f"feature {name} is not supported by {model}")

    def _set(self, name: str, value) -> None:
        self._require(name)
        node = getattr(self._node_map, name)
        if isinstance(value, str) and hasattr(node, "symbolics") and value not in node.symbolics:
            raise DeviceError(self.name, f"{name}={value!r} is not offered (choices: {', '.join(node.symbolics)})")
        try:
            node.value = value
        except Exception as exc:  # genicam raises OutOfRange/InvalidArgument/Access exceptions
            raise DeviceError(self.name, f"cannot set {name}={value!r}: {type(exc).__name__} {exc}".strip()) from None
        self._settings[name] = value

    def close(self) -> None:
        """Stop acquisition and release the device; safe to call twice and after a failed open."""
        acquirer, self._acquirer = self._acquirer, None
        if acquirer is not None:
            try:
                acquirer.stop()
            except Exception as exc:
                log.warning("%s: stopping acquisition failed: %s", self.name, exc)
            acquirer.destroy()
        harvester, self._harvester = self._harvester, None
        if harvester is not None:
            _release_harvester(harvester)

    # -- acquisition -------------------------------------------------------------------
    def grab(self) -> Frame:
        """Trigger (in software-trigger mode) and fetch one frame."""
        timestamp = self.clock.now()
        if self.config.trigger == "software":
            self.trigger()
        return self.fetch(timestamp)

    def trigger(self) -> None:
        self._require_open()
        self._node_map.TriggerSoftware.execute()

    def fetch(self, timestamp: float | None = None) -> Frame:
        """Wait for the next frame (at most ``timeout_s``) and copy it out of the buffer."""
        self._require_open()
        buffer = self._acquirer.try_fetch(timeout=self.config.timeout_s)
        if buffer is None:
            raise DeviceError(self.name, f"no frame within {self.config.timeout_s} s (trigger not fired or camera "
                                         "stalled)")
        with buffer:
            component = buffer.payload.components[0]
            pixel_format = str(component.data_format)
            # decode copies (or demosaics) out of the buffer before it is requeued
            image = decode_pixels(component.data, int(component.width), int(component.height), pixel_format)
            image = image.copy() if image.base is not None else image
        return Frame(image, self.clock.now() if timestamp is None else timestamp, pixel_format, self.name)

    def _require_open(self) -> None:
        if self._acquirer is None:
            raise DeviceError(self.name, "camera is not open")

    def identity(self) -> dict:
        return {**self._device, "settings": dict(self._settings), "trigger": self.config.trigger}
