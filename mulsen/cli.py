"""The ``mulsen`` command line: one subcommand per user role."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from . import __version__
from .core.errors import MulsenError

DESCRIPTION = """\
Multi-sensor industrial anomaly detection (RGB + lock-in IR + 3D), from the lab bench to a detector.

Roles and their commands:
  lab operators     mulsen capture rgb|ir|sample|batch  drive the cameras, lock-in IR, the arm, the scanner
                    mulsen capture check|bench-template check every device once; a bench file to fill in
                    mulsen calibrate intrinsics|hand-eye|ir-rgb   calibrate the cameras and the arm
  dataset curators  mulsen dataset validate|stats|report DIR   check a MulSen-AD dataset, Table 3, HTML QA page
                    mulsen dataset merge|build|pack|verify   captures -> annotated release
  inspectors        mulsen train|evaluate|detect        fit the triple-sensor detector, score parts
                    (evaluate --report, detect --report: HTML pages with heatmaps, curves, galleries)
  developers        mulsen sim dataset OUT              generate a synthetic dataset with planted defects
                    mulsen sim devices                  run the device simulators (heater, cameras, UR5, scanner)
                    mulsen sim annotate CAPTURES        play the curator on simulated captures
  everyone          mulsen demo                         the end-to-end demo on the simulators

Run 'mulsen COMMAND --help' for the details of each command. -q: results and errors only (scripts);
-v: debug messages and the device libraries' own warnings.

Exit status: 0 success; 1 the data or devices were checked and found wanting (validate, verify,
capture check); 2 an expected error (bad input, bad usage, a device problem), reported in one line;
3 an internal error, reported in one line (run again with --debug for the traceback, and please
report it); 130 interrupted.
"""

EXIT_OK, EXIT_INVALID, EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mulsen", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mulsen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log debug messages, and show the device libraries' own warnings")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="for scripts: no progress, no warnings; results, the summary and errors only")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an internal error (exit status 3) instead of one line")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted after the subcommand too, where a user types it on a rerun
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    args.argv = argv  # the command as typed: a command that stops half-way tells how to resume it
    # SIGTERM/SIGHUP unwind like Ctrl-C: context managers remove temporary files, stop simulators and
    # switch the heater off
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _interrupt)
    _quiet_logs(args.verbose, args.quiet)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except MulsenError as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        print(f"error: interrupted{f' ({exc})' if str(exc) else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug of ours: one line, the traceback only on request
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {_one_line(exc)} (run again with --debug for the "
              f"traceback and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


# third-party libraries whose chatter is theirs, not the user's: shown with -v only
THIRD_PARTY_LOGGERS = ("harvesters", "genicam", "urx", "ray", "matplotlib", "PIL", "open3d")


def _quiet_logs(verbose: bool, quiet: bool) -> None:
    """Console hygiene: our warnings by default; the device libraries' warnings (urx's notifyAll deprecation,
    harvesters' CTI lines) only with ``-v``; with ``-q`` no progress and no warnings at all."""
    import os
    import warnings

    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if quiet:
        os.environ["MULSEN_NO_PROGRESS"] = "1"  # worker processes inherit it
        warnings.simplefilter("ignore")
    if not verbose:
        for name in THIRD_PARTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        # urx 0.11's monitor thread calls Condition.notifyAll, deprecated since Python 3.10: harmless
        warnings.filterwarnings("ignore", message=".*notifyAll", category=DeprecationWarning)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
