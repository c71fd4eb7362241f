"""UR5 controller simulator: the secondary client interface (TCP port 30002) that urx speaks.

Streams type-16 RobotState packets at ~10 Hz (RobotModeData, JointData, CartesianInfo,
MasterBoardData, big-endian, hardware-notes B.3), executes the URScript lines urx sends
(``movel``, ``movej``, ``set_tcp``, ``stopl``/``stopj``, ``digital_out``) by moving the UR5 model at
the commanded speed, and logs every script line (jsonl). Fault injection for tests: SIGUSR1 makes
it stop answering (connection stays open, no packets), SIGUSR2 drops the connection.
"""

from __future__ import annotations

import argparse
import json
import re
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from mulsen.acquisition.ur_kinematics import HOME_JOINTS, forward_kinematics, inverse_kinematics
from mulsen.core.geometry import transform_m_to_ur_pose

from .processes import stop_event

PORT = 30002
RATE_HZ = 10.0
ROBOT_MODE_RUNNING = 7
_NUM = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_VEC = rf"\[\s*({_NUM}(?:\s*,\s*{_NUM}){{5}})\s*\]"


def _vector(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split(",")])


class ArmModel:
    """Kinematic state of the simulated UR5: linear Cartesian moves (movel) and joint moves (movej)."""

    def __init__(self, joints=HOME_JOINTS) -> None:
        self.joints = np.array(joints, float)
        self.tcp = np.zeros(6)
        self.digital_out = 0
        self._motion: tuple[str, float, float, np.ndarray, np.ndarray] | None = None  # kind, start, duration, from, to

    @property
    def pose(self) -> np.ndarray:
        return transform_m_to_ur_pose(forward_kinematics(self.joints, self.tcp))

    @property
    def moving(self) -> bool:
        return self._motion is not None

    def execute(self, line: str, now: float) -> None:
        """Run one URScript statement; a new motion replaces the running one (as on the controller)."""
        line = line.strip()
        if m := re.match(rf"movel\(\s*p{_VEC}\s*,\s*a\s*=\s*({_NUM})\s*,\s*v\s*=\s*({_NUM})", line):
            goal, speed = _vector(m.group(1)), float(m.group(3))
            start = self.pose
            duration = max(np.linalg.norm(goal[:3] - start[:3]) / max(speed, 1e-6), 0.05)
            self._motion = ("l", now, duration, start, goal)
        elif m := re.match(rf"movej\(\s*{_VEC}\s*,\s*a\s*=\s*({_NUM})\s*,\s*v\s*=\s*({_NUM})", line):
            goal, speed = _vector(m.group(1)), float(m.group(3))
            duration = max(np.abs(goal - self.joints).max() / max(speed, 1e-6), 0.05)
            self._motion = ("j", now, duration, self.joints.copy(), goal)
        elif m := re.match(rf"set_tcp\(\s*p{_VEC}\s*\)", line):
            self.tcp = _vector(m.group(1))
        elif m := re.match(r"digital_out\[(\d+)\]\s*=\s*(True|False)", line):
            bit = 1 << int(m.group(1))
            self.digital_out = self.digital_out | bit if m.group(2) == "True" else self.digital_out & ~bit
        elif re.match(r"stop[lj]\(", line):
            self._motion = None

    def advance(self, now: float) -> None:
        if self._motion is None:
            return
        kind, start_t, duration, start, goal = self._motion
        s = min(1.0, (now - start_t) / duration)
        if kind == "j":
            self.joints = start + s * (goal - start)
        else:
            rotations = Rotation.from_rotvec(np.stack([start[3:], goal[3:]]))
            position = start[:3] + s * (goal[:3] - start[:3])
            orientation = Slerp([0.0, 1.0], rotations)(s).as_rotvec()
            self.joints = inverse_kinematics(np.concatenate([position, orientation]), self.joints, self.tcp)
        if s >= 1.0:
            self._motion = None


