"""``mulsen sim ...``: the virtual world and device simulators."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mulsen.core.progress import bar


def register(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("sim", help="virtual world: synthetic datasets with planted defects",
                         description="The virtual world: parts with planted multi-modal defects rendered by the "
                         "RGB, lock-in IR and scanner models.")
    ssub = sim.add_subparsers(dest="sim_command", metavar="ACTION")
    ds = ssub.add_parser(
        "dataset", help="generate a synthetic dataset in the MulSen-AD layout",
        description="Render a complete dataset (train normals, test good, test defects) with known ground truth. "
        "Reproducible: the same arguments give byte-identical files. Every planted defect is recorded in "
        "OUT/_provenance/<category>.jsonl.",
        epilog="example: mulsen sim dataset out/sim --size small --categories nut capsule --seed 1")
    from mulsen.hardware_mocks.world.parts import CATEGORIES

    ds.add_argument("out", type=Path, help="new output folder")
    ds.add_argument("--categories", nargs="+", default=list(CATEGORIES), choices=list(CATEGORIES), metavar="C",
                    help=f"categories to generate (default: all: {', '.join(CATEGORIES)})")
    ds.add_argument("--train", type=int, default=None, help="normal training samples per category")
    ds.add_argument("--test-good", type=int, default=None, help="normal test samples per category")
    ds.add_argument("--test-bad", type=int, default=None, help="defective test samples per category")
    ds.add_argument("--seed", type=int, default=0)
    ds.add_argument("--size", choices=["small", "full"], default="small",
                    help="small: 320x240 RGB, 160x120 IR, ~6k-vertex meshes (defaults 12/4/12 samples); "
                    "full: 1280x960, 640x480, ~80k vertices (defaults 90/10/30)")
    ds.add_argument("--difficulty", choices=["normal", "hard"], default="normal",
                    help="hard: what real benches vary and the normal preset holds fixed: any in-plane rotation, "
                    "±10 %% exposure, ±5 %% IR lamp drift and glints, the mesh at any pose and up to 25° tilt in the "
                    "scanner frame, 0.5-2x mesh density, ±3 %% part size")
    ds.add_argument("--defect-size", type=float, default=1.0, help="scale of defect sizes (1 = default)")
    ds.add_argument("--defect-amplitude", type=float, default=1.0, help="scale of defect contrast/depth")
    ds.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ds.set_defaults(handler=_dataset)
    dev = ssub.add_parser(
        "devices", help="run the device simulators (heater, cameras, UR5, scanner) for manual use",
        description="Start the device simulators and keep them running until Ctrl-C: the heater controller on a "
        "pseudo-terminal, the UR5 controller on 127.0.0.N:30002, the laser scanner writing exports to a folder. "
        "They write a state file (STATE/devices.json) naming the serial port, robot address, export folder, the "
        "shared simulated clock and the virtual part on the bench; pass it to capture commands with --sim STATE. "
        "Cameras go through the real GenTL simulator producer (TLSimu.cti from genicam 1.5.0).",
        epilog="example: mulsen sim devices --state sim-bench --part nut:3:crack --time-scale 20 &\n"
        "         mulsen capture ir captures/ir-001 --sim sim-bench --frequency 0.5 --periods 4",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    dev.add_argument("--state", type=Path, default=Path("sim-bench"), help="folder for the state file and logs")
    dev.add_argument("--part", default="nut:0:crack", help="virtual part on the bench: CATEGORY:SEED[:DEFECT]")
    dev.add_argument("--time-scale", type=float, default=10.0,
                     help="simulated seconds per real second (heating minutes take seconds; default 10)")
    dev.add_argument("--size", choices=["small", "full"], default="full", help="camera image size")
    dev.add_argument("--scan-format", default="stl", help="scanner export format: stl, stl_ascii, ply, ply_ascii, "
                     "obj, xyz, csv (default stl)")
    dev.add_argument("--heater-watchdog", type=float, default=10.0,
                     help="the heater switches off after this many silent (simulated) seconds")
    dev.set_defaults(handler=_devices)
    ann = ssub.add_parser(
        "annotate", help="play the curator: annotate simulated captures from the virtual world's truth",
        description="For every simulated capture under CAPTURES (merged first with 'mulsen dataset merge'), "
        "write what a curator would: LabelMe rgb.json / infrared.json where the planted defect is visible, "
        "a point selection pointcloud.txt on the merged mesh, into OUT/<category>/<sample_id>/.")
    ann.add_argument("captures", type=Path)
    ann.add_argument("--out", type=Path, required=True)
    ann.set_defaults(handler=_annotate)
    sim.set_defaults(handler=lambda args: sim.print_help() or 2)


def _dataset(args: argparse.Namespace) -> int:
    from mulsen.hardware_mocks.world.defects import DefectConfig
    from mulsen.hardware_mocks.world.generate import GenerationConfig, generate_dataset

    defaults = (12, 4, 12) if args.size == "small" else (90, 10, 30)
    config = GenerationConfig(
        categories=tuple(args.categories),
        train=args.train if args.train is not None else defaults[0],
        test_good=args.test_good if args.test_good is not None else defaults[1],
        test_bad=args.test_bad if args.test_bad is not None else defaults[2],
        seed=args.seed, size=args.size, difficulty=args.difficulty,
        defects=DefectConfig(size_scale=args.defect_size, amplitude_scale=args.defect_amplitude))
    counts = generate_dataset(args.out, config, jobs=args.jobs, progress=bar("rendering samples"))
    print(f"wrote {args.out}: {counts['train']} train, {counts['test_good']} test good, "
          f"{counts['test_bad']} test defective samples in {len(config.categories)} categories")
    if counts["visibility_changed"]:
        print(f"note: {counts['visibility_changed']} planted defects were too small to see and went to test/good")
    return 0


def _devices(args: argparse.Namespace) -> int:
    import time

    from mulsen.hardware_mocks.devices import running_simulators
    from mulsen.hardware_mocks.sim_cameras import BenchPart

    part = BenchPart.parse(args.part)
    with running_simulators(args.state, part, args.time_scale, args.size, scan_format=args.scan_format,
                            heater_args=["--watchdog", repr(args.heater_watchdog)]) as (bench, processes):
        print(f"state file: {bench.state_dir / 'devices.json'}")
        print(f"heater:     {bench.heater_port} (serial, 115200 8N1; edge log {bench.heater_edge_log})")
        print(f"cameras:    GenTL simulator (TLSimu.cti), virtual part {part}, time scale {bench.time_scale}x")
        print(f"robot:      UR5 secondary interface on {bench.robot_host}:30002 (urx.URRobot)")
        print(f"scanner:    exports to {bench.scan_export_dir} ({bench.scan_format})")
        print("running; press Ctrl-C to stop", flush=True)
        try:
            while all(p.alive() for p in processes.values()):
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
        dead = [name for name, p in processes.items() if not p.alive()]
        print(f"error: simulator stopped unexpectedly: {', '.join(dead)}")
        return 1


def _annotate(args: argparse.Namespace) -> int:
    from mulsen.dataset.build import capture_folders, merge_capture
    from mulsen.hardware_mocks.world.annotate import annotate_capture

    folders = capture_folders(args.captures)
    annotated = 0
    for category, sample_id, folder in bar("annotating")(folders, len(folders)):
        merge_capture(folder)
        done = annotate_capture(folder, args.out / category / sample_id)
        if done:
            annotated += 1
            print(f"{category}/{sample_id}: " + ", ".join(f"{k} ({v} {'points' if k == 'pointcloud' else 'px'})"
                                                         for k, v in done.items()))
    print(f"{annotated} of {len(folders)} captures annotated into {args.out}")
    return 0
