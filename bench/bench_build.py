"""Dataset build speed: samples/s from capture folders (scan merge included) to a validated dataset,
and the time to pack and verify the release."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from mulsen.dataset.build import BuildConfig, build_dataset
from mulsen.dataset.release import pack_dataset, verify_release
from mulsen.hardware_mocks.sim_cameras import BenchPart
from mulsen.hardware_mocks.sim_captures import write_simulated_capture
from mulsen.hardware_mocks.world.annotate import annotate_capture

SAMPLES = 12


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        captures, annotations = root / "captures", root / "annotations"
        defects = ["hole", "crack", "broken", None]
        for k in range(SAMPLES):
            part = BenchPart("capsule", k, defects[k % 4])
            write_simulated_capture(captures, "capsule", f"{k:03d}", part)
        start = time.perf_counter()
        from mulsen.dataset.build import capture_folders, merge_capture

        for _, _, folder in capture_folders(captures):
            merge_capture(folder)
        merge_s = time.perf_counter() - start
        for category, sample_id, folder in capture_folders(captures):
            annotate_capture(folder, annotations / category / sample_id)
        start = time.perf_counter()
        report = build_dataset(captures, annotations, root / "dataset", BuildConfig(test_good_ratio=0.5))
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        archive = pack_dataset(root / "dataset", "1.0")
        pack_s = time.perf_counter() - start
        start = time.perf_counter()
        assert verify_release(archive).ok
        verify_s = time.perf_counter() - start
    print(f"merge_s_per_capture: {merge_s / SAMPLES:.2f} s")
    print(f"build_samples_per_s_after_merge: {report.total_added / build_s:.1f} samples/s")
    print(f"pack_s_{SAMPLES}_samples: {pack_s:.2f} s")
    print(f"verify_s_{SAMPLES}_samples: {verify_s:.2f} s")


if __name__ == "__main__":
    main()