def state_packet(arm: ArmModel, now: float, mode_bytes: int = 46) -> bytes:
    """One type-16 RobotState message: RobotModeData, JointData, CartesianInfo, MasterBoardData."""
    running = arm.moving
    mode = struct.pack("!Q???????BBddd", int(now * 1e3), True, True, True, False, False, running, False,
                       ROBOT_MODE_RUNNING, 0, 1.0, 1.0, 1.0)
    if mode_bytes == 47:
        mode += b"\x00"  # PolyScope >= 3.5 appends one byte
    joints = b"".join(struct.pack("!dddffffB", q, q, 0.0, 0.0, 48.0, 30.0, 35.0, 253) for q in arm.joints)
    cart = struct.pack("!12d", *arm.pose, *arm.tcp)
    board = struct.pack("!iibbddbbddffffBBb", 0, arm.digital_out, 0, 0, 0.0, 0.0, 0, 0, 0.0, 0.0, 35.0, 48.0, 1.0,
                        0.1, 0, 0, 0)
    body = b"".join(struct.pack("!iB", len(p) + 5, t) + p for t, p in ((0, mode), (1, joints), (4, cart), (3, board)))
    return struct.pack("!iB", len(body) + 5, 16) + body


class ControllerServer:
    def __init__(self, host: str, port: int, script_log: Path | None, mode_bytes: int) -> None:
        self.arm = ArmModel()
        self.mode_bytes = mode_bytes
        self.listener = socket.create_server((host, port), reuse_port=False)
        self.listener.setblocking(False)
        self.client: socket.socket | None = None
        self.log = open(script_log, "a", buffering=1) if script_log else None  # noqa: SIM115 (lives with the server)
        self.silent = False
        self.drop = False
        self._pending = b""

    def serve(self, stopping) -> None:
        next_packet = time.monotonic()
        while not stopping.is_set():
            sockets = [self.listener] + ([self.client] if self.client else [])
            ready, _, _ = select.select(sockets, [], [], max(0.0, next_packet - time.monotonic()))
            now = time.monotonic()
            if self.listener in ready:
                client, _ = self.listener.accept()
                if self.client:
                    self.client.close()  # one client at a time, the newest wins
                self.client, self._pending = client, b""
            if self.client and self.client in ready:
                self._receive(now)
            if self.drop and self.client:
                self.client.close()
                self.client, self.drop = None, False
            self.arm.advance(now)
            if now >= next_packet:
                next_packet = now + 1.0 / RATE_HZ
                if self.client and not self.silent:
                    try:
                        self.client.sendall(state_packet(self.arm, now, self.mode_bytes))
                    except OSError:
                        self.client.close()
                        self.client = None

    def _receive(self, now: float) -> None:
        assert self.client is not None
        try:
            data = self.client.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.client.close()
            self.client = None
            return
        self._pending += data
        while b"\n" in self._pending:
            raw, self._pending = self._pending.split(b"\n", 1)
            line = raw.decode("utf-8", errors="replace")
            if self.log:
                self.log.write(json.dumps({"t": now, "line": line}) + "\n")
            if not self.silent:
                self.arm.execute(line, now)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="UR5 secondary-interface simulator (for urx)")
    parser.add_argument("--host", default="127.0.0.2", help="loopback address to listen on (any 127.0.0.N)")
    parser.add_argument("--port", type=int, default=PORT, help="TCP port (urx always uses 30002)")
    parser.add_argument("--script-log", type=Path, help="jsonl file receiving every URScript line")
    parser.add_argument("--mode-bytes", type=int, choices=[46, 47], default=46,
                        help="RobotModeData size: 46 = PolyScope 3.2-3.4, 47 = 3.5+")
    args = parser.parse_args(argv)
    server = ControllerServer(args.host, args.port, args.script_log, args.mode_bytes)

    def quiet(*_):
        server.silent = True

    def drop(*_):
        server.drop = True

    signal.signal(signal.SIGUSR1, quiet)
    signal.signal(signal.SIGUSR2, drop)
    print(f"READY {args.host}:{args.port}", flush=True)
    server.serve(stop_event())
    return 0


if __name__ == "__main__":
    sys.exit(main())
