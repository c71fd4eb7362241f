"""Lock-in demodulation: streaming least squares of a drift polynomial jointly with cos/sin.

Every pixel's temperature is modelled over whole modulation periods as

    T(t) = c0 + c1·τ + c2·τ² + I·cos(ωt') + Q·sin(ωt'),    t' = t - t_on,  τ = (t - t_mid) / half_span

where ``t_on`` is the first logged heater switch-on. The design row x(t) is the same for every
pixel, so the fit needs only the five images Σ x_k(t)·T(t) and the 5x5 matrix Σ x xᵀ: memory is
constant in the number of frames. This is the correlation method with a joint drift fit; the
four-point method uses 4 samples per period and is several times noisier in phase.

Phase is reported relative to the fundamental of the heating flux (a square wave switched on at
``t_on`` has fundamental sin(ωt')), so sound thick material sits at -45° and the amplitude is the
fundamental's amplitude in the units of the input frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mulsen.core.errors import ConfigError

BASIS_SIZE = 5
DEFAULT_GRAY_REFERENCE_K = 4.0  # 1.6 x the nominal sound amplitude of the bench (2.5 K)
MULSEN_IR_SIZE = (640, 480)  # width, height of the MulSen-AD infrared PNG
# The one lock-in frequency range (Hz): below it a run takes hours, above it the thermal length of the
# bench's parts is too short for subsurface defects; every setting is checked against it here.
FREQUENCY_RANGE_HZ = (0.01, 2.0)


def check_frequency(frequency_hz: float) -> None:
    low, high = FREQUENCY_RANGE_HZ
    if not low <= frequency_hz <= high:
        raise ConfigError(f"lock-in frequency must be {low:g}-{high:g} Hz, got {frequency_hz:g}")


@dataclass(frozen=True)
class LockInWindow:
    """The frames that enter the fit: whole periods after ``settle_periods`` transient ones."""

    frequency_hz: float
    t_on: float
    settle_periods: int
    periods: int

    def __post_init__(self) -> None:
        check_frequency(self.frequency_hz)
        if self.periods < 1 or self.settle_periods < 0:
            raise ConfigError("need at least one integrated period and a non-negative settling count")

    @property
    def start(self) -> float:
        return self.t_on + self.settle_periods / self.frequency_hz

    @property
    def stop(self) -> float:
        return self.t_on + (self.settle_periods + self.periods) / self.frequency_hz

    def contains(self, t: np.ndarray) -> np.ndarray:
        return (t >= self.start) & (t < self.stop)


@dataclass
class LockInResult:
    amplitude: np.ndarray  # float32, input units (K for temperature frames)
    phase_deg: np.ndarray  # float32, relative to the heating flux fundamental, in (-180, 180]
    offset: np.ndarray  # float32, fitted mean level at the window centre
    drift_per_s: np.ndarray  # float32, fitted linear drift at the window centre
    frequency_hz: float
    frames_used: int
    metadata: dict = field(default_factory=dict)


def fit_edge_train(times: np.ndarray, half_period_s: float, fit_period: bool = False) -> tuple[float, float]:
    """Least-squares onset (and optionally half period) of a 50 % square wave from its switch times.

    Edge i is assigned the index n_i = round((t_i - t_0) / half); then t_i = t_on + n_i · half is fitted,
    so that the jitter of single edges averages out.
    """
    t = np.asarray(times, dtype=np.float64)
    n = np.round((t - t[0]) / half_period_s)
    if fit_period and len(np.unique(n)) >= 2:
        half_period_s, t_on = np.polyfit(n, t, 1)
    else:
        t_on = float(np.mean(t - n * half_period_s))
    return float(t_on), float(half_period_s)


def design_rows(times: np.ndarray, window: LockInWindow) -> np.ndarray:
    """(n, 5) rows [1, τ, τ², cos ωt', sin ωt'] for the given times."""
    t = np.asarray(times, dtype=np.float64)
    mid = 0.5 * (window.start + window.stop)
    half = 0.5 * (window.stop - window.start)
    tau = (t - mid) / half
    phase = 2 * np.pi * window.frequency_hz * (t - window.t_on)
    return np.stack([np.ones_like(t), tau, tau * tau, np.cos(phase), np.sin(phase)], axis=1)


class LockInAccumulator:
    """Streaming demodulator: ``add`` frames (any order, any spacing), then ``result``.

    Frames are buffered in blocks and folded into the sums with one matrix product per block
    (float32 products of small numbers, float64 totals): a reference frame is subtracted first so
    that 16-bit counts around 30000 do not cost float32 precision.
    """

    def __init__(self, shape: tuple[int, int], window: LockInWindow, scale: float = 1.0, block: int = 32) -> None:
        self.shape = tuple(shape)
        self.window = window
        self.scale = float(scale)  # input units per count (0.01 K/DN for TemperatureLinear10mK)
        self.block = block
        pixels = int(np.prod(self.shape))
        self._sums = np.zeros((BASIS_SIZE, pixels), np.float64)
        self._gram = np.zeros((BASIS_SIZE, BASIS_SIZE), np.float64)
        self._buffer = np.empty((block, pixels), np.float32)
        self._rows = np.empty((block, BASIS_SIZE), np.float64)
        self._filled = 0
        self._reference: np.ndarray | None = None
        self.frames_used = 0
        self.frames_seen = 0

    def add(self, frame: np.ndarray, t: float) -> bool:
        """Fold in one frame taken at clock time ``t``; return whether it lies in the window."""
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} differs from the first frame's {self.shape}")
        self.frames_seen += 1
        if not self.window.contains(np.array([t]))[0]:
            return False
        flat = frame.reshape(-1)
        if self._reference is None:
            self._reference = flat.astype(np.float32)
        np.subtract(flat, self._reference, out=self._buffer[self._filled], casting="unsafe")
        self._rows[self._filled] = design_rows(np.array([t]), self.window)[0]
        self._filled += 1
        self.frames_used += 1
        if self._filled == self.block:
            self._flush()
        return True

    def _flush(self) -> None:
        if self._filled == 0:
            return
        rows = self._rows[: self._filled]
        self._sums += (rows.T.astype(np.float32) @ self._buffer[: self._filled]).astype(np.float64)
        self._gram += rows.T @ rows
        self._filled = 0

    def result(self) -> LockInResult:
        self._flush()
        if self.frames_used < 2 * BASIS_SIZE:
            raise ValueError(f"only {self.frames_used} frames fell inside the lock-in window "
                             f"[{self.window.start:.3f}, {self.window.stop:.3f}) s; need at least {2 * BASIS_SIZE}")
        if np.linalg.cond(self._gram) > 1e10:
            raise ValueError("frame times do not sample the modulation period (singular lock-in fit)")
        coef = np.linalg.solve(self._gram, self._sums) * self.scale
        in_phase, quadrature = coef[3], coef[4]
        amplitude = np.hypot(in_phase, quadrature)
        # T = A cos(ωt' + φc); the flux fundamental is sin(ωt') = cos(ωt' - 90°): phase = φc + 90°.
        phase = np.rad2deg(np.arctan2(-quadrature, in_phase)) + 90.0
        phase = (phase + 180.0) % 360.0 - 180.0
        half_span = 0.5 * (self.window.stop - self.window.start)
        offset = coef[0] + (self._reference.astype(np.float64) * self.scale if self._reference is not None else 0)
        shape = self.shape
        return LockInResult(
            amplitude=amplitude.reshape(shape).astype(np.float32),
            phase_deg=phase.reshape(shape).astype(np.float32),
            offset=offset.reshape(shape).astype(np.float32),
            drift_per_s=(coef[1] / half_span).reshape(shape).astype(np.float32),
            frequency_hz=self.window.frequency_hz,
            frames_used=self.frames_used,
            metadata={"method": "correlation+quadratic drift (least squares)", "f_lock_hz": self.window.frequency_hz,
                      "n_periods": self.window.periods, "settle_periods": self.window.settle_periods,
                      "frames_used": self.frames_used},
        )


def demodulate(frames, times, window: LockInWindow, scale: float = 1.0) -> LockInResult:
    """Demodulate an iterable of frames taken at ``times`` (convenience wrapper over the accumulator)."""
    accumulator = None
    for frame, t in zip(frames, times, strict=True):
        if accumulator is None:
            accumulator = LockInAccumulator(frame.shape, window, scale)
        accumulator.add(frame, float(t))
    if accumulator is None:
        raise ValueError("no frames to demodulate")
    return accumulator.result()


def amplitude_to_gray(amplitude: np.ndarray, reference_k: float = DEFAULT_GRAY_REFERENCE_K) -> np.ndarray:
    """8-bit IR image for the MulSen-AD layout: gray = round(255 · amplitude / reference_k), clipped.

    The reference is fixed per setup, never per image, so gray levels compare across samples.
    """
    return np.clip(np.round(255 * np.asarray(amplitude) / reference_k), 0, 255).astype(np.uint8)


def mulsen_ir_image(amplitude: np.ndarray, reference_k: float = DEFAULT_GRAY_REFERENCE_K) -> np.ndarray:
    """The MulSen-AD infrared PNG content: 640x480 gray (area-resampled when the camera differs)."""
    gray = amplitude_to_gray(amplitude, reference_k)
    if gray.shape[::-1] != MULSEN_IR_SIZE:
        import cv2

        gray = cv2.resize(gray, MULSEN_IR_SIZE, interpolation=cv2.INTER_AREA)
    return gray
