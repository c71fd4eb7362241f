"""The capture session: drive every device for one sample and never lose or mix up data.

Steps: IR lock-in -> arm to the RGB pose above the part (found in the IR image) -> RGB frame ->
both scanner exports (scan A upright, scan B flipped). Everything is written into a hidden
``ROOT/.partial/<category>/<sample_id>/`` folder with a ``progress.json`` after each step; only a
complete sample is renamed to ``ROOT/<category>/<sample_id>/`` with its ``capture.json``. An
interrupted sample must be resumed (completed steps are kept) or discarded explicitly; a captured
sample is never overwritten. Every fault stops the arm and leaves the heater off.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import numpy as np

from mulsen.core.atomic import atomic_path
from mulsen.core.errors import DataFormatError, MulsenError
from mulsen.dataset.captures import (
    CAPTURE_FILE,
    PROGRESS_FILE,
    STEPS,
    ArmStep,
    CaptureRecord,
    Failure,
    IrStep,
    ProgressRecord,
    RgbStep,
    SampleRequest,
    ScanExport,
    ScansStep,
)

from .camera import Camera
from .clock import Clock
from .export_watch import ExportWatcher
from .heater import Heater
from .placement import NominalPlacement, Placement
from .robot import RobotArm
from .steps import record_ir, record_rgb
from .thermography import LockInSettings

log = logging.getLogger(__name__)
STEP_FILES = {"ir": ("ir_*", "infrared.png"), "arm": (), "rgb": ("rgb.*",), "scans": ("scan_a.*", "scan_b.*")}
PARTIAL_DIR = ".partial"


class Operator(Protocol):
    name: str

    def request_scans(self, request: SampleRequest) -> None: ...


class ConsoleOperator:
    """Asks the person at the bench to scan; the export watcher notices the files."""

    name = "console"

    def request_scans(self, request: SampleRequest) -> None:
        print(f"\n>>> {request.category}/{request.sample_id}: scan the part now (scan A), turn it over, scan it "
              "again (scan B), and export both scans to the export folder.", flush=True)


@dataclass
class SessionDevices:
    ir_camera: Camera
    heater: Heater
    rgb_camera: Camera
    arm: RobotArm
    scan_folder: Path
    operator: Operator
    clock: Clock
    description: dict = field(default_factory=dict)
    ir_intrinsics: list | None = None  # the bench's own (calibrated) IR intrinsics, else the configured ones


class Bench(Protocol):
    """Opens every device for one sample (real devices or the simulators)."""

    def open(self, request: SampleRequest) -> contextlib.AbstractContextManager[SessionDevices]: ...


@dataclass
class SessionConfig:
    lockin: LockInSettings = field(default_factory=LockInSettings)
    arm_speed_m_s: float = 0.1
    scan_timeout_s: float = 900.0
    scan_settle_s: float = 1.0
    save_raw_ir: bool = False
    placement: Placement = field(default_factory=NominalPlacement)  # CalibratedPlacement once calibrated


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class CaptureInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a sample's capture, with what the operator needs to know next."""

    def __init__(self, request: SampleRequest, step: str, kept: list[str], partial: Path, heater_off: bool) -> None:
        self.request, self.step, self.kept, self.partial, self.heater_off = request, step, kept, partial, heater_off
        super().__init__(self.summary())

    def summary(self) -> str:
        heater = "heater confirmed off" if self.heater_off else \
            "HEATER NOT CONFIRMED OFF: check it (the controller's watchdog switches it off when the host is silent)"
        return (f"{self.request.category}/{self.request.sample_id} interrupted during the {self.step} step; steps "
                f"kept: {', '.join(self.kept) or 'none'} (in {self.partial}); {heater}")


