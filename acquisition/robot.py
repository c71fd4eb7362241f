"""UR5 arm over urx (``urx.URRobot``; ``urx.Robot`` is broken on Python 3.11) with our own wait and a watchdog.

urx blocks forever when the controller stops streaming or drops the connection, and its
``wait=True`` fails on PolyScope >= 3.5. So every urx call runs under a deadline on a helper
thread, moves are sent with ``wait=False``, and arrival is checked by polling the reported pose
against the target. Targets outside the configured workspace and speeds above the limits are
refused before anything is sent.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from mulsen.core.errors import DeviceError, MulsenError
from mulsen.core.geometry import transform_m_to_ur_pose, ur_pose_distance_m_rad

from .ur_kinematics import forward_kinematics

log = logging.getLogger(__name__)
T = TypeVar("T")
# urx 0.11 (2018) calls Condition.notifyAll ten times a second from its monitor thread: harmless noise
warnings.filterwarnings("ignore", message=r"notifyAll\(\) is deprecated", category=DeprecationWarning)


@dataclass(frozen=True)
class MotionLimits:
    """Safety envelope checked before any command leaves the host (base frame, metres)."""

    workspace_min: tuple[float, float, float] = (-0.85, -0.45, 0.10)
    workspace_max: tuple[float, float, float] = (-0.30, 0.25, 0.60)
    max_speed_m_s: float = 0.25
    max_acceleration_m_s2: float = 1.2
    max_joint_speed_rad_s: float = 1.0
    max_joint_acceleration_rad_s2: float = 1.4
    position_tolerance_m: float = 0.0005
    angle_tolerance_rad: float = 0.005
    call_timeout_s: float = 2.0  # deadline for any single urx call
    state_max_age_s: float = 1.0  # the controller streams at 10 Hz; older state means it went silent

    def check_position(self, position) -> None:
        low, high = np.asarray(self.workspace_min), np.asarray(self.workspace_max)
        p = np.asarray(position[:3], float)
        if np.any(p < low) or np.any(p > high):
            raise MulsenError(f"target position {np.round(p, 4).tolist()} m is outside the workspace "
                              f"{list(self.workspace_min)}..{list(self.workspace_max)}; nothing was sent")


class RobotArm(Protocol):
    name: str

    def pose(self) -> np.ndarray: ...

    def joints(self) -> np.ndarray: ...

    def move_linear(self, pose, speed: float, acceleration: float | None = None) -> np.ndarray: ...

    def stop(self) -> None: ...


def call_with_deadline(fn: Callable[[], T], seconds: float, device: str, what: str) -> T:
    """Run ``fn`` on a daemon thread; raise a DeviceError if it has not returned within ``seconds``."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=target, name=f"deadline:{what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise DeviceError(device, f"{what} did not return within {seconds:g} s (controller not answering)")
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, MulsenError):
            raise error
        raise DeviceError(device, f"{what} failed: {type(error).__name__}: {error}") from None
    return outcome["value"]


@dataclass
class MoveRecord:
    command: str
    target: list[float]
    speed: float
    started: float
    finished: float
    reached: list[float]
    error_m: float
    error_rad: float


