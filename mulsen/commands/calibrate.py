"""``mulsen calibrate ...``: camera intrinsics, hand-eye, IR-to-RGB registration (lab operators)."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mulsen.core.errors import MulsenError
from mulsen.core.progress import bar

BOARD_HELP = "inner corners and square size, COLSxROWSxMM (default 7x5x3.0; the demo bench board)"


def _board(text: str):
    from mulsen.calibration.targets import Chessboard

    try:
        cols, rows, square = text.lower().split("x")
        return Chessboard(int(cols), int(rows), float(square))
    except ValueError:
        raise MulsenError(f"--board {text!r}: expected COLSxROWSxMM, e.g. 7x5x3.0") from None


def _xy(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
        return x, y
    except ValueError:
        raise MulsenError(f"{text!r}: expected X,Y in millimetres") from None


def _common(parser: argparse.ArgumentParser, images: bool = False) -> None:
    parser.add_argument("--out", type=Path, required=True, help="calibration folder (results as JSON)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sim", type=Path, metavar="STATE", help="the simulated bench of 'mulsen sim devices'")
    where.add_argument("--bench", type=Path, help="JSON file naming the real devices (acquisition/bench.py)")
    if images:
        where.add_argument("--images", type=Path, help="a folder of target images taken with the camera")
    parser.add_argument("--board", default="7x5x3.0", help=BOARD_HELP)
    parser.add_argument("--board-at", default="-14,-9", help="where the board lies on the bench, X,Y mm "
                        "(its first inner corner; default -14,-9, under both cameras)")
    parser.add_argument("--speed", type=float, default=0.25, help="arm speed in m/s (default 0.25)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the planned arm poses")


def register(sub: argparse._SubParsersAction) -> None:
    cal = sub.add_parser("calibrate", help="calibrate the cameras and the arm (lab operators)",
                         description="Calibration of the bench: camera intrinsics (chessboard views), hand-eye "
                         "of the RGB camera on the UR5, IR-to-RGB registration on the bench plane. Results go to "
                         "--out as JSON; pass that folder to 'mulsen capture --calibration' so the arm centres the "
                         "RGB camera on the part found in the IR image.",
                         epilog="order: intrinsics --camera rgb, intrinsics --camera ir, hand-eye, ir-rgb\n"
                         "example (simulators): mulsen sim devices --state sim-bench --size small &\n"
                         "  mulsen calibrate intrinsics --camera rgb --sim sim-bench --out cal\n"
                         "  mulsen calibrate hand-eye --sim sim-bench --out cal\n"
                         "  mulsen calibrate ir-rgb --sim sim-bench --out cal",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = cal.add_subparsers(dest="calibrate_command", metavar="ACTION")
    intr = csub.add_parser("intrinsics", help="camera matrix and lens distortion from chessboard views",
                           description="RGB (on the arm): the arm views the board lying on the bench from tilted "
                           "poses. IR (fixed): the heated board is held at a new tilt for every frame. --images: "
                           "calibrate from saved images. Views where the board is missing or fits badly are "
                           "rejected with the reason.")
    intr.add_argument("--camera", choices=["rgb", "ir"], required=True)
    intr.add_argument("--views", type=int, default=15)
    intr.add_argument("--wide-lens", dest="narrow_lens", action="store_false",
                      help="fit principal point and distortion too (fields above ~15°); the default treats the "
                      "bench's narrow lenses as centred and distortion-free")
    _common(intr, images=True)
    intr.set_defaults(handler=_intrinsics)
    he = csub.add_parser("hand-eye", help="where the RGB camera sits on the flange",
                         description="The arm views the board from tilted poses; every OpenCV hand-eye method is "
                         "fitted and judged on held-out poses; the most consistent is saved.")
    he.add_argument("--poses", type=int, default=14)
    _common(he)
    he.set_defaults(handler=_hand_eye)
    ir = csub.add_parser("ir-rgb", help="homography between the IR and RGB images on the bench plane",
                         description="The arm goes to the reference pose above the bench; the heated board is "
                         "seen by both cameras; a RANSAC homography maps IR pixels to RGB pixels at that pose.")
    ir.add_argument("--reference", default="0,0", help="bench point (X,Y mm) under the RGB camera at the "
                    "reference pose (default 0,0)")
    _common(ir)
    ir.set_defaults(handler=_ir_rgb)
    cal.set_defaults(handler=lambda args: cal.print_help() or 2)


@contextlib.contextmanager
def _devices(args: argparse.Namespace, need_arm: bool, need_ir: bool, ir_views: list | None = None
             ) -> Iterator[dict]:
    """Arm, RGB camera showing the board, IR camera: simulated (--sim) or real (--bench)."""
    from mulsen.acquisition.robot import ArmGeometry, connected_arm

    board = _board(args.board)
    geometry = ArmGeometry()
    origin = np.asarray(geometry.bench_origin_in_base_m) * 1000.0
    base_T_target = np.eye(4)
    base_T_target[:3, 3] = [origin[0] + _xy(args.board_at)[0], origin[1] + _xy(args.board_at)[1], origin[2]]
    with contextlib.ExitStack() as stack:
        found: dict = {"board": board, "base_T_target": base_T_target, "geometry": geometry}
        if args.sim:
            from mulsen.hardware_mocks.devices import SimBench
            from mulsen.hardware_mocks.sim_calibration import board_ir_camera, board_rgb_camera

            bench = SimBench.load(args.sim)
            clock = bench.clock()
            arm = stack.enter_context(connected_arm(bench.robot_host)) if need_arm else None
            found["arm"] = arm
            if arm is not None:
                found["rgb"] = stack.enter_context(board_rgb_camera(clock, arm.pose, bench.image_size,
                                                                    base_T_target, board))
            if need_ir:
                found["ir"] = stack.enter_context(board_ir_camera(clock, bench.image_size, ir_views or
                                                                  [base_T_target], board))
        else:
            from mulsen.acquisition.bench import RealBench
            from mulsen.acquisition.camera import GenICamCamera

            real = RealBench.load(args.bench)
            found["arm"] = stack.enter_context(connected_arm(real.robot_host, real.limits)) if need_arm else None
            if need_arm:
                found["rgb"] = stack.enter_context(GenICamCamera(real.rgb_camera))
            if need_ir:
                found["ir"] = stack.enter_context(GenICamCamera(real.ir_camera))
        yield found


def _save(result, path: Path, summary: dict) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    result.save(path)
    print(json.dumps({"saved": str(path), **summary}, indent=2))
    return 0


def _intrinsics(args: argparse.Namespace) -> int:
    from mulsen.calibration.intrinsics import calibrate_intrinsics
    from mulsen.calibration.placement import INTRINSICS_IR, INTRINSICS_RGB
    from mulsen.calibration.procedures import (
        collect_arm_views,
        ir_intrinsics_from_camera,
        rgb_intrinsics_from_views,
        viewing_poses,
    )

    target = args.out / (INTRINSICS_RGB if args.camera == "rgb" else INTRINSICS_IR)
    board = _board(args.board)
    if args.images:
        from mulsen.dataset.formats import open_image

        files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif",
                                                                                 ".tiff", ".bmp"))
        images = [np.asarray(open_image(p).convert("L")) for p in files]
        result = calibrate_intrinsics(images, board, [p.name for p in files], camera={"source": str(args.images)},
                                      narrow_lens=args.narrow_lens)
    elif args.camera == "rgb":
        with _devices(args, need_arm=True, need_ir=False) as dev:
            poses = viewing_poses(dev["base_T_target"], board, args.views, np.random.default_rng(args.seed))
            views = collect_arm_views(dev["arm"], dev["rgb"], poses, args.speed, bar("arm poses"))
            result = rgb_intrinsics_from_views(views, board, dev["rgb"].identity(), args.narrow_lens)
    else:
        rng = np.random.default_rng(args.seed)
        held = _held_board_poses(args, board, args.views, rng)
        with _devices(args, need_arm=False, need_ir=True, ir_views=held) as dev:
            if not args.sim:
                print("hold the heated board at a new tilt before each frame (Enter to grab)")
            result = ir_intrinsics_from_camera(dev["ir"], args.views, board, dev["ir"].identity(), bar("views"),
                                               args.narrow_lens)
    rejected = {v.name: v.reason for v in result.views if not v.used}
    return _save(result, target, {"rms_px": round(result.rms_px, 4), "camera_matrix": result.camera_matrix.round(3)
                                  .tolist(), "dist": result.dist.round(5).tolist(), "rejected_views": rejected})


def _held_board_poses(args: argparse.Namespace, board, count: int, rng: np.random.Generator) -> list:
    """Where the simulated operator holds the heated board for the fixed IR camera: tilted, near the bench."""
    from scipy.spatial.transform import Rotation

    from mulsen.acquisition.robot import ArmGeometry

    origin = np.asarray(ArmGeometry().bench_origin_in_base_m) * 1000.0
    poses = []
    for _ in range(count):
        pose = np.eye(4)
        pose[:3, :3] = Rotation.from_euler("xyz", [*rng.uniform(-30, 30, 2), rng.uniform(-20, 20)],
                                           degrees=True).as_matrix()
        centre = origin + [rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(0, 40)]
        pose[:3, 3] = centre - pose[:3, :3] @ board.centre()
        poses.append(pose)
    return poses


def _load_rgb_intrinsics(folder: Path):
    from mulsen.calibration.intrinsics import Intrinsics
    from mulsen.calibration.placement import INTRINSICS_RGB

    path = folder / INTRINSICS_RGB
    if not path.exists():
        raise MulsenError(f"{path} is missing: run 'mulsen calibrate intrinsics --camera rgb' first")
    return Intrinsics.load(path)


def _hand_eye(args: argparse.Namespace) -> int:
    from mulsen.calibration.placement import HAND_EYE
    from mulsen.calibration.procedures import collect_arm_views, hand_eye_from_views, viewing_poses

    intrinsics = _load_rgb_intrinsics(args.out)
    with _devices(args, need_arm=True, need_ir=False) as dev:
        poses = viewing_poses(dev["base_T_target"], dev["board"], args.poses, np.random.default_rng(args.seed + 1))
        views = collect_arm_views(dev["arm"], dev["rgb"], poses, args.speed, bar("arm poses"))
        result = hand_eye_from_views(views, dev["board"], intrinsics)
    return _save(result, args.out / HAND_EYE, {"method": result.method, "poses": result.poses,
                                               "tcp_T_camera_mm": result.tcp_T_camera.round(4).tolist(),
                                               "held_out": result.comparison})


def _ir_rgb(args: argparse.Namespace) -> int:
    from mulsen.calibration.intrinsics import Intrinsics
    from mulsen.calibration.placement import INTRINSICS_IR, IR_RGB
    from mulsen.calibration.procedures import ir_rgb_from_cameras

    rgb = _load_rgb_intrinsics(args.out)
    ir = Intrinsics.load(args.out / INTRINSICS_IR) if (args.out / INTRINSICS_IR).exists() else None
    with _devices(args, need_arm=True, need_ir=True) as dev:
        reference = dev["geometry"].camera_pose_above(_xy(args.reference))
        result = ir_rgb_from_cameras(dev["arm"], dev["ir"], dev["rgb"], reference, dev["board"], args.speed, ir, rgb)
    return _save(result, args.out / IR_RGB, {"rms_px": round(result.rms_px, 4), "inliers": result.inliers,
                                             "homography": result.homography.round(6).tolist()})
