"""The simulated bench for capture sessions: the same drivers, pointed at the simulators."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from mulsen.acquisition.bench import DeviceProbe, arm_probe, camera_probe, export_dir_probe, heater_probe
from mulsen.acquisition.heater import open_heater
from mulsen.acquisition.robot import ArmGeometry, connected_arm
from mulsen.acquisition.session import SampleRequest, SessionDevices
from mulsen.core.atomic import atomic_write_text

from .devices import SimBench
from .rig import rgb_view
from .sim_cameras import BenchPart, rgb_camera, thermal_camera
from .world.scene import camera_for


@dataclass
class SimulatedOperator:
    """Plays the person at the bench: asks the scanner simulator for the two scans of the current part."""

    requests: Path
    part: BenchPart
    size: str
    scan_format: str
    name: str = "simulated operator"
    write_s: float = 0.2

    def request_scans(self, request: SampleRequest) -> None:
        ticket = {"id": f"{request.category}-{request.sample_id}", "part": str(self.part), "size": self.size,
                  "format": self.scan_format, "write_s": self.write_s}
        atomic_write_text(self.requests / f"{ticket['id']}.json", json.dumps(ticket))


@dataclass
class SimulatedBench:
    state: SimBench
    geometry: ArmGeometry = field(default_factory=ArmGeometry)

    def part_for(self, request: SampleRequest) -> BenchPart:
        return BenchPart.parse(request.part) if request.part else self.state.part

    def probes(self) -> list[tuple[str, DeviceProbe]]:
        """One check per simulated device, through the same drivers as a capture."""
        clock, size = self.state.clock(), self.state.image_size
        part = self.state.part
        return [("heater", partial(heater_probe, self.state.heater_port, clock)),
                ("ir camera", lambda: camera_probe(thermal_camera(part, clock, self.state.heater_edge_log, size))),
                ("rgb camera", lambda: camera_probe(rgb_camera(part, clock, size))),
                ("robot", partial(arm_probe, self.state.robot_host)),
                ("scanner exports", partial(export_dir_probe, Path(self.state.scan_export_dir)))]

    @contextlib.contextmanager
    def open(self, request: SampleRequest) -> Iterator[SessionDevices]:
        part = self.part_for(request)
        clock = self.state.clock()
        size = self.state.image_size
        with open_heater(self.state.heater_port, clock) as heater, connected_arm(self.state.robot_host) as arm:
            # the RGB camera sees the bench from where the arm really holds it (true mount, reported pose)
            rgb = rgb_camera(part, clock, size, view=lambda: rgb_view(arm.pose(), size, self.geometry))
            ir = thermal_camera(part, clock, self.state.heater_edge_log, size)
            with ir, rgb:
                operator = SimulatedOperator(Path(self.state.scan_request_dir), part, size, self.state.scan_format)
                yield SessionDevices(ir, heater, rgb, arm, Path(self.state.scan_export_dir), operator, clock, {
                    "heater": heater.identify(), "ir_camera": ir.identity(), "rgb_camera": rgb.identity(),
                    "robot": arm.identity(), "scanner_exports": self.state.scan_export_dir,
                    "simulated_part": str(part), "time_scale": self.state.time_scale},
                    ir_intrinsics=camera_for("ir", size).intrinsics.tolist())
