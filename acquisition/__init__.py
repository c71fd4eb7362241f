"""Device drivers: GenICam cameras, lock-in thermography, UR5 arm, laser-scanner exports, capture sessions."""

from typing import TYPE_CHECKING

from mulsen.core.lazy import lazy_exports

if TYPE_CHECKING:
    from .bench import RealBench
    from .camera import Camera, CameraConfig, GenICamCamera
    from .export_watch import ExportWatcher
    from .heater import Heater, open_heater
    from .placement import NominalPlacement, Placement
    from .robot import ArmGeometry, MotionLimits, RobotArm, connected_arm
    from .session import CaptureSession, SessionConfig
    from .thermography import LockInSettings, run_lockin

_EXPORTS = {
    "Camera": "camera",
    "CameraConfig": "camera",
    "GenICamCamera": "camera",
    "Heater": "heater",
    "open_heater": "heater",
    "ArmGeometry": "robot",
    "MotionLimits": "robot",
    "RobotArm": "robot",
    "connected_arm": "robot",
    "NominalPlacement": "placement",
    "Placement": "placement",
    "LockInSettings": "thermography",
    "run_lockin": "thermography",
    "CaptureSession": "session",
    "SessionConfig": "session",
    "RealBench": "bench",
    "ExportWatcher": "export_watch",
}
__all__ = [
    "ArmGeometry", "Camera", "CameraConfig", "CaptureSession", "ExportWatcher", "GenICamCamera", "Heater",
    "LockInSettings", "MotionLimits", "NominalPlacement", "Placement", "RealBench", "RobotArm", "SessionConfig",
    "connected_arm", "open_heater", "run_lockin",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
