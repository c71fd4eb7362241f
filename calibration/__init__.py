"""Calibration: camera intrinsics, hand-eye (camera on the arm), IR-to-RGB registration."""

from typing import TYPE_CHECKING

from mulsen.core.lazy import lazy_exports

if TYPE_CHECKING:
    from .hand_eye import HandEyeResult, calibrate_hand_eye
    from .intrinsics import Intrinsics, calibrate_intrinsics
    from .ir_rgb import IrRgbRegistration, register_ir_rgb
    from .placement import CalibratedPlacement
    from .targets import Chessboard, detect_chessboard

_EXPORTS = {
    "Chessboard": "targets",
    "detect_chessboard": "targets",
    "Intrinsics": "intrinsics",
    "calibrate_intrinsics": "intrinsics",
    "HandEyeResult": "hand_eye",
    "calibrate_hand_eye": "hand_eye",
    "IrRgbRegistration": "ir_rgb",
    "register_ir_rgb": "ir_rgb",
    "CalibratedPlacement": "placement",
}
__all__ = [
    "CalibratedPlacement", "Chessboard", "HandEyeResult", "Intrinsics", "IrRgbRegistration", "calibrate_hand_eye",
    "calibrate_intrinsics", "detect_chessboard", "register_ir_rgb",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
