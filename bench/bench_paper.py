"""The paper preset's own costs on this machine: its coreset on a MulSen-sized RGB bank (93 normals x 784
patches x 768 dims: SparseRandomProjection eps 0.9, greedy from row 0, 10 %) against the default's fast
coreset, and its reweighted-max scoring of one sample (784 patches) against the bank it keeps. Random
features: the costs depend on the sizes only. Prints ``name: value unit`` lines."""

from __future__ import annotations

import sys
import time

import numpy as np

from mulsen.detection.memory_bank import WorstPatch, greedy_coreset, paper_coreset


def main() -> None:
    normals = int(sys.argv[1]) if len(sys.argv) > 1 else 93
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(normals * 784, 768)).astype(np.float32)
    start = time.perf_counter()
    keep = paper_coreset(bank, 0.1, seed=0)
    paper_s = time.perf_counter() - start
    start = time.perf_counter()
    greedy_coreset(bank, min(10000, round(0.1 * len(bank))), projection_dim=16, seed=0)
    fast_s = time.perf_counter() - start
    kept = bank[keep]
    sample = rng.normal(size=(784, 768)).astype(np.float32)
    start = time.perf_counter()
    for _ in range(5):
        WorstPatch.of(sample, kept).score(768)
    score_s = (time.perf_counter() - start) / 5
    print(f"paper_coreset_rows: {len(bank)} rows")
    print(f"paper_coreset_s: {paper_s:.1f} s")
    print(f"fast_coreset_s: {fast_s:.1f} s")
    print(f"paper_bank_entries: {len(keep)} entries")
    print(f"paper_score_s_per_modality: {score_s:.3f} s")


if __name__ == "__main__":
    main()
