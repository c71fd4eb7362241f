"""What a capture folder holds: the records the capture session writes and the dataset builder reads.

``ROOT/<category>/<sample_id>/capture.json`` (``CaptureRecord``) describes a finished capture; while it is
being recorded, ``ROOT/.partial/<category>/<sample_id>/progress.json`` (``ProgressRecord``) holds the steps done
so far. ``rgb.json`` is an ``RgbStep``. They live here, below both ``acquisition`` (which writes them) and
``dataset`` (which reads them), so neither has to import the other.
"""

from __future__ import annotations

import getpass
import platform
from dataclasses import dataclass, field, replace
from typing import Any

from mulsen import __version__
from mulsen.core.errors import ConfigError
from mulsen.core.records import Record

from .layout import DEFECT_FOLDER

CAPTURE_FILE = "capture.json"
PROGRESS_FILE = "progress.json"
RGB_RECORD_FILE = "rgb.json"
STEPS = ("ir", "arm", "rgb", "scans")


def _check_name(what: str, value: str) -> None:
    if not value or "/" in value or "\\" in value or value.startswith(".") or value != value.strip():
        raise ConfigError(f"{what} {value!r} is not a valid folder name")


@dataclass(frozen=True)
class SampleRequest:
    """What the operator asked for: a sample of a category, under a sample id."""

    category: str
    sample_id: str
    operator: str = ""
    notes: str = ""
    part: str | None = None  # the simulated bench only: CATEGORY:SEED[:DEFECT]
    # what the part is meant to be: "good" (a normal) or the defect type planned; None: not said
    expected: str | None = None

    def __post_init__(self) -> None:
        _check_name("category", self.category)
        _check_name("sample id", self.sample_id)
        if self.expected is not None and not DEFECT_FOLDER.fullmatch(self.expected):
            raise ConfigError(f"expected {self.expected!r} must be 'good' or a defect type such as 'crack'")


@dataclass(frozen=True)
class IrStep:
    files: list[str]
    frames: int
    frames_used: int
    edges: int
    heater_off_confirmed: bool
    heating_s: float
    seconds: float = 0.0


@dataclass(frozen=True)
class ArmStep:
    placement: str  # "nominal geometry" | "calibrated" | "rendered"
    reached_pose: tuple[float, ...]  # UR pose: metres + rotation vector
    part_ir_pixel: tuple[float, float] | None = None
    part_bench_xy_mm: tuple[float, float] | None = None
    start_pose: tuple[float, ...] | None = None
    target_pose: tuple[float, ...] | None = None
    joints: tuple[float, ...] | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class RgbStep(Record):
    """One RGB frame; also the content of ``rgb.json``."""

    FORMAT = "mulsen-rgb"
    VERSION = 1
    WHAT = "RGB frame record"

    file: str
    timestamp: float
    shape: tuple[int, ...]
    pixel_format: str
    camera: dict[str, Any] = field(default_factory=dict)  # the camera's own identity and settings
    seconds: float = 0.0


@dataclass(frozen=True)
class ScanExport:
    file: str
    source: str
    format: str
    points: int
    faces: int
    exported_at: str


@dataclass(frozen=True)
class ScansStep:
    scan_a: ScanExport
    scan_b: ScanExport
    seconds: float = 0.0


@dataclass(frozen=True)
class CaptureSteps:
    """The steps done so far; a step not yet done is None."""

    ir: IrStep | None = None
    arm: ArmStep | None = None
    rgb: RgbStep | None = None
    scans: ScansStep | None = None

    def with_step(self, name: str, record: IrStep | ArmStep | RgbStep | ScansStep) -> CaptureSteps:
        if name not in STEPS:
            raise ValueError(f"unknown capture step {name!r}")
        changes: dict[str, Any] = {name: record}
        return replace(self, **changes)

    def done(self) -> list[str]:
        return [name for name in STEPS if getattr(self, name) is not None]


@dataclass(frozen=True)
class Failure:
    step: str
    error: str
    at: str


@dataclass(frozen=True)
class ProgressRecord(Record):
    FORMAT = "mulsen-capture-progress"
    VERSION = 1
    WHAT = "capture progress"

    request: SampleRequest
    started: str
    steps: CaptureSteps = field(default_factory=CaptureSteps)
    failures: tuple[Failure, ...] = ()
    resumed: tuple[str, ...] = ()
    devices: dict[str, Any] = field(default_factory=dict)


def software_description() -> dict[str, str]:
    return {"mulsen": __version__, "python": platform.python_version(), "host": platform.node()}


@dataclass(frozen=True)
class CaptureRecord(Record):
    """``capture.json``: a finished capture, its devices, settings, steps and history."""

    FORMAT = "mulsen-capture"
    VERSION = 1
    WHAT = "capture record"

    request: SampleRequest
    finished: str
    operator: str = field(default_factory=getpass.getuser)
    started: str = ""
    resumed: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = ()
    steps: CaptureSteps = field(default_factory=CaptureSteps)
    devices: dict[str, Any] = field(default_factory=dict)  # identities as the devices report them
    settings: dict[str, Any] = field(default_factory=dict)
    software: dict[str, str] = field(default_factory=software_description)
    files: tuple[str, ...] = ()

    @property
    def intended(self) -> str | None:
        """What the capture was planned as: "good" or a defect type (the request's ``expected``, else the
        simulated part's defect); None when nobody said."""
        if self.request.expected:
            return self.request.expected
        part = self.simulated_part or self.request.part
        if part:
            fields = part.split(":")
            return fields[2] if len(fields) > 2 and fields[2] else "good"
        return None

    @property
    def simulated_part(self) -> str | None:
        """The virtual-world part (``CATEGORY:SEED[:DEFECT]``) of a simulated capture, else None."""
        part = self.devices.get("simulated_part")
        return part if isinstance(part, str) else None
