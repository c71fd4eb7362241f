"""UR5 driver (urx.URRobot) against the secondary-interface simulator: moves, refusals, watchdog."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mulsen.acquisition.robot import ArmGeometry, MotionLimits, URArm, call_with_deadline, locate_part_in_ir
from mulsen.acquisition.ur_kinematics import HOME_JOINTS, forward_kinematics, inverse_kinematics
from mulsen.core.errors import DeviceError, MulsenError
from mulsen.core.geometry import transform_m_to_ur_pose
from mulsen.hardware_mocks.devices import free_loopback_host
from mulsen.hardware_mocks.processes import SimulatorProcess

pytest.importorskip("urx")


@pytest.fixture
def controller(tmp_path: Path):
    host = free_loopback_host()
    log = tmp_path / "script.jsonl"
    with SimulatorProcess("mulsen.hardware_mocks.ur_sim", ["--host", host, "--script-log", str(log)]) as sim:
        yield sim, host, log


def _script(log: Path) -> list[str]:
    return [json.loads(line)["line"] for line in log.read_text().splitlines()]


def test_movel_arrives_in_the_expected_time_with_the_exact_urscript(controller):
    _sim, host, log = controller
    target = ArmGeometry().camera_pose_above((12.0, -7.5))
    with URArm(host) as arm:
        start = arm.pose()
        np.testing.assert_allclose(start, transform_m_to_ur_pose(forward_kinematics(HOME_JOINTS)), atol=1e-6)
        distance = np.linalg.norm(target[:3] - start[:3])
        t0 = time.monotonic()
        reached = arm.move_linear(target, speed=0.05, acceleration=0.3)
        elapsed = time.monotonic() - t0
        joints = arm.joints()
    assert distance / 0.05 - 0.05 < elapsed < distance / 0.05 + 1.0
    np.testing.assert_allclose(reached[:3], target[:3], atol=5e-4)
    np.testing.assert_allclose(transform_m_to_ur_pose(forward_kinematics(joints))[:3], target[:3], atol=1e-5)
    assert _script(log) == ["movel(p[-0.588,-0.1175,0.25,3.141593,0.0,0.0], a=0.3, v=0.05, r=0)"]


@pytest.mark.slow
def test_movej_and_set_tcp_reach_their_targets(controller):
    _sim, host, log = controller
    with URArm(host) as arm:
        goal = inverse_kinematics(ArmGeometry().camera_pose_above((0.0, 0.0)), HOME_JOINTS)
        arm.move_joints(goal, speed=0.8)
        np.testing.assert_allclose(arm.joints(), goal, atol=1e-6)
        arm.set_tcp([0, 0, 0.05, 0, 0, 0])
        time.sleep(0.3)
        flange = transform_m_to_ur_pose(forward_kinematics(goal))
        assert arm.pose()[2] == pytest.approx(flange[2] - 0.05, abs=1e-6)  # the tool points down
    lines = _script(log)
    assert lines[0].startswith("movej([") and "v=0.8" in lines[0]
    assert lines[1] == "set_tcp(p[0.0, 0.0, 0.05, 0.0, 0.0, 0.0])"


def test_targets_outside_the_workspace_and_overspeed_are_refused_before_sending(controller):
    _sim, host, log = controller
    limits = MotionLimits(max_speed_m_s=0.2)
    with URArm(host, limits) as arm:
        far = ArmGeometry().camera_pose_above((0.0, 0.0))
        far[2] = 0.9
        with pytest.raises(MulsenError, match=r"outside the workspace.*nothing was sent"):
            arm.move_linear(far, speed=0.1)
        with pytest.raises(MulsenError, match=r"speed 0.5 m/s is outside \(0, 0.2\]"):
            arm.move_linear(ArmGeometry().camera_pose_above((0.0, 0.0)), speed=0.5)
        with pytest.raises(MulsenError, match="outside the workspace"):
            arm.move_joints([0, -1.57, 0, -1.57, 0, 0], speed=0.5)  # arm stretched straight up
        time.sleep(0.2)
    assert not log.exists() or _script(log) == []


@pytest.mark.slow
def test_watchdog_fires_when_the_controller_drops_the_connection_mid_move(controller):
    sim, host, _ = controller
    limits = MotionLimits(call_timeout_s=1.0)
    arm = URArm(host, limits)
    arm.connect()
    target = ArmGeometry().camera_pose_above((40.0, 40.0))  # about 3 s away at 0.02 m/s
    hang_up = threading.Timer(0.5, os.kill, (sim.process.pid, signal.SIGUSR2))
    hang_up.start()
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match=rf"robot {host}: .*(did not return within|stopped streaming)"):
        arm.move_linear(target, speed=0.02)
    assert time.monotonic() - t0 < 0.5 + 2.0  # the deadline, not urx's forever
    hang_up.join()
    arm.close()


# urx's monitor thread dies with a socket timeout when the controller goes silent; that is the point
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_watchdog_fires_when_the_controller_stops_answering(controller):
    sim, host, _ = controller
    arm = URArm(host, MotionLimits(call_timeout_s=1.0))
    arm.connect()
    os.kill(sim.process.pid, signal.SIGUSR1)
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match=r"not answering|stopped streaming"):
        arm.pose()
    assert time.monotonic() - t0 < 2.0
    arm.close()


def test_connecting_to_nothing_is_a_clear_error():
    host = free_loopback_host()
    with pytest.raises(DeviceError, match=f"robot {host}: connection refused"):
        URArm(host, connect_timeout_s=2.0).connect()
    with pytest.raises(DeviceError, match=r"slow did not return within 0.1 s"):
        call_with_deadline(lambda: time.sleep(1), 0.1, "robot x", "slow")


def test_part_location_from_the_ir_image_and_the_camera_pose_above_it():
    intrinsics = np.array([[1000.0, 0, 79.5], [0, 1000.0, 59.5], [0, 0, 1]])
    amplitude = np.full((120, 160), 0.05)
    amplitude[40:60, 100:120] = 2.5  # the warm part, centre at column 109.5, row 49.5
    amplitude[5, 5] = 3.0  # one hot pixel is not the part
    x, y = locate_part_in_ir(amplitude, intrinsics, distance_mm=300.0)
    assert x == pytest.approx((109.5 - 79.5) * 0.3) and y == pytest.approx(-(49.5 - 59.5) * 0.3)
    geometry = ArmGeometry()
    pose = geometry.camera_pose_above((x, y))
    assert geometry.bench_xy_under(pose) == pytest.approx((x, y))
    assert pose[2] == pytest.approx(0.25)
    with pytest.raises(MulsenError, match="no part found"):
        locate_part_in_ir(np.zeros((10, 10)), intrinsics)
