"""``mulsen dataset ...``: commands for dataset curators."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mulsen.progress import bar


def register(sub: argparse._SubParsersAction) -> None:
    ds = sub.add_parser("dataset", help="validate and describe datasets in the MulSen-AD layout",
                        description="Commands for datasets in the MulSen-AD layout "
                        "(<category>/{RGB,Infrared,Pointcloud}/{train,test/<type>,GT/<type>}).")
    dsub = ds.add_subparsers(dest="dataset_command", metavar="ACTION")

    val = dsub.add_parser("validate", help="check every rule of the data contract",
                          description="Check a dataset against the MulSen-AD contract and print every violation "
                          "as 'path: problem (kind)', then a count per kind. Exit status 1 when any error "
                          "is found (warnings alone exit 0).")
    val.add_argument("root", type=Path, help="dataset folder (an extra MulSen_AD/MulSen_AD level is tolerated)")
    val.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    val.add_argument("--strict-size", action="store_true",
                     help="treat images not at the published 1280x960 / 640x480 as errors")
    val.add_argument("--tolerance", type=float, default=0.01,
                     help="max distance (mm) of a point-GT row from a mesh vertex (default 0.01)")
    val.add_argument("--quiet-warnings", action="store_true", help="list errors only")
    val.set_defaults(handler=_validate)

    st = dsub.add_parser("stats", help="print the paper's Table 3 for a dataset",
                         description="Per category: #train normal, #test normal, #test abnormal, #total, "
                         "#anomaly types, abnormal ratio per modality and how many anomalous samples are "
                         "visible in RGB only, IR only, PC only, two or all three modalities.")
    st.add_argument("root", type=Path)
    fmt = st.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fmt.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    st.set_defaults(handler=_stats)
    ds.set_defaults(handler=lambda args: ds.print_help() or 2)


def _validate(args: argparse.Namespace) -> int:
    from .validate import ERROR, validate_dataset

    report = validate_dataset(args.root, jobs=args.jobs, strict_size=args.strict_size,
                              point_tolerance=args.tolerance, progress=bar("validating samples"))
    shown = report.errors if args.quiet_warnings else report.problems
    for problem in shown:
        print(problem)
    counts = report.counts()
    errors = len(report.errors)
    print(f"{report.root}: {report.samples} samples checked, {errors} errors, "
          f"{len(report.problems) - errors} warnings")
    severity_of = {p.kind: p.severity for p in report.problems}
    for kind, count in sorted(counts.items()):
        severity = severity_of[kind]
        print(f"  {kind}: {count}{'' if severity == ERROR else ' (warning)'}")
    return 0 if report.ok else 1


def _stats(args: argparse.Namespace) -> int:
    from .reader import MulsenDataset
    from .stats import dataset_stats, format_table, to_csv, to_json

    dataset = MulsenDataset(args.root, strict=False)
    rows = dataset_stats(dataset, progress=bar("reading ground truth"))
    if args.json:
        print(to_json(rows))
    elif args.csv:
        sys.stdout.write(to_csv(rows))
    else:
        print(format_table(rows))
    for problem in dataset.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    return 0
