"""Calibration: intrinsics, hand-eye, IR-to-RGB registration, and the calibrated capture session."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mulsen.calibration.hand_eye import HandEyeResult, calibrate_hand_eye
from mulsen.calibration.intrinsics import CalibrationError, Intrinsics, calibrate_intrinsics
from mulsen.calibration.ir_rgb import IrRgbRegistration, mask_iou, register_ir_rgb
from mulsen.calibration.pose import target_pose
from mulsen.calibration.targets import detect_chessboard
from mulsen.core.errors import DataFormatError
from mulsen.core.geometry import rotation_angle_deg
from mulsen.hardware_mocks.world.targets import Chessboard, TargetRenderer, look_at

pytest.importorskip("cv2")
BOARD = Chessboard(9, 6, 4.0)
K_WIDE = np.array([[1000.0, 0, 322.3], [0, 1000.0, 238.2], [0, 0, 1]])
DIST = np.array([-0.08, 0.05, 0.0005, -0.0003, 0.0])


@pytest.fixture(scope="module")
def wide_renderer():
    return TargetRenderer(K_WIDE, DIST, (640, 480))


def _tilted_view(rng, board, distance=(85, 110), tilt=(15, 40), aim=(6, 4), up=None):
    d = rng.uniform(*distance)
    t, az = np.radians(rng.uniform(*tilt)), rng.uniform(0, 2 * np.pi)
    position = board.centre() + d * np.array([np.sin(t) * np.cos(az), np.sin(t) * np.sin(az), -np.cos(t)])
    aim_point = board.centre() + np.array([rng.uniform(-aim[0], aim[0]), rng.uniform(-aim[1], aim[1]), 0])
    angle = rng.uniform(0, 2 * np.pi) if up is None else up
    return np.linalg.inv(look_at(position, aim_point, up_hint=(np.sin(angle), np.cos(angle), 0)))


def test_intrinsics_are_recovered_and_bad_views_rejected_with_a_reason(wide_renderer, tmp_path: Path):
    rng = np.random.default_rng(0)
    images = [wide_renderer.render(BOARD, _tilted_view(rng, BOARD), rng) for _ in range(15)]
    images.append(np.full((480, 640), 128, np.uint8))  # nothing in view
    result = calibrate_intrinsics(images, BOARD)
    fx, fy, cx, cy = result.camera_matrix[0, 0], result.camera_matrix[1, 1], *result.camera_matrix[:2, 2]
    assert abs(fx / 1000 - 1) < 0.005 and abs(fy / 1000 - 1) < 0.005
    assert abs(cx - 322.3) < 2 and abs(cy - 238.2) < 2
    assert result.rms_px < 0.3
    assert result.dist[0] == pytest.approx(-0.08, abs=0.01)
    rejected = {v.name: v.reason for v in result.views if not v.used}
    assert rejected["view 15"] == "target not found" and len(result.used_views) >= 12
    result.save(tmp_path / "rgb.json")
    loaded = Intrinsics.load(tmp_path / "rgb.json")
    np.testing.assert_allclose(loaded.camera_matrix, result.camera_matrix)


def test_degenerate_view_sets_are_refused(wide_renderer):
    rng = np.random.default_rng(1)
    with pytest.raises(CalibrationError, match="only 2 views show the target"):
        calibrate_intrinsics([wide_renderer.render(BOARD, _tilted_view(rng, BOARD), rng) for _ in range(2)]
                             + [np.zeros((480, 640), np.uint8)], BOARD)
    square = [wide_renderer.render(BOARD, _tilted_view(rng, BOARD, tilt=(0, 0.5), aim=(2, 2), up=0.0), rng)
              for _ in range(6)]
    with pytest.raises(CalibrationError, match="face the camera squarely"):
        calibrate_intrinsics(square, BOARD)


def test_detection_order_is_canonical_whichever_way_the_board_is_turned(wide_renderer):
    rng = np.random.default_rng(2)
    import cv2

    for up in (0.0, np.pi, np.pi / 2, -np.pi / 2):
        pose = _tilted_view(rng, BOARD, tilt=(5, 20), up=up)
        corners = detect_chessboard(wide_renderer.render(BOARD, pose, rng, noise=0.5), BOARD)
        expected, _ = cv2.projectPoints(BOARD.object_points(), cv2.Rodrigues(pose[:3, :3])[0], pose[:3, 3], K_WIDE,
                                        DIST)
        assert np.abs(corners - expected.reshape(-1, 2)).max() < 0.5


def _hand_eye_views(rng, mount, renderer, count=20, axis_only=None):
    base_T_target = np.eye(4)
    base_T_target[:3, 3] = [-600.0, -110.0, 0.0]
    robot, targets = [], []
    for k in range(count):
        if axis_only is None:
            camera = _tilted_view(rng, BOARD, distance=(90, 110), tilt=(15, 35), aim=(3, 2))
        else:  # every pose turns about the same axis through the board
            angle = np.radians(-20 + 40 * k / count)
            position = BOARD.centre() + 100 * np.array([np.sin(angle), 0, -np.cos(angle)])
            camera = np.linalg.inv(look_at(position, BOARD.centre(), up_hint=(0, 1, 0)))
        base_T_tcp = base_T_target @ np.linalg.inv(camera) @ np.linalg.inv(mount)
        found = target_pose(renderer.render(BOARD, camera, rng), BOARD, renderer.camera_matrix, renderer.dist)
        if found is not None:
            robot.append(base_T_tcp)
            targets.append(found[0])
    return robot, targets


def test_hand_eye_recovers_a_tilted_mount_and_compares_methods(tmp_path: Path):
    renderer = TargetRenderer(np.array([[1000.0, 0, 319.5], [0, 1000.0, 239.5], [0, 0, 1]]), np.zeros(5),
                              (640, 480))
    rng = np.random.default_rng(4)
    mount = np.eye(4)
    mount[:3, :3] = Rotation.from_euler("xyz", [3.0, -4.0, 12.0], degrees=True).as_matrix()
    mount[:3, 3] = [18.0, -11.0, 45.0]
    robot, targets = _hand_eye_views(rng, mount, renderer)
    result = calibrate_hand_eye(robot, targets)
    assert rotation_angle_deg(result.tcp_T_camera, mount) < 0.2
    assert np.linalg.norm(result.tcp_T_camera[:3, 3] - mount[:3, 3]) < 1.0
    assert len([m for m, r in result.comparison.items() if "heldout_rotation_deg" in r]) >= 2
    assert result.base_T_target[:3, 3] == pytest.approx([-600.0, -110.0, 0.0], abs=1.0)
    result.save(tmp_path / "he.json")
    np.testing.assert_allclose(HandEyeResult.load(tmp_path / "he.json").tcp_T_camera, result.tcp_T_camera)
    # a calibration file read as another kind, or a truncated one, is refused by name
    with pytest.raises(DataFormatError, match=r"he\.json.*not a camera intrinsics file: format mulsen-hand-eye/1"):
        Intrinsics.load(tmp_path / "he.json")
    (tmp_path / "cut.json").write_text((tmp_path / "he.json").read_text()[:40])
    with pytest.raises(DataFormatError, match=r"cut\.json.*unreadable hand-eye file"):
        HandEyeResult.load(tmp_path / "cut.json")
    with pytest.raises(CalibrationError, match="at least 4"):
        calibrate_hand_eye(robot[:3], targets[:3])
    single_axis = _hand_eye_views(np.random.default_rng(5), mount, renderer, count=8, axis_only=True)
    with pytest.raises(CalibrationError, match="same axis"):
        calibrate_hand_eye(*single_axis)
    still = [robot[0]] * 5
    with pytest.raises(CalibrationError, match="barely rotate"):
        calibrate_hand_eye(still, targets[:5])


def test_ir_to_rgb_homography_maps_points_and_masks():
    from mulsen.hardware_mocks.world.scene import camera_for

    board = Chessboard(7, 5, 3.0)
    ir_camera, rgb_camera = camera_for("ir", "small"), camera_for("rgb", "small")
    rng = np.random.default_rng(6)
    # both cameras look down at the bench; the board lies on it (target z = bench z)
    ir_pose = np.linalg.inv(look_at(np.array([0.0, 0.0, 300.0]), np.array([0.0, 0.0, 0.0]), up_hint=(0, -1, 0)))
    rgb_pose = np.linalg.inv(look_at(np.array([3.0, -2.0, 250.0]), np.array([3.0, -2.0, 0.0]), up_hint=(0, -1, 0)))
    board_on_bench = np.eye(4)
    board_on_bench[:3, 3] = [-10.0, -7.0, 0.0]
    ir = TargetRenderer(ir_camera.intrinsics, np.zeros(5), (ir_camera.width, ir_camera.height))
    rgb = TargetRenderer(rgb_camera.intrinsics, np.zeros(5), (rgb_camera.width, rgb_camera.height))
    ir_image = 255 - ir.render(board, ir_pose @ board_on_bench, rng, thermal_blur_px=0.8, contrast=(200.0, 0.0))
    rgb_image = rgb.render(board, rgb_pose @ board_on_bench, rng)
    registration = register_ir_rgb(ir_image, rgb_image, board)
    assert registration.rms_px < 1.0 and registration.inliers == 35

    def project(camera, pose, points):
        local = (pose @ np.c_[points, np.ones(len(points))].T)[:3]
        pixels = camera.intrinsics @ (local / local[2])
        return pixels[:2].T

    bench_points = np.array([[0.0, 0.0, 0.0], [5.0, -4.0, 0.0], [-6.0, 3.0, 0.0]])
    mapped = registration.map_points(project(ir_camera, ir_pose, bench_points))
    assert np.abs(mapped - project(rgb_camera, rgb_pose, bench_points)).max() < 1.0
    yy, xx = np.mgrid[: ir_camera.height, : ir_camera.width]
    centre_ir = project(ir_camera, ir_pose, bench_points[:1])[0]
    disc_ir = (xx - centre_ir[0]) ** 2 + (yy - centre_ir[1]) ** 2 <= 8 ** 2  # 2.4 mm radius on the bench
    yy, xx = np.mgrid[: rgb_camera.height, : rgb_camera.width]
    centre_rgb = project(rgb_camera, rgb_pose, bench_points[:1])[0]
    disc_rgb = (xx - centre_rgb[0]) ** 2 + (yy - centre_rgb[1]) ** 2 <= (8 * 0.3 * 2000 / 250) ** 2
    assert mask_iou(registration.map_mask(disc_ir), disc_rgb) > 0.9
    assert mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    with pytest.raises(CalibrationError, match="not found in the IR image"):
        register_ir_rgb(np.zeros_like(ir_image), rgb_image, board)


@pytest.mark.slow
def test_calibrated_capture_centres_the_part_in_the_rgb_image(tmp_path: Path, capsys):
    pytest.importorskip("urx")
    from mulsen.cli import main
    from mulsen.hardware_mocks.devices import running_simulators
    from mulsen.hardware_mocks.rig import rgb_view
    from mulsen.hardware_mocks.sim_cameras import BenchPart

    os.environ["MULSEN_NO_PROGRESS"] = "1"
    part = BenchPart("nut", 3, "hole")
    with running_simulators(tmp_path / "bench", part, time_scale=20.0, image_size="small"):
        state, cal = str(tmp_path / "bench"), str(tmp_path / "cal")
        assert main(["calibrate", "hand-eye", "--sim", state, "--out", cal]) == 2  # intrinsics first
        assert "run 'mulsen calibrate intrinsics --camera rgb' first" in capsys.readouterr().err
        for argv in (["intrinsics", "--camera", "rgb"], ["hand-eye"],
                     ["ir-rgb"]):
            assert main(["calibrate", *argv, "--sim", state, "--out", cal]) == 0
        capture = ["capture", "sample", "--out", str(tmp_path / "captures"), "--category", "nut", "--sim", state,
                   "--part", str(part), "--frequency", "0.5", "--periods", "3", "--fps", "10"]
        assert main([*capture, "--sample-id", "001", "--calibration", cal]) == 0
        assert main([*capture, "--sample-id", "002"]) == 0
    centre = part.scene().part.pose_xy_mm
    offsets = {}
    for sample in ("001", "002"):
        record = json.loads((tmp_path / "captures/nut" / sample / "capture.json").read_text())
        view = rgb_view(record["steps"]["arm"]["reached_pose"], "small")
        u, v = view.project(np.array([centre[0]]), np.array([centre[1]]), np.array([3.0]))
        offsets[record["steps"]["arm"]["placement"]] = np.hypot(u[0] - view.principal_point[0],
                                                                v[0] - view.principal_point[1]) / view.width
    assert offsets["calibrated"] < 0.02  # the part within 2 % of the image centre
    assert offsets["nominal geometry"] > offsets["calibrated"]
    he = HandEyeResult.load(tmp_path / "cal/hand_eye.json")
    from mulsen.hardware_mocks.rig import TRUE_RGB_MOUNT

    assert rotation_angle_deg(he.tcp_T_camera, TRUE_RGB_MOUNT) < 0.2
    assert np.linalg.norm(he.tcp_T_camera[:3, 3] - TRUE_RGB_MOUNT[:3, 3]) < 1.0
    assert IrRgbRegistration.load(tmp_path / "cal/ir_rgb.json").rms_px < 1.0
