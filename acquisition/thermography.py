"""Lock-in thermography acquisition: heater edges and IR frames on one clock, demodulated on the fly.

The host times the edges (host-timed mode): it switches the output at t_on + k/(2f) and logs
each switch's acknowledged time, which is the phase reference. Frames are triggered at the
frame rate and folded into the streaming demodulator as they arrive, so memory does not grow
with the heating time; raw frames can be streamed to a TIFF on the side.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mulsen.core.atomic import atomic_path
from mulsen.core.errors import ConfigError, MulsenError
from mulsen.core.records import Record, to_plain

from .camera import Camera
from .clock import Clock
from .heater import Heater
from .lockin import (
    BASIS_SIZE,
    DEFAULT_GRAY_REFERENCE_K,
    LockInAccumulator,
    LockInResult,
    LockInWindow,
    check_frequency,
    design_rows,
    fit_edge_train,
    mulsen_ir_image,
)

LEAD_S = 0.2  # first frame this long before the first switch-on (a dark reference frame)


@dataclass(frozen=True)
class LockInSettings:
    frequency_hz: float = 0.1
    periods: int = 6
    settle_periods: int = 1
    frame_rate_hz: float = 25.0
    power_percent: float = 100.0
    counts_to_kelvin: float = 0.01  # TemperatureLinear10mK
    gray_reference_k: float = DEFAULT_GRAY_REFERENCE_K
    keepalive_s: float = 2.0
    heater_timing: str = "device"  # device: the controller modulates (exact edges); host: we toggle OUTP

    def __post_init__(self) -> None:
        check_frequency(self.frequency_hz)
        if self.periods < 1 or self.settle_periods < 0:
            raise ConfigError("need at least 1 integrated period and >= 0 settling periods")
        if self.frame_rate_hz < 4 * self.frequency_hz:
            raise ConfigError(f"frame rate {self.frame_rate_hz:g} Hz is below 4 frames per period")
        if self.heater_timing not in ("device", "host"):
            raise ConfigError(f"heater timing must be 'device' or 'host', got {self.heater_timing!r}")
        if not 0 < self.power_percent <= 100:
            raise ConfigError(f"heater power must be in (0, 100] %, got {self.power_percent:g}")
        if not self.gray_reference_k > 0:
            raise ConfigError(f"gray reference must be a positive amplitude in K, got {self.gray_reference_k:g}")

    @property
    def heating_s(self) -> float:
        return (self.settle_periods + self.periods) / self.frequency_hz


@dataclass(frozen=True)
class HeaterEdge:
    t: float  # clock seconds
    on: bool


@dataclass(frozen=True)
class FrameSpan:
    count: int
    first_t: float
    last_t: float


@dataclass(frozen=True)
class LockInRecord(Record):
    """``ir_lockin.json``: the settings, heater edges and demodulation of one lock-in run."""

    FORMAT = "mulsen-lockin"
    VERSION = 1
    WHAT = "lock-in record"

    settings: LockInSettings
    heating_s: float
    edges: tuple[HeaterEdge, ...]
    frames: FrameSpan
    lockin: dict[str, Any]  # the demodulator's metadata (method, frequency, frames used, units, reference)
    gray_mapping: str
    heater: str
    camera: dict[str, Any]
    heater_off_confirmed: bool


LOCKIN_RECORD_FILE = "ir_lockin.json"


@dataclass
class LockInCapture:
    result: LockInResult
    settings: LockInSettings
    edges: list[tuple[float, bool]]  # host-logged switch times (clock seconds)
    frame_times: np.ndarray
    heater: str
    camera: dict
    heater_off_confirmed: bool = True


def edge_schedule(t_on: float, settings: LockInSettings) -> list[tuple[float, bool]]:
    """Planned switch times: on at t_on + k/f, off half a period later, for all heating periods."""
    period = 1.0 / settings.frequency_hz
    count = settings.settle_periods + settings.periods
    return [(t_on + k * period + half * period / 2, not half) for k in range(count) for half in (0, 1)]


class EdgeTimer(threading.Thread):
    """Runs the heater on its own thread, so edges never wait for a camera grab, and keeps the
    controller's watchdog fed. Every edge is logged with the controller's own time (``EVT?``) mapped
    to our clock: the logged times, not the plan, are the phase reference.

    ``device`` timing: the controller modulates itself (``SOUR:MOD``), edges are exact on its clock and
    are collected by polling. ``host`` timing: the thread toggles the output at the planned times
    (for plain controllers; edges then jitter by the host's scheduling latency).
    """

    def __init__(self, heater: Heater, clock: Clock, plan: list[tuple[float, bool]], settings: LockInSettings,
                 device_offset: float) -> None:
        super().__init__(name="heater-edges", daemon=True)
        self.heater, self.clock, self.plan, self.settings = heater, clock, plan, settings
        self.device_offset = device_offset
        self.edges: list[tuple[float, bool]] = []
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def _wait_until(self, due: float, poll_s: float) -> bool:
        """Sleep until ``due`` in steps of at most ``poll_s``, polling the controller; False when stopped."""
        while not self._stop_event.is_set():
            wait = min(due - self.clock.now(), poll_s)
            if wait <= 0:
                return True
            self._stop_event.wait(self.clock.real_seconds(wait))
            self._poll()
        return False

    def _poll(self) -> None:
        device_t, state = self.heater.last_edge()  # also feeds the watchdog
        t = device_t + self.device_offset
        if (state or self.edges) and (not self.edges or abs(self.edges[-1][0] - t) > 1e-9):
            self.edges.append((t, state))

    def run(self) -> None:
        try:
            if self.settings.heater_timing == "device":
                self._run_device_timed()
            else:
                self._run_host_timed()
        except BaseException as exc:  # reported to the acquiring thread
            self.error = exc

    def _run_device_timed(self) -> None:
        f = self.settings.frequency_hz
        poll = min(self.settings.keepalive_s, 0.125 / f)  # several polls per half period: no edge missed
        self.heater.configure_modulation(f)
        if not self._wait_until(self.plan[0][0], self.settings.keepalive_s):
            return
        self.heater.modulate(True)
        # stop in the middle of the last off half-period, so no extra switch-on can slip in
        if self._wait_until(self.plan[-1][0] + 0.25 / f, poll):
            self.heater.modulate(False)
            self._poll()

    def _run_host_timed(self) -> None:
        for due, on in self.plan:
            if not self._wait_until(due, self.settings.keepalive_s):
                return
            self.heater.switch(on)
            self._poll()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass(frozen=True)
class HeatingStatus:
    """What an operator watches during a lock-in run, in the clock they live in (``real`` seconds are wall
    seconds even when the simulators run time-scaled)."""

    fraction: float  # of the run done
    period: int  # 1-based period of the heating (0: before the first switch-on)
    periods: int  # settling + integrated periods
    settling: bool  # the current period is a settling one (not integrated)
    frames: int
    fps: float  # frames per lock-in-clock second so far
    heater_on: bool
    amplitude: float | None  # live lock-in amplitude of the frame centre (K), None until enough frames
    snr: float | None  # that amplitude over its standard error
    elapsed_real_s: float
    remaining_real_s: float

    def text(self) -> str:
        when = "before the first switch-on" if self.period == 0 else \
            f"period {self.period}/{self.periods}{' (settling)' if self.settling else ''}"
        live = "amplitude -" if self.amplitude is None else f"amplitude {self.amplitude:.3f} K, SNR {self.snr:.0f}"
        return (f"{when} · {self.frames} frames, {self.fps:.1f} fps · heater {'ON' if self.heater_on else 'off'} "
                f"· {live} · {self.remaining_real_s:.0f} s left")


class LiveAmplitude:
    """A running lock-in estimate of the mean of the frame's central quarter: one number per frame, the same
    model as the image demodulation (offset, drift, curvature, cos, sin), kept as running sums so each frame
    costs the same. Amplitude over its standard error is the SNR an operator can watch grow; it says early when
    the part does not respond."""

    def __init__(self, window: LockInWindow, scale: float) -> None:
        self.window, self.scale = window, scale
        self.count = 0
        self._gram = np.zeros((BASIS_SIZE, BASIS_SIZE))
        self._sums = np.zeros(BASIS_SIZE)
        self._squares = 0.0
        self._reference: float | None = None

    def add(self, frame: np.ndarray, t: float) -> None:
        if not self.window.contains(np.array([t]))[0]:
            return
        h, w = frame.shape[:2]
        value = float(frame[h // 4: h - h // 4, w // 4: w - w // 4].mean()) * self.scale
        if self._reference is None:
            self._reference = value  # sums about the first value: no digits lost to a large offset
        value -= self._reference
        row = design_rows(np.array([t]), self.window)[0]
        self._gram += np.outer(row, row)
        self._sums += row * value
        self._squares += value * value
        self.count += 1

    def estimate(self) -> tuple[float, float] | None:
        """(amplitude, SNR), or None before enough frames (four times the model's terms)."""
        if self.count < 4 * BASIS_SIZE or np.linalg.cond(self._gram) > 1e10:
            return None
        coef = np.linalg.solve(self._gram, self._sums)
        residual = max(self._squares - float(coef @ self._sums), 0.0)  # least-squares residual sum of squares
        amplitude = float(np.hypot(coef[3], coef[4]))
        error = float(np.sqrt(residual / max(self.count - BASIS_SIZE, 1) * 2.0 / self.count))
        return amplitude, (amplitude / error if error > 0 else float("inf"))


def run_lockin(camera: Camera, heater: Heater, clock: Clock, settings: LockInSettings,
               on_frame: Callable[[np.ndarray, float], None] | None = None,
               on_status: Callable[[HeatingStatus], None] | None = None) -> LockInCapture:
    """Heat, record and demodulate one sample; the heater is off when this returns or raises. ``on_status``:
    called after every frame with the operator's view of the run."""
    heater.set_power(settings.power_percent)
    start = clock.now() + LEAD_S
    plan = edge_schedule(start + LEAD_S, settings)
    end = plan[-1][0] + 0.5 / settings.frequency_hz
    frame_period = 1.0 / settings.frame_rate_hz
    timer = EdgeTimer(heater, clock, plan, settings, heater.clock_offset())
    times: list[float] = []
    accumulator: LockInAccumulator | None = None
    live: LiveAmplitude | None = None
    next_frame = start
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(2e-4)  # the edge thread gets the GIL within 0.2 ms, not the default 5 ms
    timer.start()
    try:
        while next_frame < end:
            if timer.error is not None:
                raise timer.error
            clock.sleep_until(next_frame)
            frame = camera.grab()
            times.append(frame.timestamp)
            if on_frame:
                on_frame(frame.image, frame.timestamp)
            if accumulator is None and timer.edges:
                # frames before the first switch-on lie outside the window anyway
                window = LockInWindow(settings.frequency_hz, timer.edges[0][0], settings.settle_periods,
                                      settings.periods)
                accumulator = LockInAccumulator(frame.image.shape, window, settings.counts_to_kelvin)
                live = LiveAmplitude(window, settings.counts_to_kelvin)
            if accumulator is not None and live is not None:
                accumulator.add(frame.image, frame.timestamp)
                live.add(frame.image, frame.timestamp)
            next_frame += frame_period
            if frame.timestamp > next_frame:  # the camera is slower than asked: skip, never pile up
                next_frame = frame.timestamp + frame_period - (frame.timestamp - next_frame) % frame_period
            if on_status:
                on_status(_status(frame.timestamp, start, end, times, timer.edges, live, settings, clock))
    finally:
        timer.stop()
        sys.setswitchinterval(switch_interval)
        confirmed = heater.off_safely()
    if timer.error is not None:
        raise timer.error
    if not confirmed:
        raise MulsenError(f"{heater.name}: could not confirm that the heater is off; check it before continuing")
    if accumulator is None:
        raise MulsenError(f"{camera.name}: no frames were recorded during heating")
    try:
        result = accumulator.result()
    except ValueError as exc:
        raise MulsenError(f"{camera.name}: lock-in failed: {exc}") from None
    # Phase reference = the flux onset fitted to all logged edges (their jitter averages out); the fit
    # used the first edge, and a reference shift is an exact rotation of the demodulated phase.
    t_on, _ = fit_edge_train(np.array([t for t, _ in timer.edges]), 0.5 / settings.frequency_hz)
    correction = 360.0 * settings.frequency_hz * (t_on - accumulator.window.t_on)
    result.phase_deg = ((result.phase_deg + correction + 180.0) % 360.0 - 180.0).astype(np.float32)
    fs = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    result.metadata.update({"fs_hz": round(fs, 4), "units": {"amplitude": "K", "phase": "deg"},
                            "phase_reference": "heating flux fundamental (sound thick material at -45 deg)"})
    return LockInCapture(result, settings, timer.edges, np.asarray(times), heater.name,
                         camera.identity(), heater_off_confirmed=confirmed)


def _status(now: float, start: float, end: float, times: list[float], edges: list[tuple[float, bool]],
            live: LiveAmplitude | None, settings: LockInSettings, clock: Clock) -> HeatingStatus:
    total = settings.settle_periods + settings.periods
    period = 0
    if edges:
        period = min(total, int((now - edges[0][0]) * settings.frequency_hz) + 1)
    fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
    estimate = live.estimate() if live is not None else None
    return HeatingStatus(min(1.0, (now - start) / (end - start)), period, total,
                         0 < period <= settings.settle_periods, len(times), fps, bool(edges and edges[-1][1]),
                         None if estimate is None else estimate[0], None if estimate is None else estimate[1],
                         clock.real_seconds(now - start), clock.real_seconds(max(0.0, end - now)))


def write_lockin_outputs(capture: LockInCapture, folder: Path) -> list[Path]:
    """Amplitude/phase float32 TIFFs (tagged), the MulSen-AD 640x480 gray PNG and a JSON record.

    Each file is written atomically; the caller makes the folder itself appear atomically.
    """
    import tifffile

    from mulsen.dataset.formats import write_ir

    folder.mkdir(parents=True, exist_ok=True)
    result = capture.result
    tags = {**result.metadata, "f_lock_hz": result.frequency_hz}
    written = []
    for name, array, unit in (("amplitude", result.amplitude, "K"), ("phase", result.phase_deg, "deg")):
        path = folder / f"ir_{name}.tiff"
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, array.astype(np.float32), metadata={**tags, "quantity": name, "unit": unit})
        written.append(path)
    gray_path = folder / "infrared.png"
    write_ir(gray_path, mulsen_ir_image(result.amplitude, capture.settings.gray_reference_k))
    written.append(gray_path)
    record = LockInRecord(
        settings=capture.settings, heating_s=capture.settings.heating_s,
        edges=tuple(HeaterEdge(float(t), bool(on)) for t, on in capture.edges),
        frames=FrameSpan(len(capture.frame_times), float(capture.frame_times[0]), float(capture.frame_times[-1])),
        lockin=to_plain(tags),
        gray_mapping=f"gray = clip(round(255 * amplitude_K / {capture.settings.gray_reference_k}), 0, 255), "
                     "area-resampled to 640x480",
        heater=capture.heater, camera=to_plain(capture.camera), heater_off_confirmed=capture.heater_off_confirmed)
    record_path = folder / LOCKIN_RECORD_FILE
    record.write(record_path)
    written.append(record_path)
    return written


class RawFrameWriter:
    """Streams raw 16-bit frames into one multi-page TIFF (constant memory); times go to a sidecar."""

    def __init__(self, path: Path) -> None:
        import tifffile

        self.path = path
        self._writer = tifffile.TiffWriter(path, bigtiff=True)
        self.times: list[float] = []

    def __call__(self, image: np.ndarray, t: float) -> None:
        self._writer.write(image, contiguous=True, metadata=None)
        self.times.append(t)

    def close(self) -> None:
        self._writer.close()
        np.savetxt(self.path.with_suffix(".times.txt"), np.asarray(self.times), fmt="%.6f",
                   header="clock seconds of each frame in ir_frames.tiff")
