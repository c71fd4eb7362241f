"""The ``mulsen`` command line: one subcommand per user role."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .core.errors import MulsenError

DESCRIPTION = """\
Multi-sensor industrial anomaly detection (RGB + lock-in IR + 3D), from the lab bench to a detector.

Roles and their commands:
  lab operators     mulsen capture rgb|ir|sample|batch  drive the cameras, lock-in IR, the arm, the scanner
                    mulsen calibrate intrinsics|hand-eye|ir-rgb   calibrate the cameras and the arm
  dataset curators  mulsen dataset validate|stats DIR   check a MulSen-AD dataset, print Table 3
                    mulsen dataset merge|build|pack|verify   captures -> annotated release
  inspectors        mulsen train|evaluate|detect        fit the triple-sensor detector, score parts
  developers        mulsen sim dataset OUT              generate a synthetic dataset with planted defects
                    mulsen sim devices                  run the device simulators (heater, cameras, UR5, scanner)
                    mulsen sim annotate CAPTURES        play the curator on simulated captures
  everyone          mulsen demo                         the end-to-end demo on the simulators

Run 'mulsen COMMAND --help' for the details of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mulsen", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mulsen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from mulsen.commands.calibrate import register as register_calibration
    from mulsen.commands.capture import register as register_capture
    from mulsen.commands.dataset import register as register_dataset
    from mulsen.commands.inspect import register as register_detection
    from mulsen.commands.sim import register as register_sim

    from .demo import register as register_demo

    register_capture(sub)
    register_calibration(sub)
    register_dataset(sub)
    register_sim(sub)
    register_detection(sub)
    register_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except MulsenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
