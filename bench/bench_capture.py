"""Capture session on the simulators: wall time per sample split by step, and scan import speed per format.

Heating is compressed by the simulated clock (time scale 20: a 10 s lock-in run takes 0.5 s).
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path

from mulsen.acquisition.session import CaptureSession, SampleRequest, SessionConfig
from mulsen.acquisition.thermography import LockInSettings
from mulsen.dataset.scans import WRITE_FORMATS, read_scan, write_scan
from mulsen.hardware_mocks.devices import running_simulators
from mulsen.hardware_mocks.scanner_sim import EXTENSIONS, scan_pair
from mulsen.hardware_mocks.sim_bench import SimulatedBench
from mulsen.hardware_mocks.sim_cameras import BenchPart

SAMPLES = 3


def capture_timings(size: str) -> dict[str, float]:
    config = SessionConfig(lockin=LockInSettings(frequency_hz=0.5, periods=4, settle_periods=1, frame_rate_hz=10),
                           scan_settle_s=0.3, scan_timeout_s=60)
    steps: dict[str, list[float]] = {}
    totals = []
    with tempfile.TemporaryDirectory() as tmp, \
            running_simulators(Path(tmp) / "bench", BenchPart("nut", 1), 20.0, size) as (state, _):
        session = CaptureSession(Path(tmp) / "captures", SimulatedBench(state), config, show_progress=False)
        for k in range(SAMPLES):
            start = time.perf_counter()
            folder = session.capture(SampleRequest("nut", f"{k:03d}", part=f"nut:{k}:hole"))
            totals.append(time.perf_counter() - start)
            for step, record in json.loads((folder / "capture.json").read_text())["steps"].items():
                steps.setdefault(step, []).append(record["seconds"])
    result = {f"{step}_s": sum(values) / len(values) for step, values in steps.items()}
    result["total_s"] = sum(totals) / len(totals)
    return result


def import_speed() -> dict[str, float]:
    scan = scan_pair(BenchPart("capsule", 2), "full")[0]
    speeds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in WRITE_FORMATS:
            path = Path(tmp) / f"scan_{fmt}{EXTENSIONS[fmt]}"
            write_scan(path, scan.vertices, None if fmt in ("xyz", "csv") else scan.faces, fmt)
            best = min(_timed(lambda p=path: read_scan(p)) for _ in range(3))
            speeds[fmt] = len(read_scan(path).vertices) / best
    return speeds


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    for size in ("small", "full"):
        for name, value in capture_timings(size).items():
            print(f"capture_{size}_{name}_per_sample: {value:.2f} s")
    for fmt, speed in import_speed().items():
        print(f"scan_import_{fmt}_points_per_s: {speed:,.0f} points/s".replace(",", ""))
    print(f"peak_rss_mib: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
