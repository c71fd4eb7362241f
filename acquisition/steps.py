"""Capture steps shared by the one-off commands and the sample session: each writes into a folder
that the caller makes appear atomically, and returns the metadata it recorded."""

from __future__ import annotations

import json
from pathlib import Path

from dataset.formats import write_rgb
from mulsen.atomic import atomic_write_text
from mulsen.progress import progress_fraction

from .camera import Camera
from .clock import Clock
from .heater import Heater
from .thermography import LockInSettings, RawFrameWriter, run_lockin, write_lockin_outputs


def record_rgb(camera: Camera, folder: Path) -> dict:
    """One triggered RGB frame -> ``rgb.png`` (+ ``rgb.json``)."""
    frame = camera.grab()
    if frame.image.ndim != 3:
        raise ValueError(f"{camera.name}: expected a colour image, got shape {frame.image.shape}")
    write_rgb(folder / "rgb.png", frame.image)
    record = {"file": "rgb.png", "timestamp": frame.timestamp, "shape": list(frame.image.shape),
              "pixel_format": frame.pixel_format, "camera": camera.identity()}
    atomic_write_text(folder / "rgb.json", json.dumps(record, indent=2, default=str))
    return record


def record_ir(camera: Camera, heater: Heater, clock: Clock, settings: LockInSettings, folder: Path,
              save_raw: bool = False, show_progress: bool = True) -> dict:
    """Lock-in run -> ``ir_amplitude.tiff``, ``ir_phase.tiff``, ``infrared.png``, ``ir_lockin.json``
    (+ ``ir_frames.tiff`` and its frame times when ``save_raw``)."""
    raw = RawFrameWriter(folder / "ir_frames.tiff") if save_raw else None
    try:
        with progress_fraction(f"heating {settings.heating_s:.0f} s (lock-in {settings.frequency_hz:g} Hz)",
                               enabled=show_progress) as update:
            capture = run_lockin(camera, heater, clock, settings, on_frame=raw, on_progress=update)
    finally:
        if raw is not None:
            raw.close()
    write_lockin_outputs(capture, folder)
    return {"files": sorted(p.name for p in folder.iterdir() if p.name.startswith(("ir_", "infrared"))),
            "frames": len(capture.frame_times), "frames_used": capture.result.frames_used,
            "edges": len(capture.edges), "heater_off_confirmed": capture.heater_off_confirmed,
            "heating_s": settings.heating_s}
