"""The real bench: which devices a capture session opens, from a JSON file the lab keeps.

Example ``bench.json``::

    {"heater_port": "/dev/ttyUSB0",
     "ir_camera": {"cti": "/opt/flir/FLIR_GenTL.cti", "serial_number": "12345", "pixel_format": "Mono16"},
     "rgb_camera": {"cti": "/opt/galaxy/GxU3VTL.cti", "serial_number": "FCS22110123",
                    "pixel_format": "BayerRG8", "exposure_us": 8000},
     "robot_host": "192.168.1.10",
     "scan_export_dir": "/data/vxelements/exports"}
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Protocol

from mulsen.core.errors import MulsenError
from mulsen.core.records import Record

from .camera import Camera, CameraConfig, GenICamCamera
from .clock import Clock, host_clock
from .heater import open_heater
from .robot import MotionLimits, connected_arm
from .session import ConsoleOperator, SampleRequest, SessionDevices


@dataclass(frozen=True)
class BenchFile(Record):
    """``bench.json``: the real devices. Written by hand, so its ``format`` tag may be left out."""

    FORMAT = "mulsen-bench"
    VERSION = 1
    WHAT = "bench file"

    heater_port: str
    ir_camera: CameraConfig
    rgb_camera: CameraConfig
    robot_host: str
    scan_export_dir: str
    limits: MotionLimits = field(default_factory=MotionLimits)
    ir_intrinsics: tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]] | None \
        = None

    @classmethod
    def from_dict(cls, data: object) -> BenchFile:
        data = _without_comments(data)  # keys starting with "#" are the lab's notes (bench-template writes some)
        if isinstance(data, dict) and "format" not in data:
            data = {**data, "format": cls.tag()}
        return super().from_dict(data)


def _without_comments(data: object) -> object:
    if isinstance(data, dict):
        return {k: _without_comments(v) for k, v in data.items() if not (isinstance(k, str) and k.startswith("#"))}
    return data


BENCH_TEMPLATE = {
    "#": "bench.json: the devices of one capture bench, for 'mulsen capture sample|batch --bench bench.json'. "
         "Keys starting with # are comments. Check every device with 'mulsen capture check --bench bench.json'.",
    "heater_port": "/dev/ttyUSB0",
    "#heater_port": "serial port of the heater controller (SCPI: *IDN?, OUTP ON|OFF, SOUR:POW); on Linux often "
                    "/dev/ttyUSB0 or /dev/serial/by-id/...",
    "ir_camera": {
        "#": "the thermal camera through its vendor's GenTL producer (.cti); serial_number picks one of several",
        "cti": "/opt/vendor/lib/GenTL.cti",
        "serial_number": "CHANGE-ME",
        "pixel_format": "Mono16",
        "#pixel_format": "Mono16 radiometric counts; counts_to_kelvin (capture --counts-to-kelvin) converts them",
    },
    "rgb_camera": {
        "#": "the colour camera; exposure in microseconds, gain in dB; roi [x, y, width, height] optional",
        "cti": "/opt/vendor/lib/GenTL.cti",
        "serial_number": "CHANGE-ME",
        "pixel_format": "BayerRG8",
        "exposure_us": 8000,
    },
    "robot_host": "192.168.1.10",
    "#robot_host": "the UR5 controller's address (secondary interface, port 30002)",
    "scan_export_dir": "/data/scanner/exports",
    "#scan_export_dir": "the folder the laser scanner's software exports STL/PLY/OBJ/PCD files into",
    "limits": {"#": "the arm's workspace box (m, base frame) and speed limits; moves outside are refused",
               "workspace_min": [-0.85, -0.45, 0.1], "workspace_max": [-0.3, 0.25, 0.6],
               "max_speed_m_s": 0.25},
}


@dataclass(frozen=True)
class DeviceCheck:
    """One device opened and exercised once by ``mulsen capture check``."""

    device: str
    ok: bool
    detail: str  # what it reported (identity, frame size, pose), or the problem
    seconds: float


DeviceProbe = Callable[[], str]  # opens a device, exercises it once, closes it; returns what it reported


def run_checks(probes: list[tuple[str, DeviceProbe]]) -> list[DeviceCheck]:
    """Every probe, one after the other; a failing device never stops the others (every problem in one run)."""
    results = []
    for device, probe in probes:
        started = time.monotonic()
        try:
            detail, ok = probe(), True
        except (MulsenError, OSError, TimeoutError) as exc:
            detail, ok = " ".join(str(exc).split()) or type(exc).__name__, False
        results.append(DeviceCheck(device, ok, detail, round(time.monotonic() - started, 3)))
    return results


def heater_probe(port: str, clock: Clock) -> str:
    """Open the heater, ask who it is, and make sure it is off."""
    with open_heater(port, clock) as heater:
        name = heater.identify()
        if not heater.off_safely():
            raise MulsenError(f"heater {port}: answers ({name}) but could not confirm that it is off")
        return f"{name}, output confirmed off"


class ManagedCamera(Camera, Protocol):
    """A camera that opens as a context manager (GenICam cameras and the simulated ones)."""

    def __enter__(self) -> Camera: ...

    def __exit__(self, *exc: object) -> object: ...


def camera_probe(camera: ManagedCamera) -> str:
    """Open a camera and grab one frame."""
    with camera:
        frame = camera.grab()
        identity = camera.identity()
        return (f"{identity.get('vendor', '')} {identity.get('model', '')} serial "
                f"{identity.get('serial_number', '?')}: one {frame.image.shape[1]}x{frame.image.shape[0]} "
                f"{frame.pixel_format} frame").strip()


def arm_probe(host: str, limits: MotionLimits | None = None) -> str:
    """Connect to the arm and read its pose (it does not move)."""
    with connected_arm(host, limits) as arm:
        pose = arm.pose()
        return f"{host}: tool at ({pose[0]:.3f}, {pose[1]:.3f}, {pose[2]:.3f}) m"


def export_dir_probe(folder: Path) -> str:
    """The scanner's export folder exists and this host may read it."""
    if not folder.is_dir():
        raise MulsenError(f"scanner export folder {folder} does not exist")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise MulsenError(f"scanner export folder {folder} is not readable")
    return f"{folder}: readable, {sum(1 for _ in folder.iterdir())} entries"


