"""Simulated cameras: the real GenTL transport (TLSimu.cti through harvesters) + virtual-world pixels.

The GenTL simulator cannot carry our pixels, so the seam is one function: after the real
trigger/fetch of a TLSimu buffer, the frame's *content* is replaced by what the virtual world
shows at that frame's timestamp, encoded in the camera's pixel format and decoded by the same
``decode_pixels`` a real camera goes through. Everything else (discovery, features, trigger,
buffer timing, teardown) is the real acquisition path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mulsen.acquisition.camera import CameraConfig, Frame, GenICamCamera, decode_pixels, simulator_producer
from mulsen.acquisition.clock import Clock
from mulsen.core.errors import MulsenError

from .heater_sim import read_edge_log
from .world.defects import DEFECT_TYPES
from .world.generate import build_scene
from .world.parts import CATEGORIES
from .world.render_rgb import mosaic_rg, render_rgb
from .world.scene import DownCamera, Scene, camera_for
from .world.thermal import HeatingSchedule, temperature_frame, thermal_maps

RGB_SERIAL = "SN_InterfaceA_1"  # TLSimuColor
IR_SERIAL = "SN_InterfaceB_0"  # TLSimuMono


@dataclass(frozen=True)
class BenchPart:
    """Which virtual part lies on the bench: ``category:seed[:defect]`` on the command line."""

    category: str
    seed: int
    defect: str | None = None

    @classmethod
    def parse(cls, text: str) -> BenchPart:
        m = re.fullmatch(r"([a-z_]+):(\d+)(?::([a-z_]+))?", text.strip())
        if not m:
            raise MulsenError(f"part {text!r}: expected CATEGORY:SEED[:DEFECT], e.g. nut:3:crack")
        part = cls(m.group(1), int(m.group(2)), m.group(3))
        if part.category not in CATEGORIES:
            raise MulsenError(f"part {text!r}: unknown category (available: {', '.join(CATEGORIES)})")
        if part.defect is not None and part.defect not in DEFECT_TYPES:
            raise MulsenError(f"part {text!r}: unknown defect (available: {', '.join(DEFECT_TYPES)})")
        return part

    def __str__(self) -> str:
        return f"{self.category}:{self.seed}" + (f":{self.defect}" if self.defect else "")

    def scene(self) -> Scene:
        return build_scene(self.category, self.defect, np.random.default_rng(self.seed))


def encode_pixels(image: np.ndarray, pixel_format: str) -> np.ndarray:
    """What a camera would put in its buffer for ``image`` (inverse of ``decode_pixels``)."""
    if pixel_format == "BayerRG8":
        return mosaic_rg(image).reshape(-1)
    if pixel_format in ("Mono16", "Mono8", "RGB8"):
        return np.ascontiguousarray(image).reshape(-1)
    raise MulsenError(f"the simulator does not encode {pixel_format}")


class SimulatedCamera:
    """A TLSimu device whose frames show ``render(timestamp)`` in ``pixel_format``."""

    def __init__(self, transport: GenICamCamera, render: Callable[[float], np.ndarray], pixel_format: str,
                 description: str) -> None:
        self.transport = transport
        self.render = render
        self.pixel_format = pixel_format
        self.description = description
        self.name = transport.name
        self.maps: Any = None  # the physics' answer (thermal maps), for tests and benchmarks

    def __enter__(self) -> SimulatedCamera:
        self.transport.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.transport.__exit__(*exc)

    def grab(self) -> Frame:
        frame = self.transport.grab()  # real trigger, fetch, buffer requeue and timestamp
        content = self.render(frame.timestamp)
        height, width = content.shape[:2]
        image = decode_pixels(encode_pixels(content, self.pixel_format), width, height, self.pixel_format)
        return replace(frame, image=image, pixel_format=self.pixel_format)

    def identity(self) -> dict:
        return {**self.transport.identity(), "simulated": self.description, "pixel_format": self.pixel_format}


def rgb_camera(part: BenchPart, clock: Clock, size: str = "full", view: Callable[[], DownCamera] | None = None,
               seed: int = 0, timeout_s: float = 2.0) -> SimulatedCamera:
    """The RGB camera (BayerRG8, like the MER2); ``view`` gives its current view (from the arm's pose)."""
    scene = part.scene()
    rng = np.random.default_rng(seed)
    geometry = camera_for("rgb", size, tuple(scene.part.pose_xy_mm))
    current = view or (lambda: geometry)

    def render(_t: float) -> np.ndarray:
        return render_rgb(scene, current(), rng)[0]

    config = CameraConfig(name="rgb camera (simulated)", cti=simulator_producer(), serial_number=RGB_SERIAL,
                          roi=(0, 0, geometry.width, geometry.height), trigger="software", timeout_s=timeout_s)
    return SimulatedCamera(GenICamCamera(config, clock), render, "BayerRG8", f"virtual part {part}")


class ThermalRenderer:
    """IR frames (TemperatureLinear10mK counts) of the part under the heater's *logged* edges."""

    def __init__(self, scene: Scene, geometry: DownCamera, edge_log: Path, seed: int = 0, netd_k: float = 0.04,
                 drift_k_per_s: float = 0.002, fixed_pattern_k: float = 0.5) -> None:
        self.maps = thermal_maps(scene, geometry)
        self.edge_log = Path(edge_log)
        self.rng = np.random.default_rng(seed)
        self.netd_k = netd_k
        self.drift = drift_k_per_s
        self.offset = self.rng.uniform(-fixed_pattern_k, fixed_pattern_k, self.maps.amplitude.shape)
        self._log_size = -1
        self._entries: list[dict] = []

    def _edges(self) -> list[dict]:
        size = self.edge_log.stat().st_size if self.edge_log.exists() else 0
        if size != self._log_size:
            self._entries, self._log_size = read_edge_log(self.edge_log), size
        return self._entries

    def __call__(self, t: float) -> np.ndarray:
        entries = [e for e in self._edges() if e["t"] <= t]
        power = entries[-1]["power_pct"] / 100 if entries else 1.0
        schedule = HeatingSchedule.from_edges([(e["t"], e["on"]) for e in entries], power, now=t)
        kelvin = temperature_frame(self.maps, schedule, t, self.drift, self.offset)
        kelvin = kelvin + self.rng.normal(0, self.netd_k, kelvin.shape)
        return np.clip(np.round(kelvin * 100), 0, 65535).astype(np.uint16)


def thermal_camera(part: BenchPart, clock: Clock, edge_log: Path, size: str = "full", seed: int = 0,
                   timeout_s: float = 2.0) -> SimulatedCamera:
    """The IR camera over the part (Mono16, 10 mK per count), driven by the heater simulator's edge log."""
    scene = part.scene()
    geometry = camera_for("ir", size)
    renderer = ThermalRenderer(scene, geometry, edge_log, seed)
    config = CameraConfig(name="ir camera (simulated)", cti=simulator_producer(), serial_number=IR_SERIAL,
                          roi=(0, 0, geometry.width, geometry.height), trigger="software", timeout_s=timeout_s)
    camera = SimulatedCamera(GenICamCamera(config, clock), renderer, "Mono16", f"virtual part {part}")
    camera.maps = renderer.maps  # the physics' answer, for tests and benchmarks
    return camera
