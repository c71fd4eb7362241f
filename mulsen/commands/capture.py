"""``mulsen capture ...``: one-off captures with real devices or the simulated bench (for lab operators)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
from pathlib import Path

from mulsen.acquisition.camera import Camera
from mulsen.acquisition.lockin import FREQUENCY_RANGE_HZ
from mulsen.acquisition.placement import NominalPlacement, Placement
from mulsen.acquisition.session import Bench, SessionConfig
from mulsen.acquisition.thermography import LockInSettings
from mulsen.core.atomic import atomic_folder
from mulsen.core.errors import MulsenError
from mulsen.core.records import to_plain

from .options import add_field_option

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
    from mulsen.acquisition.camera import CameraConfig

    roi = None
    if args.roi:
        try:
            x, y, width, height = (int(v) for v in args.roi.split(","))
        except ValueError:
            raise MulsenError(f"--roi {args.roi!r}: expected X,Y,WIDTH,HEIGHT") from None
        roi = (x, y, width, height)
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
    _add_lockin_options(ir)
    ir.add_argument("--save-raw", action="store_true", help="also keep every raw 16-bit frame (ir_frames.tiff)")
    _add_camera_options(ir)
    ir.set_defaults(handler=_ir)
    sample = csub.add_parser(
        "sample", help="capture one complete sample: IR lock-in, arm, RGB, both scans",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Drive every device for one sample and write OUT/<category>/<sample-id>/ with capture.json. "
        "Work happens in OUT/.partial/ and is renamed into place only when complete; a captured sample is never "
        "overwritten; an interrupted one must be resumed (--resume) or discarded (--discard).",
        epilog="examples:\n  mulsen capture sample --out captures --category nut --sample-id 001 --bench bench.json\n"
        "  mulsen capture sample --out captures --category nut --sample-id 001 --sim sim-bench --part nut:3:crack")
    _add_session_options(sample)
    sample.add_argument("--category", required=True)
    sample.add_argument("--sample-id", required=True)
    sample.add_argument("--part", help="simulated bench only: the virtual part, CATEGORY:SEED[:DEFECT]")
    sample.add_argument("--notes", default="")
    sample.add_argument("--expected", metavar="TYPE",
                        help="what the part is: 'good' for a normal, or the defect type it carries ('crack'); "
                        "'dataset build' takes an unannotated capture as a training normal only when it says good")
    group = sample.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue an interrupted capture of this sample")
    group.add_argument("--discard", action="store_true", help="delete an interrupted capture and start over")
    sample.set_defaults(handler=_sample)

    batch = csub.add_parser(
        "batch", help="capture every sample of a plan (CSV), resumable",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Capture the samples listed in PLAN (CSV with a header: category,sample_id and optionally "
        "part,operator,notes,expected; expected is 'good' or the defect type the part carries). Samples already "
        "captured are skipped and interrupted ones resumed, so the same command continues a batch after any "
        "interruption. The batch stops at the first failing sample.",
        epilog="example plan.csv:\n  category,sample_id,expected\n  nut,001,good\n  nut,002,crack")
    batch.add_argument("--plan", type=Path, required=True)
    _add_session_options(batch)
    batch.set_defaults(handler=_batch)

    check = csub.add_parser("check", help="open every device of a bench once and list every problem",
                            description="Before a capture day: opens the heater (and confirms it is off), grabs one "
                            "frame from each camera, reads the arm's pose (it does not move) and looks at the "
                            "scanner's export folder, each on its own, so one dead device never hides another. "
                            "One line per device; exit status 1 when any failed.")
    where = check.add_mutually_exclusive_group(required=True)
    where.add_argument("--bench", type=Path, help="the real bench's JSON file")
    where.add_argument("--sim", type=Path, metavar="STATE", help="the simulated bench of 'mulsen sim devices'")
    check.set_defaults(handler=_check)

    template = csub.add_parser("bench-template", help="write a commented bench.json to fill in",
                               description="Writes a bench file with every field and a comment on each (keys "
                               "starting with # are comments and are ignored when the file is read). Fill it in, "
                               "then 'mulsen capture check --bench FILE'.")
    template.add_argument("out", type=Path, nargs="?", default=Path("bench.json"), help="default bench.json")
    template.set_defaults(handler=_bench_template)
    capture.set_defaults(handler=lambda args: capture.print_help() or 2)


def _add_session_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="capture root folder")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--bench", type=Path, help="JSON file naming the real devices (see acquisition/bench.py)")
    where.add_argument("--sim", type=Path, metavar="STATE", help="the simulated bench of 'mulsen sim devices'")
    parser.add_argument("--operator", default="", help="who captures (default: the login name)")
    _add_lockin_options(parser)
    add_field_option(parser, "--arm-speed", SessionConfig, "arm_speed_m_s", "arm speed in m/s")
    add_field_option(parser, "--scan-timeout", SessionConfig, "scan_timeout_s", "seconds to wait for both scans")
    parser.add_argument("--save-raw", action="store_true", help="keep the raw IR frames")
    parser.add_argument("--calibration", type=Path, help="calibration folder from 'mulsen calibrate' (else the "
                        "nominal bench geometry places the RGB camera)")
    parser.add_argument("--detect", type=Path, metavar="MODELS",
                        help="judge each part right after its capture with MODELS/<category> (from 'mulsen "
                        "train'); verdicts in OUT/_detections/verdicts.jsonl, reports beside it")


def _add_lockin_options(parser: argparse.ArgumentParser) -> None:
    low, high = FREQUENCY_RANGE_HZ
    add_field_option(parser, "--frequency", LockInSettings, "frequency_hz", f"lock-in frequency, {low:g}-{high:g} Hz")
    add_field_option(parser, "--periods", LockInSettings, "periods", "integrated lock-in periods")
    add_field_option(parser, "--settle", LockInSettings, "settle_periods", "discarded first periods")
    add_field_option(parser, "--fps", LockInSettings, "frame_rate_hz", "IR frame rate")
    add_field_option(parser, "--power", LockInSettings, "power_percent", "heater power in percent")
    add_field_option(parser, "--gray-reference-k", LockInSettings, "gray_reference_k",
                     "amplitude (K) mapped to gray 255 in infrared.png; fixed per setup, never per image")


def _lockin_settings(args: argparse.Namespace) -> LockInSettings:
    return LockInSettings(frequency_hz=args.frequency, periods=args.periods, settle_periods=args.settle,
                          frame_rate_hz=args.fps, power_percent=args.power, gray_reference_k=args.gray_reference_k)


def _session(args: argparse.Namespace):
    from mulsen.acquisition.session import CaptureSession

    placement: Placement = NominalPlacement()
    if args.calibration:
        from mulsen.calibration.placement import CalibratedPlacement

        placement = CalibratedPlacement.load(args.calibration)
    config = SessionConfig(lockin=_lockin_settings(args), arm_speed_m_s=args.arm_speed,
                           scan_timeout_s=args.scan_timeout, save_raw_ir=args.save_raw, placement=placement)
    bench: Bench
    if args.sim:
        from mulsen.hardware_mocks.devices import SimBench
        from mulsen.hardware_mocks.sim_bench import SimulatedBench

        bench = SimulatedBench(SimBench.load(args.sim))
        config.scan_settle_s = 0.3
    else:
        from mulsen.acquisition.bench import RealBench

        bench = RealBench.load(args.bench)
    from mulsen.reports.capture import write_preview

    return CaptureSession(args.out, bench, config, announce=lambda text: print(text, flush=True),
                          on_finished=write_preview)


def _check(args: argparse.Namespace) -> int:
    from mulsen.acquisition.bench import run_checks

    if args.sim:
        from mulsen.hardware_mocks.devices import SimBench
        from mulsen.hardware_mocks.sim_bench import SimulatedBench

        # not refused when a simulator is gone: that is what the check is for (it reports it, with the rest)
        probes = SimulatedBench(SimBench.load(args.sim, check=False)).probes()
    else:
        from mulsen.acquisition.bench import RealBench

        probes = RealBench.load(args.bench).probes()
    results = run_checks(probes)
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.device}: {r.detail} ({r.seconds:.1f} s)", flush=True)
    failed = [r.device for r in results if not r.ok]
    print(f"{len(results) - len(failed)} of {len(results)} devices ok" + (f"; failed: {', '.join(failed)}"
                                                                          if failed else ""))
    return 1 if failed else 0


def _bench_template(args: argparse.Namespace) -> int:
    from mulsen.acquisition.bench import BENCH_TEMPLATE
    from mulsen.core.atomic import atomic_write_text

    if args.out.exists():
        raise MulsenError(f"{args.out}: already exists (a bench file is never overwritten)")
    atomic_write_text(args.out, json.dumps(BENCH_TEMPLATE, indent=2) + "\n", overwrite=False)
    print(f"wrote {args.out}: fill in the devices (CHANGE-ME), then 'mulsen capture check --bench {args.out}'")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from mulsen.dataset.captures import SampleRequest

    request = SampleRequest(args.category, args.sample_id, args.operator, args.notes, args.part,
                            args.expected.strip().lower() if args.expected else None)
    detectors = _detectors(args, [request.category])  # pre-flight: the model loads before anything heats
    with terminate_as_interrupt(), _resume_hint(args, add_resume=True):
        folder = _session(args).capture(request, resume=args.resume, discard=args.discard)
    preview = folder / "preview.png"
    print(f"captured {folder}" + (f" (contact sheet: {preview})" if preview.exists() else ""))
    _judge(args, detectors, request, folder)
    return 0


def _detectors(args: argparse.Namespace, categories: list[str]) -> dict:
    """One loaded detector per category when ``--detect`` is given (a missing model stops before capture)."""
    if not args.detect:
        return {}
    from mulsen.detection.inspector import Detector

    return {category: Detector.load(args.detect / category) for category in sorted(set(categories))}


def _judge(args: argparse.Namespace, detectors: dict, request, folder: Path) -> None:
    if not detectors:
        return
    from mulsen.detection.inspector import VERDICTS_FILE, judge

    out = args.out / "_detections"
    relative = f"{request.category}/{request.sample_id}"
    print(judge(detectors[request.category], folder, relative, request.category, out,
                log=out / VERDICTS_FILE).summary())


def read_plan(path: Path) -> list:
    import csv
    import io

    from mulsen.core.errors import DataFormatError
    from mulsen.core.files import read_input
    from mulsen.dataset.captures import SampleRequest

    try:
        text = read_input(path, "plan").decode("utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataFormatError(path, f"not a UTF-8 CSV plan ({exc})") from None
    if not rows or not {"category", "sample_id"} <= set(rows[0]):
        raise MulsenError(f"{path}: the plan needs a header with at least 'category,sample_id'")
    requests, seen = [], set()
    for number, row in enumerate(rows, 2):
        if None in row or any(value is None for value in row.values()):
            raise DataFormatError(path, f"line {number} does not have the header's number of columns")
        key = (row["category"].strip(), row["sample_id"].strip())
        if not all(key):
            raise DataFormatError(path, f"line {number}: category and sample_id must not be empty")
        if key in seen:
            raise MulsenError(f"{path}: line {number}: {key[0]}/{key[1]} is planned twice")
        seen.add(key)
        try:
            requests.append(SampleRequest(*key, (row.get("operator") or "").strip(),
                                          (row.get("notes") or "").strip(), (row.get("part") or "").strip() or None,
                                          (row.get("expected") or "").strip().lower() or None))
        except MulsenError as exc:
            raise DataFormatError(path, f"line {number}: {exc}") from None
    return requests


def _batch(args: argparse.Namespace) -> int:
    from mulsen.core.progress import progress

    requests = read_plan(args.plan)
    detectors = _detectors(args, [r.category for r in requests])
    session = _session(args)
    done = skipped = 0
    with terminate_as_interrupt(), _resume_hint(args, add_resume=False):
        for request in progress(requests, len(requests), "samples"):
            if session.final_folder(request).exists():
                skipped += 1
                continue
            if args.operator and not request.operator:
                request = dataclasses.replace(request, operator=args.operator)
            folder = session.capture(request, resume=session.partial_folder(request).exists())
            _judge(args, detectors, request, folder)
            done += 1
    from mulsen.reports.capture import capture_index

    index = capture_index(args.out)
    print(f"batch {args.plan}: {done} captured, {skipped} already present, {len(requests)} planned; "
          f"contact sheets: {index}")
    return 0


@contextlib.contextmanager
def _resume_hint(args: argparse.Namespace, add_resume: bool):
    """After Ctrl-C during a capture: one summary (the steps kept, the heater's state) and the exact command
    that continues (``capture sample`` with --resume; ``capture batch`` resumes by itself)."""
    import shlex

    from mulsen.acquisition.session import CaptureInterrupted

    try:
        yield
    except CaptureInterrupted as exc:
        argv = [a for a in getattr(args, "argv", None) or sys.argv[1:] if a != "--discard"]
        if add_resume and "--resume" not in argv:
            argv.append("--resume")
        print(f"{exc.summary()}\nresume with: mulsen {shlex.join(argv)}", file=sys.stderr, flush=True)
        raise KeyboardInterrupt from None


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
    from mulsen.acquisition.camera import GenICamCamera
    from mulsen.acquisition.steps import record_rgb

    camera: Camera
    if args.sim:
        from mulsen.hardware_mocks.devices import SimBench
        from mulsen.hardware_mocks.sim_cameras import rgb_camera

        bench = SimBench.load(args.sim)
        camera = rgb_camera(bench.part, bench.clock(), bench.image_size, timeout_s=args.timeout)
    else:
        camera = GenICamCamera(_camera_config(args, "rgb camera"))
    with terminate_as_interrupt(), atomic_folder(args.out) as folder, camera:
        record = record_rgb(camera, folder)
    print(f"wrote {args.out / 'rgb.png'} ({record.shape[1]}x{record.shape[0]})")
    return 0


def _ir(args: argparse.Namespace) -> int:
    from mulsen.acquisition.camera import GenICamCamera
    from mulsen.acquisition.clock import host_clock
    from mulsen.acquisition.heater import open_heater
    from mulsen.acquisition.steps import record_ir

    settings = _lockin_settings(args)
    camera: Camera
    if args.sim:
        from mulsen.hardware_mocks.devices import SimBench
        from mulsen.hardware_mocks.sim_cameras import thermal_camera

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
        try:
            record = record_ir(camera, heater, clock, settings, folder, save_raw=args.save_raw)
        except KeyboardInterrupt:
            off = "heater confirmed off" if heater.off_safely() else "HEATER NOT CONFIRMED OFF: check it"
            print(f"capture ir interrupted: nothing written ({args.out} does not exist); {off}; run the same "
                  "command again to start over", file=sys.stderr, flush=True)
            raise
    print(json.dumps({"out": str(args.out), **to_plain(record)}, indent=2))
    return 0