@dataclass
class RealBench:
    heater_port: str
    ir_camera: CameraConfig
    rgb_camera: CameraConfig
    robot_host: str
    scan_export_dir: Path
    limits: MotionLimits = field(default_factory=MotionLimits)
    ir_intrinsics: list | None = None

    @classmethod
    def load(cls, path: str | Path) -> RealBench:
        bench = BenchFile.read(path)
        ir = replace(bench.ir_camera, name="ir camera", pixel_format=bench.ir_camera.pixel_format or "Mono16")
        rgb = replace(bench.rgb_camera, name="rgb camera")
        intrinsics = None if bench.ir_intrinsics is None else [list(row) for row in bench.ir_intrinsics]
        return cls(bench.heater_port, ir, rgb, bench.robot_host, Path(bench.scan_export_dir), bench.limits, intrinsics)

    def probes(self) -> list[tuple[str, DeviceProbe]]:
        """One check per device (``mulsen capture check``)."""
        clock = host_clock()
        return [("heater", partial(heater_probe, self.heater_port, clock)),
                ("ir camera", lambda: camera_probe(GenICamCamera(self.ir_camera, clock))),
                ("rgb camera", lambda: camera_probe(GenICamCamera(self.rgb_camera, clock))),
                ("robot", partial(arm_probe, self.robot_host, self.limits)),
                ("scanner exports", partial(export_dir_probe, self.scan_export_dir))]

    @contextlib.contextmanager
    def open(self, request: SampleRequest) -> Iterator[SessionDevices]:
        clock = host_clock()
        with open_heater(self.heater_port, clock) as heater, GenICamCamera(self.ir_camera, clock) as ir, \
                GenICamCamera(self.rgb_camera, clock) as rgb, connected_arm(self.robot_host, self.limits) as arm:
            yield SessionDevices(ir, heater, rgb, arm, self.scan_export_dir, ConsoleOperator(), clock, {
                "heater": heater.identify(), "ir_camera": ir.identity(), "rgb_camera": rgb.identity(),
                "robot": arm.identity(), "scanner_exports": str(self.scan_export_dir)}, self.ir_intrinsics)
