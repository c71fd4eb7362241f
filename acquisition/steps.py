"""Capture steps shared by the one-off commands and the sample session: each writes into a folder
that the caller makes appear atomically, and returns the metadata it recorded."""

from __future__ import annotations

from pathlib import Path

from mulsen.core.errors import DeviceError
from mulsen.core.progress import progress_fraction
from mulsen.core.records import to_plain
from mulsen.dataset.captures import RGB_RECORD_FILE, IrStep, RgbStep
from mulsen.dataset.formats import write_rgb

from .camera import Camera
from .clock import Clock
from .heater import Heater
from .thermography import LockInSettings, RawFrameWriter, run_lockin, write_lockin_outputs


def record_rgb(camera: Camera, folder: Path) -> RgbStep:
    """One triggered RGB frame -> ``rgb.png`` (+ ``rgb.json``)."""
    frame = camera.grab()
    if frame.image.ndim != 3:
        raise DeviceError(camera.name, f"expected a colour image, got shape {frame.image.shape}")
    write_rgb(folder / "rgb.png", frame.image)
    record = RgbStep(file="rgb.png", timestamp=float(frame.timestamp), shape=tuple(frame.image.shape),
                     pixel_format=str(frame.pixel_format), camera=to_plain(camera.identity()))
    record.write(folder / RGB_RECORD_FILE)
    return record


def record_ir(camera: Camera, heater: Heater, clock: Clock, settings: LockInSettings, folder: Path,
              save_raw: bool = False, show_progress: bool = True) -> IrStep:
    """Lock-in run -> ``ir_amplitude.tiff``, ``ir_phase.tiff``, ``infrared.png``, ``ir_lockin.json``
    (+ ``ir_frames.tiff`` and its frame times when ``save_raw``)."""
    raw = RawFrameWriter(folder / "ir_frames.tiff") if save_raw else None
    try:
        # in the operator's clock: a time-scaled simulator's 120 s heating takes 12 wall seconds at scale 10
        wall = clock.real_seconds(settings.heating_s)
        seconds = f"{wall:.0f}" if wall >= 10 else f"{wall:.1f}"
        with progress_fraction(f"heating {seconds} s (lock-in {settings.frequency_hz:g} Hz)",
                               enabled=show_progress) as update:
            capture = run_lockin(camera, heater, clock, settings, on_frame=raw,
                                 on_status=lambda status: update(status.fraction, status.text()))
    finally:
        if raw is not None:
            raw.close()
    write_lockin_outputs(capture, folder)
    return IrStep(files=sorted(p.name for p in folder.iterdir() if p.name.startswith(("ir_", "infrared"))),
                  frames=len(capture.frame_times), frames_used=int(capture.result.frames_used),
                  edges=len(capture.edges), heater_off_confirmed=bool(capture.heater_off_confirmed),
                  heating_s=float(settings.heating_s))
