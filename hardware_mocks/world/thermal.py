"""Lock-in thermography physics and the IR renderer (frame sequences and the amplitude/phase fast path).

Layer model (hardware-notes D.4): a layer of thickness L over an interface with reflection Γ gives
the surface response  T ∝ (1 + Γ e^{-2σL}) / (1 - Γ e^{-2σL}),  σ = (1 + i)/μ,  μ = sqrt(α / (π f)).
Sound thick material sits at -45° relative to the heating flux; an air gap (Γ ≈ 0.98) at depth d
raises the amplitude and shifts the phase, fading as d/μ grows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from mulsen.acquisition.lockin import fit_edge_train

from .scene import DownCamera, Scene, trace

AIR_GAP_REFLECTION = 0.98
BENCH_EFFUSIVITY = 24000.0  # aluminium bench plate
BENCH_EMISSIVITY = 0.3
SOUND_AMPLITUDE_K = 2.5  # fundamental amplitude of a thick sound part at the lock-in frequency
DC_RISE_FACTOR = 3.0  # steady DC rise / modulation amplitude
DC_TAU_S = 40.0
AMBIENT_K = 295.15
HARMONICS = (1, 3, 5)


def thermal_length_mm(diffusivity_m2s: float, frequency_hz: float) -> float:
    return float(np.sqrt(diffusivity_m2s / (np.pi * frequency_hz)) * 1e3)


def layer_factor(thickness_mm: np.ndarray, mu_mm: float, reflection: np.ndarray | float) -> np.ndarray:
    """(1 + Γ e^{-2σL}) / (1 - Γ e^{-2σL}); tends to 1 for L >> μ."""
    sigma = (1 + 1j) / mu_mm
    g = np.asarray(reflection) * np.exp(-2 * sigma * np.asarray(thickness_mm, dtype=np.float64))
    return (1 + g) / (1 - g)


def interface_reflection(e_top: float, e_bottom: float) -> float:
    return (e_top - e_bottom) / (e_top + e_bottom)


@dataclass
class ThermalMaps:
    """Complex fundamental response per pixel (K), its harmonics, and the exact IR defect mask."""

    harmonics: dict[int, np.ndarray]  # n -> complex response to the n-th harmonic of the heating flux
    emissivity_gain: np.ndarray  # amplitude scaling (illumination x emissivity), excluded from phase
    mask: np.ndarray
    frequency_hz: float

    @property
    def amplitude(self) -> np.ndarray:
        return np.abs(self.harmonics[1]).astype(np.float32)

    @property
    def phase_deg(self) -> np.ndarray:
        return np.rad2deg(np.angle(self.harmonics[1])).astype(np.float32)


def thermal_maps(scene: Scene, camera: DownCamera, frequency_hz: float | None = None,
                 harmonics: tuple[int, ...] = HARMONICS) -> ThermalMaps:
    """Complex lock-in response of every pixel for each odd harmonic of a square heating wave."""
    spec = scene.part.spec
    f = frequency_hz or spec.thermal.lockin_hz
    hit = trace(scene, camera)
    on = hit.on_part
    thickness = np.where(on, scene.part.thickness(hit.u, hit.v), 1e3)
    backing = interface_reflection(spec.thermal.effusivity, BENCH_EFFUSIVITY)
    depth = np.full(on.shape, np.inf)
    for d in scene.defects:
        if "infrared" in d.visible_in:
            depth = np.where(d.region(hit.u, hit.v, "infrared") & on, np.minimum(depth, d.depth_mm), depth)
    has_defect = np.isfinite(depth)
    # Lamp spot (±20 %) and emissivity scale the amplitude only; phase is invariant to them.
    cx, cy = camera.principal_point
    jj, ii = np.meshgrid(np.arange(camera.width), np.arange(camera.height))
    spot = 1.1 - 0.2 * ((jj - cx) ** 2 + (ii - cy) ** 2) / (cx ** 2 + cy ** 2)
    emissivity = np.where(on, spec.thermal.emissivity, BENCH_EMISSIVITY) / spec.thermal.emissivity
    gain = (spot * emissivity).astype(np.float64)
    pixel_mm = (camera.position_mm[2] - hit.z) / camera.focal_px
    blur_px = None
    result = {}
    for n in harmonics:
        mu = thermal_length_mm(spec.thermal.diffusivity_m2s, n * f)
        scale = SOUND_AMPLITUDE_K / n ** 1.5 * np.exp(-1j * np.pi / 4)
        sound = scale * layer_factor(thickness, mu, backing)
        defect = scale * layer_factor(np.where(has_defect, depth, 1e3), mu, AIR_GAP_REFLECTION)
        contrast = np.where(has_defect & on, defect / sound - 1, 0)
        if has_defect.any():
            # Lateral heat flow spreads the contrast over about one diffusion length.
            blur_px = mu / float(np.median(pixel_mm[on])) if on.any() else 1.0
            contrast = gaussian_filter(contrast.real, blur_px) + 1j * gaussian_filter(contrast.imag, blur_px)
        bench = scale * (spec.thermal.effusivity / BENCH_EFFUSIVITY)
        response = np.where(on, sound * (1 + contrast), bench)
        result[n] = response * gain
    mask = np.zeros(on.shape, bool)
    for d in scene.defects:
        mask |= d.region(hit.u, hit.v, "infrared")
    return ThermalMaps(result, gain, mask & on, f)


@dataclass(frozen=True)
class HeatingSchedule:
    """Periodic square heating at ``power`` (0-1): on at ``t_on`` + k/f for half a period, until ``t_stop``.

    ``frequency_hz`` is None while only the first switch-on is known (the heater is simply on).
    """

    frequency_hz: float | None
    t_on: float
    power: float = 1.0
    t_stop: float = float("inf")

    @classmethod
    def from_edges(cls, edges: list[tuple[float, bool]], power: float = 1.0,
                   now: float | None = None) -> HeatingSchedule | None:
        """Recover the schedule from a heater edge log ``[(t, on), ...]`` seen up to time ``now``.

        Returns None before the first switch-on. The modulation is taken as stopped at the last
        edge when no further edge came within 1.5 half-periods (heater switched off or stuck).
        """
        ons = [t for t, state in edges if state]
        if not ons:
            return None
        train = np.array([t for t, _ in edges if t >= ons[0]], float)
        if len(train) >= 2:
            t_on, half = fit_edge_train(train, float(np.median(np.diff(train))), fit_period=True)
            frequency = 0.5 / half
        else:
            t_on, frequency = ons[0], None
        t_stop = float("inf")
        last_t, last_state = edges[-1]
        if frequency is not None and now is not None and now - last_t > 0.75 / frequency:
            t_stop = last_t if not last_state else last_t + 0.5 / frequency
        return cls(frequency, float(t_on), power, t_stop)

    def edges(self, periods: int) -> list[tuple[float, bool]]:
        if self.frequency_hz is None:
            raise ValueError("the schedule's frequency is not known yet (one switch-on so far)")
        period = 1 / self.frequency_hz
        out = []
        for k in range(periods):
            out += [(self.t_on + k * period, True), (self.t_on + (k + 0.5) * period, False)]
        return out


def temperature_frame(maps: ThermalMaps, schedule: HeatingSchedule | None, t: float, drift_k_per_s: float = 0.0,
                      offset_k: np.ndarray | float = 0.0) -> np.ndarray:
    """Noise-free surface temperature (K) at time t under periodic square heating."""
    frame = AMBIENT_K + offset_k + drift_k_per_s * t + np.zeros(maps.amplitude.shape)
    if schedule is None or t < schedule.t_on:
        return frame
    dt = t - schedule.t_on
    if schedule.frequency_hz is not None and t < schedule.t_stop:
        w = 2 * np.pi * schedule.frequency_hz
        for n, response in maps.harmonics.items():
            # the square wave's n-th harmonic is a sine at n*w: response * e^{i(n w dt - pi/2)}
            frame = frame + schedule.power * (response * np.exp(1j * (n * w * dt - np.pi / 2))).real
    dc = DC_RISE_FACTOR * SOUND_AMPLITUDE_K * (1 - np.exp(-min(dt, schedule.t_stop - schedule.t_on) / DC_TAU_S))
    return frame + schedule.power * dc * maps.emissivity_gain


def render_ir_sequence(maps: ThermalMaps, schedule: HeatingSchedule, times: np.ndarray,
                       rng: np.random.Generator, netd_k: float = 0.04, drift_k_per_s: float = 0.002,
                       fixed_pattern_k: float = 0.5):
    """Yield 16-bit frames (TemperatureLinear10mK counts: K = 0.01 DN) at the given times."""
    offset = rng.uniform(-fixed_pattern_k, fixed_pattern_k, maps.amplitude.shape)
    for t in times:
        kelvin = temperature_frame(maps, schedule, float(t), drift_k_per_s, offset)
        kelvin = kelvin + rng.normal(0, netd_k, kelvin.shape)
        yield np.clip(np.round(kelvin * 100), 0, 65535).astype(np.uint16)
