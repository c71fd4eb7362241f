"""``mulsen sim ...``: the virtual world and device simulators."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mulsen.progress import bar


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
    from .world.parts import CATEGORIES

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
    ds.add_argument("--defect-size", type=float, default=1.0, help="scale of defect sizes (1 = default)")
    ds.add_argument("--defect-amplitude", type=float, default=1.0, help="scale of defect contrast/depth")
    ds.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ds.set_defaults(handler=_dataset)
    sim.set_defaults(handler=lambda args: sim.print_help() or 2)


def _dataset(args: argparse.Namespace) -> int:
    from .world.defects import DefectConfig
    from .world.generate import GenerationConfig, generate_dataset

    defaults = (12, 4, 12) if args.size == "small" else (90, 10, 30)
    config = GenerationConfig(
        categories=tuple(args.categories),
        train=args.train if args.train is not None else defaults[0],
        test_good=args.test_good if args.test_good is not None else defaults[1],
        test_bad=args.test_bad if args.test_bad is not None else defaults[2],
        seed=args.seed, size=args.size,
        defects=DefectConfig(size_scale=args.defect_size, amplitude_scale=args.defect_amplitude))
    counts = generate_dataset(args.out, config, jobs=args.jobs, progress=bar("rendering samples"))
    print(f"wrote {args.out}: {counts['train']} train, {counts['test_good']} test good, "
          f"{counts['test_bad']} test defective samples in {len(config.categories)} categories")
    if counts["visibility_changed"]:
        print(f"note: {counts['visibility_changed']} planted defects were too small to see and went to test/good")
    return 0
