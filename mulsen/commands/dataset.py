"""``mulsen dataset ...``: commands for dataset curators."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mulsen.core.files import output_folder
from mulsen.core.progress import bar
from mulsen.reports import QA_SAMPLES

from .options import add_backend_options, executor_from


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
    add_backend_options(val, "checking samples")
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

    merge = dsub.add_parser(
        "merge", help="align and merge the two scans of each capture into pointcloud.stl",
        description="For each capture folder (or every capture under a captures root): align scan B (part "
        "turned over) onto scan A from the flip prior with multi-scale point-to-plane ICP, check the quality "
        "gates (overlap fitness, inlier RMSE), merge, and write pointcloud.stl + alignment.json. Captures "
        "already merged are left alone. An alignment that misses the gates writes nothing: give --initial "
        "(a JSON 4x4 matrix B->A) or --pairs (JSON {\"a\": [[x,y,z]x3], \"b\": [[x,y,z]x3]}).")
    merge.add_argument("paths", type=Path, nargs="+", help="capture folders or captures roots")
    merge_init = merge.add_mutually_exclusive_group()
    merge_init.add_argument("--initial", type=Path, help="JSON file with a 4x4 initial transform (B -> A)")
    merge_init.add_argument("--pairs", type=Path, help="JSON file with three corresponding points in A and B")
    _add_gate_options(merge)
    merge.set_defaults(handler=_merge)

    build = dsub.add_parser(
        "build", help="turn captures + annotations into a MulSen-AD dataset (incremental)",
        description="Merge scans where needed, import LabelMe masks (rgb.json, infrared.json) and point "
        "selections (pointcloud.txt) from ANNOTATIONS/<category>/<sample_id>/, and write the MulSen-AD layout. "
        "Defect captures go to test/<type>; normal ones to train or test/good by a stable hash of their id "
        "(or by --splits CSV: category,sample_id,split). Captures already in the dataset are skipped, so "
        "re-running adds only new captures without renumbering released samples (--update re-imports corrected "
        "annotations of built ones). Nothing is guessed: a capture without annotations is a normal only when it "
        "was captured as one (plan column 'expected', 'capture sample --expected good', or the simulated part) "
        "or its sample.json says {\"defect\": \"good\"}. Every capture is checked first and every problem "
        "listed; with any problem nothing is added. Ends with validation.")
    build.add_argument("--captures", type=Path, required=True)
    build.add_argument("--annotations", type=Path,
                       help="annotation root (absent: only captures planned as normal can be built)")
    build.add_argument("--out", type=Path, required=True, help="dataset folder (created or extended)")
    build.add_argument("--split-policy", choices=["hash", "manifest"], default="hash")
    add_backend_options(build, "checking and merging captures")
    build.add_argument("--update", action="store_true",
                       help="also re-read the annotations of captures already built and rewrite their ground truth "
                       "in place where it changed (same sample numbers; recorded in _provenance)")
    build.add_argument("--splits", type=Path, help="CSV category,sample_id,split for --split-policy manifest")
    build.add_argument("--test-good-ratio", type=float, default=0.25,
                       help="share of normal captures held out as test/good (hash policy, default 0.25)")
    build.add_argument("--tolerance", type=float, default=0.05,
                       help="max distance (mm) from a selected point to a merged-mesh vertex (default 0.05)")
    _add_gate_options(build)
    build.set_defaults(handler=_build)

    pack = dsub.add_parser("pack", help="package a release: tar.gz + manifest (sha256) + dataset card",
                           description="Write NAME-VERSION.tar.gz with MANIFEST.json (size and SHA-256 of every "
                           "file, counts, statistics, tool version, date) and DATASET_CARD.md; copies of both "
                           "are written beside the archive. The dataset is validated first and an invalid one "
                           "is refused; only regular files are packed (a link or a special file in the dataset "
                           "is refused), and the archive appears complete or not at all, also on SIGTERM.")
    pack.add_argument("root", type=Path)
    pack.add_argument("--version", required=True, help="release version, e.g. 1.0.0")
    pack.add_argument("--name", help="release name (default: the folder name)")
    pack.add_argument("--out", type=Path, help="archive path (default: beside the dataset)")
    add_backend_options(pack, "validating and hashing files")
    pack.add_argument("--license", default="", help="the terms of use written into the dataset card, e.g. "
                      "'CC BY-NC-SA 4.0' (without: the card says none was given)")
    pack.add_argument("--citation", default="", help="how to cite the release (a BibTeX entry or a reference; "
                      "@FILE reads it from FILE)")
    pack.add_argument("--allow-invalid", action="store_true",
                      help="pack a dataset that fails validation (recorded in the manifest and the card)")
    pack.set_defaults(handler=_pack)

    verify = dsub.add_parser("verify", help="check a received release against its manifest",
                             description="Recompute the SHA-256 of every file of a release archive (or of an "
                             "unpacked release folder holding MANIFEST.json) and report missing, extra or "
                             "changed files; for an archive also a corrupt or truncated gzip stream, members "
                             "outside the release folder or with absolute names, links, devices and duplicates. "
                             "Nothing is extracted. Exit status 1 on any finding, 2 if the input is unreadable.")
    verify.add_argument("path", type=Path)
    verify.set_defaults(handler=_verify)
    report = dsub.add_parser("report", help="write an HTML page to look a dataset over (QA)",
                             description="Validate a dataset and write OUT/index.html, one self-contained page "
                             "(opens offline): the validation verdict and every problem, the counts and Table 3, the "
                             "visibility shares of the anomalous samples, and per category a QA gallery of anomalous "
                             "samples, those the validator flagged first: masks outlined on RGB and IR, ground-truth "
                             "points ringed on the point cloud.")
    report.add_argument("root", type=Path, metavar="DATASET")
    report.add_argument("--out", type=Path, required=True, help="report folder (index.html goes there)")
    report.add_argument("--samples", type=int, default=QA_SAMPLES, metavar="N",
                        help=f"QA rows per category (default {QA_SAMPLES})")
    add_backend_options(report, "validating samples")
    report.set_defaults(handler=_report)
    ds.set_defaults(handler=lambda args: ds.print_help() or 2)


def _validate(args: argparse.Namespace) -> int:
    from mulsen.dataset.validate import ERROR, validate_dataset

    report = validate_dataset(args.root, jobs=executor_from(args), strict_size=args.strict_size,
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


def _report(args: argparse.Namespace) -> int:
    import time

    from mulsen.core.errors import MulsenError
    from mulsen.reports.dataset import write_dataset_report

    if args.samples < 0:
        raise MulsenError(f"--samples must be 0 or more, got {args.samples}")
    if not args.root.is_dir():
        raise MulsenError(f"{args.root}: dataset folder not found")
    output_folder(args.out, "report folder")
    started = time.perf_counter()
    page, report = write_dataset_report(args.root, args.out, args.samples, executor_from(args), bar("QA gallery"))
    errors = len(report.errors)
    print(f"{report.root}: {report.samples} samples, {errors} errors, {len(report.problems) - errors} warnings "
          f"('mulsen dataset validate' lists them)")
    print(f"wrote the report {page} ({page.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s)")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from mulsen.dataset.reader import MulsenDataset
    from mulsen.dataset.stats import dataset_stats, format_table, to_csv, to_json

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
    from mulsen.dataset.layout import MIN_TRAINING_NORMALS

    for row in rows:
        if row.category != "mean" and row.train_normal < MIN_TRAINING_NORMALS:
            print(f"warning: {row.category} has {row.train_normal} training normal(s); the detector needs at least "
                  f"{MIN_TRAINING_NORMALS} to be trained", file=sys.stderr)
    return 0


def _add_gate_options(parser: argparse.ArgumentParser) -> None:
    from mulsen.dataset.align import AlignmentGates
    from mulsen.dataset.build import METRE_EXTENT, SCAN_UNITS, BuildConfig

    default = AlignmentGates().min_fitness
    parser.add_argument("--min-fitness", type=float, default=default,
                        help=f"least share of scan B's points that must pair with scan A (default {default}; "
                        "flipped parts overlap on their walls, 0.3-0.8 for the simulated parts; lower it only "
                        "for a part whose walls are a sliver of its surface)")
    parser.add_argument("--units", choices=SCAN_UNITS, default=BuildConfig().units,
                        help=f"the scans' length unit; auto: millimetres unless a scan is under {METRE_EXTENT:g} "
                        "units across, "
                        "then metres (converted to millimetres and recorded in alignment.json)")
    parser.add_argument("--accept-fallback", action="store_true",
                        help="take the global FPFH + RANSAC pose when it passes every gate except the flip check "
                        "(scans of a part that was not turned over); the refusal says when this would help")


def _gates(args: argparse.Namespace):
    from mulsen.core.errors import MulsenError
    from mulsen.dataset.align import AlignmentGates

    if not 0 < args.min_fitness <= 1:
        raise MulsenError(f"--min-fitness must lie in (0, 1], got {args.min_fitness}")
    return AlignmentGates(min_fitness=args.min_fitness, accept_fallback=args.accept_fallback)


def _merge(args: argparse.Namespace) -> int:
    from mulsen.core.errors import DataFormatError, MulsenError
    from mulsen.dataset.align import read_initial_transform, read_point_pairs, rigid_from_pairs
    from mulsen.dataset.build import (
        ALIGNMENT_NAME,
        MERGED_CLOUD_NAME,
        MERGED_NAME,
        AlignmentRecord,
        capture_folders,
        merge_capture,
    )

    gates = _gates(args)

    folders = []
    for path in args.paths:
        folders += [path] if (path / "capture.json").exists() else [f for _, _, f in capture_folders(path)]
    initial = None
    if args.initial:
        initial = read_initial_transform(args.initial)
    if args.pairs:
        initial = rigid_from_pairs(*read_point_pairs(args.pairs))
    failed = bad_input = 0
    for folder in bar("merging scans")(folders, len(folders)):
        fresh = not (folder / MERGED_NAME).exists() and not (folder / MERGED_CLOUD_NAME).exists()
        try:
            mesh = merge_capture(folder, gates, initial, args.units)
        except DataFormatError as exc:  # an unreadable file: the others are still merged
            print(f"error: {exc}", file=sys.stderr)
            bad_input += 1
            continue
        except MulsenError as exc:  # the scans were read but no alignment passed the gates
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        if fresh:
            report = AlignmentRecord.read(folder / ALIGNMENT_NAME)
            print(f"{folder}: fitness {report.fitness:.3f}, inlier RMSE {report.inlier_rmse_mm:.4f} mm, "
                  f"overlap {report.overlap_ratio:.2f}, {len(mesh.vertices)} "
                  f"{'vertices' if len(mesh.faces) else 'points -> ' + report.merged} ({report.method}"
                  + (f"; scans in {report.source_units}, converted to mm" if report.source_units != "mm" else "")
                  + ")")
        else:
            print(f"{folder}: already merged")
    return 2 if bad_input else 1 if failed else 0


def _build(args: argparse.Namespace) -> int:
    import sys

    from mulsen.core.errors import MulsenError
    from mulsen.dataset.build import BuildConfig, BuildError, build_dataset
    from mulsen.dataset.validate import validate_dataset

    splits = None
    if args.split_policy == "manifest":
        if not args.splits:
            raise MulsenError("--split-policy manifest needs --splits FILE.csv")
        splits = read_splits(args.splits)
    config = BuildConfig(test_good_ratio=args.test_good_ratio, point_tolerance_mm=args.tolerance, splits=splits,
                         gates=_gates(args), units=args.units)
    try:
        report = build_dataset(args.captures, args.annotations, args.out, config, progress=bar("checking captures"),
                               update=args.update, jobs=executor_from(args))
    except BuildError as exc:
        if len(exc.problems) == 1:  # one line, as every other error
            raise MulsenError(f"{exc.problems[0]} (nothing was added to {args.out})") from None
        for line in exc.problems:
            print(f"problem: {line}", file=sys.stderr)
        raise MulsenError(f"{len(exc.problems)} problem(s) listed above; nothing was added to {args.out}") from None
    for bucket, count in sorted(report.added.items()):
        print(f"  + {bucket}: {count}")
    for line in report.updated:
        print(f"  ~ ground truth re-imported: {line}")
    normals: dict[str, list[str]] = {}
    for sample in report.samples:
        if not any(sample["labels"].values()):
            category, capture = sample["capture"].split("/", 1)
            normals.setdefault(category, []).append(capture)
    for category, ids in sorted(normals.items()):
        print(f"  normals of {category} (planned as normal or declared good): {', '.join(ids)}")
    print(f"{args.out}: {report.total_added} samples added, {report.skipped} captures already in the dataset")
    validation = validate_dataset(args.out, jobs=1)
    for problem in validation.errors:
        print(problem)
    print(f"validation: {len(validation.errors)} errors, {len(validation.problems) - len(validation.errors)} "
          "warnings")
    return 0 if validation.ok else 1


def read_splits(path: Path) -> dict[tuple[str, str], str]:
    """The splits manifest (CSV category,sample_id,split with split train or test), checked line by line."""
    import csv
    import io

    from mulsen.core.errors import DataFormatError
    from mulsen.core.files import read_input

    try:
        rows = list(csv.DictReader(io.StringIO(read_input(path, "splits manifest").decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataFormatError(path, f"not a UTF-8 CSV ({exc})") from None
    if not rows or not {"category", "sample_id", "split"} <= set(rows[0]):
        raise DataFormatError(path, "needs a header with category,sample_id,split and at least one row")
    splits: dict[tuple[str, str], str] = {}
    for number, row in enumerate(rows, 2):
        if None in row or any(v is None for v in row.values()):
            raise DataFormatError(path, f"line {number} does not have the header's number of columns")
        key = (row["category"].strip(), row["sample_id"].strip())
        split = row["split"].strip()
        if not all(key) or split not in ("train", "test"):
            raise DataFormatError(path, f"line {number}: needs a category, a sample_id and split train or test, "
                                        f"got {row['split']!r}")
        if key in splits:
            raise DataFormatError(path, f"line {number}: {key[0]}/{key[1]} is listed twice")
        splits[key] = split
    return splits


def _pack(args: argparse.Namespace) -> int:
    from mulsen.core.files import read_input
    from mulsen.dataset.release import CardInfo, pack_dataset

    citation = args.citation
    if citation.startswith("@"):
        citation = read_input(Path(citation[1:]), "citation file").decode("utf-8", errors="replace")
    archive = pack_dataset(args.root, args.version, args.out, args.name, progress=bar("hashing files"),
                           jobs=executor_from(args), allow_invalid=args.allow_invalid,
                           card_info=CardInfo(args.license.strip(), citation))
    print(f"wrote {archive} ({archive.stat().st_size / 2 ** 20:.1f} MiB) with its manifest and dataset card")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from mulsen.dataset.release import verify_release

    report = verify_release(args.path, progress=bar("checking files"))
    for problem in report.problems:
        print(problem)
    print(f"{args.path}: {report.checked} files checked, {len(report.problems)} problems")
    return 0 if report.ok else 1
