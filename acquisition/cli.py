"""``mulsen capture ...``: one-off captures with real devices or the simulated bench (for lab operators)."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
from pathlib import Path

from mulsen.atomic import atomic_folder
from mulsen.errors import MulsenError

EPILOG_RGB = """examples:
  mulsen capture rgb out/rgb-001 --cti /opt/galaxy/GxU3VTL.cti --serial FCS22110123 --pixel-format BayerRG8 \\
      --exposure-us 8000 --gain-db 0
  mulsen capture rgb out/rgb-001 --sim sim-bench        (after 'mulsen sim devices --state sim-bench')"""

EPILOG_IR = """The host switches the heater at t_on + k/(2f) for SETTLE+PERIODS periods, triggers IR frames at FPS,
and demodulates on the fly (least squares of cos/sin jointly with a quadratic drift, settling periods
discarded). Outputs: ir_amplitude.tiff (K) and ir_phase.tiff (deg, relative to the heating flux) as float32,
infrared.png (MulSen-AD: 640x480 gray = 255 * amplitude / --gray-reference-k), ir_lockin.json.
The heater is switched off on every exit path (end, error, Ctrl-C).

examples:
  mulsen capture ir out/ir-001 --heater /dev/ttyUSB0 --cti /opt/flir/FLIR_GenTL.cti --serial 12345 \\
      --frequency 0.1 --periods 6 --fps 25
  mulsen capture ir out/ir-001 --sim sim-bench --frequency 0.5 --periods 4 --fps 10"""


def _add_camera_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("camera (real device through a GenTL producer)")
    group.add_argument("--cti", help="GenTL producer file (default: first .cti on GENICAM_GENTL64_PATH)")
    group.add_argument("--serial", help="device serial number (default: the first device)")
    group.add_argument("--model", help="device model name")
    group.add_argument("--pixel-format", help="e.g. BayerRG8, RGB8, Mono16")
    group.add_argument("--exposure-us", type=float)
    group.add_argument("--gain-db", type=float)
    group.add_argument("--roi", help="X,Y,WIDTH,HEIGHT")
    group.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each frame")
    parser.add_argument("--sim", type=Path, metavar="STATE",
                        help="use the simulated bench started by 'mulsen sim devices --state STATE'")


def _camera_config(args: argparse.Namespace, name: str):
    from .camera import CameraConfig

    roi = None
    if args.roi:
        try:
            roi = tuple(int(v) for v in args.roi.split(","))
            assert len(roi) == 4
        except (ValueError, AssertionError):
            raise MulsenError(f"--roi {args.roi!r}: expected X,Y,WIDTH,HEIGHT") from None
    return CameraConfig(name=name, cti=args.cti, serial_number=args.serial, model=args.model,
                        pixel_format=args.pixel_format, exposure_us=args.exposure_us, gain_db=args.gain_db,
                        roi=roi, timeout_s=args.timeout)


def register(sub: argparse._SubParsersAction) -> None:
    capture = sub.add_parser("capture", help="acquire images from the bench devices (lab operators)",
                             description="Drive the bench devices: the RGB camera, lock-in IR thermography.")
    csub = capture.add_subparsers(dest="capture_command", metavar="ACTION")
    rgb = csub.add_parser("rgb", help="one RGB frame to a new folder", epilog=EPILOG_RGB,
                          formatter_class=argparse.RawDescriptionHelpFormatter,
                          description="Trigger one frame of the RGB camera and write OUT/rgb.png and OUT/rgb.json.")
    rgb.add_argument("out", type=Path, help="new output folder (never overwritten)")
    _add_camera_options(rgb)
    rgb.set_defaults(handler=_rgb)

    ir = csub.add_parser("ir", help="lock-in thermography of one part to a new folder", epilog=EPILOG_IR,
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Heat the part with a modulated lamp and record the IR camera; write amplitude "
                         "and phase images.")
    ir.add_argument("out", type=Path, help="new output folder (never overwritten)")
    ir.add_argument("--heater", help="serial port of the heater controller, e.g. /dev/ttyUSB0")
    ir.add_argument("--frequency", type=float, default=0.1, help="lock-in frequency, 0.01-2 Hz (default 0.1)")
    ir.add_argument("--periods", type=int, default=6, help="integrated periods (default 6)")
    ir.add_argument("--settle", type=int, default=1, help="discarded first periods (default 1)")
    ir.add_argument("--fps", type=float, default=25.0, help="IR frame rate (default 25)")
    ir.add_argument("--power", type=float, default=100.0, help="heater power in percent (default 100)")
    ir.add_argument("--gray-reference-k", type=float, default=None,
                    help="amplitude (K) mapped to gray 255 in infrared.png (default 4.0)")
    ir.add_argument("--save-raw", action="store_true", help="also keep every raw 16-bit frame (ir_frames.tiff)")
    _add_camera_options(ir)
    ir.set_defaults(handler=_ir)
    capture.set_defaults(handler=lambda args: capture.print_help() or 2)


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM takes the same clean path as Ctrl-C (heater off, no partial output)."""
    def handler(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _rgb(args: argparse.Namespace) -> int:
    from .camera import GenICamCamera
    from .steps import record_rgb

    if args.sim:
        from hardware_mocks.devices import SimBench
        from hardware_mocks.sim_cameras import rgb_camera

        bench = SimBench.load(args.sim)
        camera = rgb_camera(bench.part, bench.clock(), bench.image_size, timeout_s=args.timeout)
    else:
        camera = GenICamCamera(_camera_config(args, "rgb camera"))
    with terminate_as_interrupt(), atomic_folder(args.out) as folder, camera:
        record = record_rgb(camera, folder)
    print(f"wrote {args.out / 'rgb.png'} ({record['shape'][1]}x{record['shape'][0]})")
    return 0


def _ir(args: argparse.Namespace) -> int:
    from .camera import GenICamCamera
    from .clock import host_clock
    from .heater import open_heater
    from .lockin import DEFAULT_GRAY_REFERENCE_K
    from .steps import record_ir
    from .thermography import LockInSettings

    settings = LockInSettings(frequency_hz=args.frequency, periods=args.periods, settle_periods=args.settle,
                              frame_rate_hz=args.fps, power_percent=args.power,
                              gray_reference_k=args.gray_reference_k or DEFAULT_GRAY_REFERENCE_K)
    if args.sim:
        from hardware_mocks.devices import SimBench
        from hardware_mocks.sim_cameras import thermal_camera

        bench = SimBench.load(args.sim)
        clock = bench.clock()
        port = args.heater or bench.heater_port
        camera = thermal_camera(bench.part, clock, bench.heater_edge_log, bench.image_size, timeout_s=args.timeout)
    else:
        if not args.heater:
            raise MulsenError("--heater PORT is required with real devices (or use --sim STATE)")
        clock, port = host_clock(), args.heater
        config = _camera_config(args, "ir camera")
        config.pixel_format = config.pixel_format or "Mono16"
        camera = GenICamCamera(config, clock)
    with terminate_as_interrupt(), atomic_folder(args.out) as folder, open_heater(port, clock) as heater, camera:
        record = record_ir(camera, heater, clock, settings, folder, save_raw=args.save_raw)
    print(json.dumps({"out": str(args.out), **record}, indent=2))
    return 0