class URArm:
    """``with URArm(host) as arm: arm.move_linear(pose, speed=0.1)``; every call has a deadline."""

    def __init__(self, host: str, limits: MotionLimits | None = None, connect_timeout_s: float = 3.0) -> None:
        self.host = host
        self.name = f"robot {host}"
        self.limits = limits or MotionLimits()
        self.connect_timeout_s = connect_timeout_s
        self._robot: Any = None  # urx.URRobot once connected (untyped library)
        self.moves: list[MoveRecord] = []

    def __enter__(self) -> URArm:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        try:
            import urx
        except ImportError as exc:
            raise MulsenError("the robot needs 'urx' (pip install mulsen-toolkit[hardware])") from exc

        def open_robot():
            try:
                return urx.URRobot(self.host, use_rt=False)
            except ConnectionRefusedError:
                raise DeviceError(self.name, "connection refused on port 30002 (controller off or wrong address)") \
                    from None
            except (OSError, urx.ursecmon.TimeoutException) as exc:
                raise DeviceError(self.name, f"no robot state received ({type(exc).__name__}: {exc})") from None

        self._robot = call_with_deadline(open_robot, self.connect_timeout_s, self.name, "connecting")

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        if self._robot is None:
            raise DeviceError(self.name, "not connected")
        import urx

        def guarded() -> T:
            try:
                return fn()
            except urx.ursecmon.TimeoutException:
                raise DeviceError(self.name, f"controller stopped streaming its state while {what}") from None

        return call_with_deadline(guarded, self.limits.call_timeout_s, self.name, what)

    def _fresh(self) -> None:
        age = time.time() - self._robot.secmon.lastpacket_timestamp
        if age > self.limits.state_max_age_s:
            raise DeviceError(self.name, f"controller stopped streaming its state ({age:.1f} s without a packet)")

    # -- state ----------------------------------------------------------------------------
    def pose(self) -> np.ndarray:
        """TCP pose [x, y, z, rx, ry, rz] (m, axis-angle) from a fresh state packet."""
        pose = self._call("reading the TCP pose", lambda: self._robot.getl(wait=True))
        self._fresh()
        return np.asarray(pose, float)

    def joints(self) -> np.ndarray:
        joints = self._call("reading the joints", lambda: self._robot.getj(wait=True))
        self._fresh()
        return np.asarray(joints, float)

    def program_running(self) -> bool:
        return bool(self._call("reading the program state", self._robot.is_program_running))

    def identity(self) -> dict:
        return {"host": self.host, "driver": "urx.URRobot", "limits": self.limits.__dict__}

    # -- motion ---------------------------------------------------------------------------
    def _check_speed(self, speed: float, acceleration: float, joint: bool) -> None:
        max_v = self.limits.max_joint_speed_rad_s if joint else self.limits.max_speed_m_s
        max_a = self.limits.max_joint_acceleration_rad_s2 if joint else self.limits.max_acceleration_m_s2
        unit = "rad/s" if joint else "m/s"
        if not 0 < speed <= max_v:
            raise MulsenError(f"{self.name}: speed {speed} {unit} is outside (0, {max_v}]; nothing was sent")
        if not 0 < acceleration <= max_a:
            raise MulsenError(f"{self.name}: acceleration {acceleration} {unit}² is outside (0, {max_a}]; "
                              "nothing was sent")

    def move_linear(self, pose, speed: float, acceleration: float | None = None) -> np.ndarray:
        """movel to ``pose`` and wait until it is reached (within tolerance) or the deadline passes."""
        target = np.asarray(pose, float)
        acceleration = acceleration or min(0.5, self.limits.max_acceleration_m_s2)
        self.limits.check_position(target)
        self._check_speed(speed, acceleration, joint=False)
        start = self.pose()
        distance, _ = ur_pose_distance_m_rad(start, target)
        self._call("sending movel", lambda: self._robot.movel(target.tolist(), acc=acceleration, vel=speed,
                                                                 wait=False))
        return self._wait_for(target, distance / speed + speed / acceleration, "movel", speed, joint=False)

    def move_joints(self, joints, speed: float, acceleration: float | None = None) -> np.ndarray:
        """movej to ``joints``; the resulting TCP position must lie in the workspace."""
        target = np.asarray(joints, float)
        acceleration = acceleration or min(1.0, self.limits.max_joint_acceleration_rad_s2)
        tcp = self._tcp_offset()
        self.limits.check_position(transform_m_to_ur_pose(forward_kinematics(target, tcp)))
        self._check_speed(speed, acceleration, joint=True)
        travel = float(np.abs(target - self.joints()).max())
        self._call("sending movej", lambda: self._robot.movej(target.tolist(), acc=acceleration, vel=speed,
                                                                 wait=False))
        goal = transform_m_to_ur_pose(forward_kinematics(target, tcp))
        return self._wait_for(goal, travel / speed + speed / acceleration, "movej", speed, joint=True)

    def _tcp_offset(self) -> np.ndarray:
        info = self._call("reading the TCP offset", lambda: self._robot.secmon.get_all_data(wait=True))
        cart = info.get("CartesianInfo", {})
        return np.array([cart.get(k, 0.0) for k in ("tcpOffsetX", "tcpOffsetY", "tcpOffsetZ", "tcpOffsetRx",
                                                     "tcpOffsetRy", "tcpOffsetRz")])

    def set_tcp(self, tcp) -> None:
        self._call("sending set_tcp", lambda: self._robot.set_tcp(list(map(float, tcp))))

    def _wait_for(self, target: np.ndarray, expected_s: float, command: str, speed: float, joint: bool) -> np.ndarray:
        """Our wait: poll fresh poses until within tolerance with no program running, or time out."""
        started = time.monotonic()
        deadline = started + 1.5 * expected_s + 2.0
        while True:
            reached = self.pose()
            error_m, error_rad = ur_pose_distance_m_rad(reached, target)
            arrived = error_m <= self.limits.position_tolerance_m and error_rad <= self.limits.angle_tolerance_rad
            if arrived and not self.program_running():
                self.moves.append(MoveRecord(command, target.tolist(), speed, started, time.monotonic(),
                                             reached.tolist(), error_m, error_rad))
                return reached
            if time.monotonic() > deadline:
                self.stop()
                raise DeviceError(self.name, f"{command} did not reach its target within {deadline - started:.1f} s "
                                             f"(still {error_m * 1000:.1f} mm away)")
            time.sleep(0.05)

    def stop(self) -> None:
        """Best effort stop; never raises (used on every exit path)."""
        if self._robot is None:
            return
        try:
            self._call("sending stopl", lambda: self._robot.stopl(0.5))
        except MulsenError as exc:
            log.error("%s: could not send stop (%s)", self.name, exc)

    def close(self) -> None:
        robot, self._robot = self._robot, None
        if robot is not None:
            # urx's close joins its monitor thread, which can hang on a dead controller: bounded wait
            with contextlib.suppress(MulsenError):
                call_with_deadline(robot.close, 2.0, self.name, "closing")


