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
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from mulsen.core.records import Record

from .camera import CameraConfig, GenICamCamera
from .clock import host_clock
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
        if isinstance(data, dict) and "format" not in data:
            data = {**data, "format": cls.tag()}
        return super().from_dict(data)


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

    @contextlib.contextmanager
    def open(self, request: SampleRequest) -> Iterator[SessionDevices]:
        clock = host_clock()
        with open_heater(self.heater_port, clock) as heater, GenICamCamera(self.ir_camera, clock) as ir, \
                GenICamCamera(self.rgb_camera, clock) as rgb, connected_arm(self.robot_host, self.limits) as arm:
            yield SessionDevices(ir, heater, rgb, arm, self.scan_export_dir, ConsoleOperator(), clock, {
                "heater": heater.identify(), "ir_camera": ir.identity(), "rgb_camera": rgb.identity(),
                "robot": arm.identity(), "scanner_exports": str(self.scan_export_dir)}, self.ir_intrinsics)
