"""MulSen-TripleAD detector: per-modality memory banks, decision gating, metrics."""
