"""Calibration: camera intrinsics, hand-eye (camera on the arm), IR-to-RGB registration."""