@contextlib.contextmanager
def connected_arm(host: str, limits: MotionLimits | None = None) -> Iterator[URArm]:
    """Connect, yield, and stop the arm whatever happens."""
    arm = URArm(host, limits)
    arm.connect()
    try:
        yield arm
    except BaseException:
        arm.stop()
        raise
    finally:
        arm.close()


@dataclass(frozen=True)
class ArmGeometry:
    """Nominal bench <-> arm transforms, used until hand-eye calibration replaces them.

    The bench frame (mm) has its origin under the IR camera, x/y parallel to the robot base's x/y.
    The TCP is set to the RGB camera's optical centre, the camera looking straight down with image
    x along bench x (orientation Rx(π)).
    """

    bench_origin_in_base_m: tuple[float, float, float] = (-0.60, -0.11, 0.0)
    camera_height_mm: float = 250.0
    looking_down_rotvec: tuple[float, float, float] = (np.pi, 0.0, 0.0)
    tcp_offset: tuple[float, ...] = field(default=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0))

    def camera_pose_above(self, bench_xy_mm) -> np.ndarray:
        """TCP pose (base frame) putting the RGB camera ``camera_height_mm`` above a bench point."""
        origin = np.asarray(self.bench_origin_in_base_m)
        x, y = np.asarray(bench_xy_mm, float) / 1000.0
        return np.array([origin[0] + x, origin[1] + y, origin[2] + self.camera_height_mm / 1000.0,
                         *self.looking_down_rotvec])

    def bench_xy_under(self, tcp_pose) -> tuple[float, float]:
        """Bench point (mm) under the camera at ``tcp_pose``."""
        origin = np.asarray(self.bench_origin_in_base_m)
        return float((tcp_pose[0] - origin[0]) * 1000.0), float((tcp_pose[1] - origin[1]) * 1000.0)


def part_pixel_in_ir(amplitude: np.ndarray) -> tuple[float, float]:
    """(column, row) centroid of the heated part: the largest blob above half the robust maximum.

    The part's lock-in amplitude is far above the metal bench's.
    """
    from scipy import ndimage

    level = 0.5 * float(np.percentile(amplitude, 99.5))
    labels, count = ndimage.label(amplitude > level)
    if count == 0 or level <= 0:
        raise MulsenError("no part found in the IR amplitude image (nothing warmer than the bench)")
    sizes = ndimage.sum_labels(np.ones_like(amplitude), labels, index=np.arange(1, count + 1))
    rows, cols = np.nonzero(labels == 1 + int(np.argmax(sizes)))
    return float(cols.mean()), float(rows.mean())


def locate_part_in_ir(amplitude: np.ndarray, intrinsics: np.ndarray, camera_xy_mm=(0.0, 0.0),
                      distance_mm: float = 300.0) -> tuple[float, float]:
    """Bench position (mm) of the heated part, for an IR camera looking straight down (nominal geometry)."""
    col, row = part_pixel_in_ir(amplitude)
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    x = camera_xy_mm[0] + (col - cx) * distance_mm / fx
    y = camera_xy_mm[1] - (row - cy) * distance_mm / fy  # image rows grow towards -y
    return float(x), float(y)