class CaptureSession:
    def __init__(self, root: str | Path, bench: Bench, config: SessionConfig | None = None,
                 show_progress: bool = True, announce: Callable[[str], None] | None = None,
                 on_finished: Callable[[Path, CaptureRecord], object] | None = None) -> None:
        self.root = Path(root)
        self.bench = bench
        self.config = config or SessionConfig()
        self.show_progress = show_progress
        self.announce = announce or (lambda text: log.info(text))
        # called with the finished folder (still in .partial/) and its record before it moves into place, so
        # what it writes (the capture's preview) appears with the capture, and is listed in capture.json
        self.on_finished = on_finished

    def final_folder(self, request: SampleRequest) -> Path:
        return self.root / request.category / request.sample_id

    def partial_folder(self, request: SampleRequest) -> Path:
        return self.root / PARTIAL_DIR / request.category / request.sample_id

    def capture(self, request: SampleRequest, resume: bool = False, discard: bool = False) -> Path:
        """Record one sample; return its folder."""
        final, partial = self.final_folder(request), self.partial_folder(request)
        if final.exists():
            raise MulsenError(f"{final}: sample already captured (never overwritten); choose another sample id")
        progress = self._start(request, partial, resume, discard)
        # pre-flight: every device opens (and the configuration behind it is read) before anything is
        # written for this sample; a configuration error leaves no .partial folder behind
        with self.bench.open(request) as devices:
            if not partial.exists():
                partial.mkdir(parents=True)
            progress = replace(progress, devices=devices.description)
            self._save_progress(partial, progress)
            for step in STEPS:
                if getattr(progress.steps, step) is not None:
                    continue
                self._clean(partial, step)
                started = time.time()
                try:
                    self.announce(f"{request.category}/{request.sample_id}: step {step} "
                                  f"({STEPS.index(step) + 1}/{len(STEPS)})")
                    record = self._run_step(step, request, devices, partial)
                except BaseException as exc:
                    devices.arm.stop()
                    problem = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
                    progress = replace(progress, failures=(*progress.failures, Failure(step, problem, _now_iso())))
                    with contextlib.suppress(OSError):
                        self._save_progress(partial, progress)
                    if isinstance(exc, KeyboardInterrupt):  # the operator's summary: what is kept, heater state
                        raise CaptureInterrupted(request, step, progress.steps.done(), partial,
                                                 devices.heater.off_safely()) from None
                    if isinstance(exc, OSError):
                        where = f" ({exc.filename})" if exc.filename else ""
                        raise MulsenError(f"{partial}: writing the {step} step failed: {exc.strerror or exc}"
                                          f"{where}") from None
                    raise
                record = replace(record, seconds=round(time.time() - started, 3))
                progress = replace(progress, steps=progress.steps.with_step(step, record))
                self._save_progress(partial, progress)
        return self._finish(request, partial, final, progress)

    # -- bookkeeping ---------------------------------------------------------------------------------
    def _start(self, request: SampleRequest, partial: Path, resume: bool, discard: bool) -> ProgressRecord:
        if partial.exists():
            if discard:
                shutil.rmtree(partial)
            elif not resume:
                done = ", ".join(self._load_progress(partial).steps.done()) or "none"
                raise MulsenError(f"{request.category}/{request.sample_id}: an interrupted capture is in {partial} "
                                  f"(steps done: {done}); use --resume to continue it or --discard to start over")
            else:
                progress = self._load_progress(partial)
                if progress.request != request:
                    raise MulsenError(f"{partial}: was started for {asdict(progress.request)}, not for "
                                      f"{asdict(request)}; --discard it or use the same request")
                return replace(progress, resumed=(*progress.resumed, _now_iso()))
        return ProgressRecord(request, _now_iso())

    @staticmethod
    def _load_progress(partial: Path) -> ProgressRecord:
        try:
            return ProgressRecord.read(partial / PROGRESS_FILE)
        except DataFormatError as exc:
            raise MulsenError(f"{exc}; --discard this capture") from None

    @staticmethod
    def _save_progress(partial: Path, progress: ProgressRecord) -> None:
        progress.write(partial / PROGRESS_FILE)

    @staticmethod
    def _clean(partial: Path, step: str) -> None:
        """Remove what an earlier, failed attempt of ``step`` may have left."""
        for pattern in STEP_FILES[step]:
            for path in partial.glob(pattern):
                path.unlink()

    def _finish(self, request: SampleRequest, partial: Path, final: Path, progress: ProgressRecord) -> Path:
        record = CaptureRecord(
            request=progress.request, started=progress.started, finished=_now_iso(), resumed=progress.resumed,
            failures=progress.failures, steps=progress.steps, devices=progress.devices,
            settings={"lockin": asdict(self.config.lockin), "arm_speed_m_s": self.config.arm_speed_m_s,
                      **self.config.placement.describe()},
            operator=request.operator or getpass.getuser(),
        )
        if self.on_finished is not None:
            self.on_finished(partial, record)
        record = replace(record, files=tuple(sorted(p.name for p in partial.iterdir() if p.name != PROGRESS_FILE)))
        record.write(partial / CAPTURE_FILE)
        (partial / PROGRESS_FILE).unlink()
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            raise MulsenError(f"{final}: appeared during the capture; the new data stay in {partial}")
        partial.rename(final)
        with contextlib.suppress(OSError):  # tidy empty .partial/<category>/ folders
            partial.parent.rmdir()
            partial.parent.parent.rmdir()
        return final

    # -- steps ---------------------------------------------------------------------------------------
    def _run_step(self, step: str, request: SampleRequest, devices: SessionDevices, partial: Path
                  ) -> IrStep | ArmStep | RgbStep | ScansStep:
        if step == "ir":
            return record_ir(devices.ir_camera, devices.heater, devices.clock, self.config.lockin, partial,
                             save_raw=self.config.save_raw_ir, show_progress=self.show_progress)
        if step == "arm":
            return self._move_arm(devices, partial)
        if step == "rgb":
            return record_rgb(devices.rgb_camera, partial)
        return self._collect_scans(request, devices, partial)

    def _move_arm(self, devices: SessionDevices, partial: Path) -> ArmStep:
        import tifffile

        amplitude = tifffile.imread(partial / "ir_amplitude.tiff")
        intrinsics = None if devices.ir_intrinsics is None else np.asarray(devices.ir_intrinsics, float)
        choice = self.config.placement.tcp_pose_for_part(amplitude, intrinsics)
        start = devices.arm.pose()
        reached = devices.arm.move_linear(choice.tcp_pose, speed=self.config.arm_speed_m_s)
        return ArmStep(placement=choice.method, reached_pose=tuple(map(float, reached)),
                       part_ir_pixel=choice.part_ir_pixel, part_bench_xy_mm=choice.part_bench_xy_mm,
                       start_pose=tuple(map(float, start)), target_pose=tuple(map(float, choice.tcp_pose)),
                       joints=tuple(map(float, devices.arm.joints())))

    def _collect_scans(self, request: SampleRequest, devices: SessionDevices, partial: Path) -> ScansStep:
        watcher = ExportWatcher(devices.scan_folder, settle_s=self.config.scan_settle_s)
        devices.operator.request_scans(request)
        found = watcher.wait_for(2, self.config.scan_timeout_s)
        exports = []
        for label, item in zip(("a", "b"), found, strict=True):
            target = partial / f"scan_{label}{item.path.suffix.lower()}"
            with atomic_path(target, overwrite=False) as tmp:
                shutil.copyfile(item.path, tmp)
            exports.append(ScanExport(file=target.name, source=str(item.path), format=item.scan.format,
                                      points=len(item.scan.vertices),
                                      faces=0 if item.scan.faces is None else len(item.scan.faces),
                                      exported_at=datetime.fromtimestamp(item.completed_at, timezone.utc).isoformat()))
        return ScansStep(exports[0], exports[1])

