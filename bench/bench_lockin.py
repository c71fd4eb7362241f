"""Lock-in demodulation throughput (frames/s) for 640x480 16-bit frames on one core, and its memory.

Also: the end-to-end simulated lock-in run (heater simulator on a pty + TLSimu camera transport).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, as the issue asks

import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from mulsen.acquisition.lockin import LockInAccumulator, LockInWindow  # noqa: E402

WIDTH, HEIGHT = 640, 480
FS = 25.0


def frame_pool(count: int = 50) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(29000, 31000, (count, HEIGHT, WIDTH)).astype(np.uint16)


def demodulate_frames(pool: np.ndarray, frames: int) -> tuple[float, LockInAccumulator]:
    window = LockInWindow(0.1, t_on=0.0, settle_periods=0, periods=int(np.ceil(frames / FS * 0.1)) + 1)
    accumulator = LockInAccumulator((HEIGHT, WIDTH), window, scale=0.01)
    start = time.perf_counter()
    for k in range(frames):
        accumulator.add(pool[k % len(pool)], k / FS)
    accumulator.result()
    return time.perf_counter() - start, accumulator


def traced_peak_mib(pool: np.ndarray, frames: int) -> float:
    tracemalloc.start()
    demodulate_frames(pool, frames)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2 ** 20


def simulated_run() -> tuple[float, float]:
    from mulsen.acquisition.clock import ScaledClock
    from mulsen.acquisition.heater import open_heater
    from mulsen.acquisition.thermography import LockInSettings, run_lockin
    from mulsen.hardware_mocks.processes import SimulatorProcess
    from mulsen.hardware_mocks.sim_cameras import BenchPart, thermal_camera

    scale = 20.0
    clock = ScaledClock(scale)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "edges.jsonl"
        args = ["--edge-log", str(log), "--time-scale", str(scale), "--clock-epoch", repr(clock.epoch)]
        settings = LockInSettings(frequency_hz=0.5, periods=6, settle_periods=1, frame_rate_hz=10)
        heater_module = "mulsen.hardware_mocks.heater_sim"
        with SimulatorProcess(heater_module, args) as sim, open_heater(sim.endpoint, clock) as heater, \
                thermal_camera(BenchPart("cube", 2, "detachment_inside"), clock, log, "small") as camera:
            start = time.perf_counter()
            capture = run_lockin(camera, heater, clock, settings)
            wall = time.perf_counter() - start
    on = camera.maps.amplitude > 1.0
    error = np.median(np.abs(capture.result.phase_deg[on] - camera.maps.phase_deg[on]))
    return wall, float(error)


def main() -> None:
    pool = frame_pool()
    demodulate_frames(pool, 128)  # warm-up
    frames = 3000
    seconds, _ = demodulate_frames(pool, frames)
    print(f"demodulation_frames_per_s_640x480_u16_one_core: {frames / seconds:.0f} frames/s")
    print(f"demodulation_s_for_60s_at_25fps: {1500 * seconds / frames:.2f} s")
    small, large = traced_peak_mib(pool, 500), traced_peak_mib(pool, 5000)
    print(f"demodulation_peak_mib_500_frames: {small:.1f} MiB")
    print(f"demodulation_peak_mib_5000_frames: {large:.1f} MiB")
    print(f"demodulation_memory_growth_500_to_5000_frames: {large - small:.2f} MiB")
    wall, phase_error = simulated_run()
    print(f"simulated_lockin_run_wall_s_7_periods_at_0.5hz_scale20: {wall:.2f} s")
    print(f"simulated_lockin_median_phase_error: {phase_error:.2f} deg")
    print(f"peak_rss_mib: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
