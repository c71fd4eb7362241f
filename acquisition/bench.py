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
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mulsen.core.errors import MulsenError

from .camera import CameraConfig, GenICamCamera
from .clock import host_clock
from .heater import open_heater
from .robot import MotionLimits, connected_arm
from .session import ConsoleOperator, SampleRequest, SessionDevices


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
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            ir = CameraConfig(name="ir camera", **{"pixel_format": "Mono16", **data["ir_camera"]})
            rgb = CameraConfig(name="rgb camera", **data["rgb_camera"])
            limits = MotionLimits(**data.get("limits", {}))
            return cls(data["heater_port"], ir, rgb, data["robot_host"], Path(data["scan_export_dir"]), limits,
                       data.get("ir_intrinsics"))
        except FileNotFoundError:
            raise MulsenError(f"{path}: bench file not found") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise MulsenError(f"{path}: not a valid bench file ({type(exc).__name__}: {exc})") from None

    @contextlib.contextmanager
    def open(self, request: SampleRequest) -> Iterator[SessionDevices]:
        clock = host_clock()
        with open_heater(self.heater_port, clock) as heater, GenICamCamera(self.ir_camera, clock) as ir, \
                GenICamCamera(self.rgb_camera, clock) as rgb, connected_arm(self.robot_host, self.limits) as arm:
            yield SessionDevices(ir, heater, rgb, arm, self.scan_export_dir, ConsoleOperator(), clock, {
                "heater": heater.identify(), "ir_camera": ir.identity(), "rgb_camera": rgb.identity(),
                "robot": arm.identity(), "scanner_exports": str(self.scan_export_dir)}, self.ir_intrinsics)
