"""``mulsen train | evaluate | detect``: commands for inspectors and model builders."""

from __future__ import annotations

import argparse
from pathlib import Path

from mulsen.core.files import output_folder
from mulsen.core.progress import bar
from mulsen.detection.config import (
    CHOICES,
    FUSIONS,
    GATE_FITS,
    PRESETS,
    PROTOCOLS,
    DetectorConfig,
    all_combinations,
    paper_config,
    parse_modalities,
)
from mulsen.detection.features import NORMALISATIONS, POINT_FRAMES, ImageFeatureConfig, PointFeatureConfig
from mulsen.reports import GALLERY_SAMPLES

from .options import add_backend_options, add_field_option, executor_from


def register(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("train", help="fit the triple-sensor detector on a dataset's normal samples",
                        description="Fit one memory bank per modality (weight-free features: handcrafted patch "
                        "descriptors for RGB and IR, FPFH for point clouds) on the train split, calibrate score "
                        "normalisation, gate and threshold on held-out training normals, and save one model "
                        "folder per category.")
    tr.add_argument("dataset", type=Path)
    which = tr.add_mutually_exclusive_group(required=True)
    which.add_argument("--category", action="append", help="category to train (repeatable)")
    which.add_argument("--all", action="store_true", help="train every category")
    tr.add_argument("--out", type=Path, required=True, help="models folder (one subfolder per category)")
    tr.add_argument("--modalities", default="rgb,ir,pc", help="comma list of rgb, ir, pc (default all three)")
    tr.add_argument("--preset", choices=PRESETS, default="default",
                    help="default: the corrected, weight-free detector; paper: MulSen-TripleAD as its official code "
                    "computes it (DINO ViT-B/8 + Point-MAE, needing --image-weights and --point-weights, or other "
                    "backbones named here; every setting below follows the preset unless given; README: "
                    "'Reproducing the paper')")
    add_backend_options(tr, "loading, feature extraction and the banks")
    paper = paper_config()
    add_field_option(tr, "--coreset-ratio", DetectorConfig, "coreset_ratio",
                     "share of the normals' patches kept in each memory bank, in (0, 1]", preset=paper)
    add_field_option(tr, "--max-bank-size", DetectorConfig, "max_bank_size",
                     "most patches a bank keeps, whatever the ratio gives (scoring time is linear in it)", preset=paper)
    add_field_option(tr, "--coreset-projection-dim", DetectorConfig, "coreset_projection_dim",
                     "dimensions the fast coreset selection works in (random projection; 0: none)", preset=paper)
    add_field_option(tr, "--fusion", DetectorConfig, "fusion", "zmean: mean of held-out z-scores; gate: the paper's "
                     "SGDOneClassSVM weighting (fragile with few held-out normals); max: largest z-score",
                     choices=FUSIONS, preset=paper)
    add_field_option(tr, "--gate-fit", DetectorConfig, "gate_fit",
                     "holdout: the gate fitted on held-out normals' scores divided by their spread; paper: on the "
                     "bank samples' own raw scores, as the original code", choices=GATE_FITS, preset=paper)
    add_field_option(tr, "--gate-lambda", DetectorConfig, "gate_lambda",
                     "RGB,IR,PC factors on the gate's inputs (M3DM's DLF: 0.1,1,1)", type=_lambdas, preset=paper)
    add_field_option(tr, "--false-alarm-rate", DetectorConfig, "false_alarm_rate",
                     "share of normals the saved decision threshold lets through as anomalous", preset=paper)
    add_field_option(tr, "--seed", DetectorConfig, "seed", "seed of the hold-out split and the coresets", preset=paper)
    items = tr.add_argument_group("the paper's computation, item by item (--preset paper sets them all)")
    add_field_option(items, "--holdout-fraction", DetectorConfig, "holdout_fraction",
                     "share of training normals held out to calibrate (0: all build the banks; calibration then "
                     "on their own, biased-low scores)", preset=paper)
    add_field_option(items, "--coreset", DetectorConfig, "coreset", "fast: projected to a few dimensions, seeded "
                     "start, two rounds; paper: SparseRandomProjection eps 0.9, start at row 0, int(ratio x rows)",
                     choices=CHOICES["coreset"], preset=paper)
    add_field_option(items, "--image-normalisation", ImageFeatureConfig, "normalisation", "how the RGB and IR banks "
                     "compare features: per_dimension (standardised) or scalar (one mean/std per bank)",
                     choices=NORMALISATIONS, preset=paper.image)
    add_field_option(items, "--point-normalisation", PointFeatureConfig, "normalisation", "the same for the "
                     "point-cloud bank", choices=NORMALISATIONS, preset=paper.points)
    add_field_option(items, "--bank-tolerance", DetectorConfig, "bank_tolerance", "score each bank entry against "
                     "how far other normals lie from it (yes/no)", type=_yes_no, preset=paper)
    add_field_option(items, "--object-score", DetectorConfig, "object_score", "topk: mean of the k largest patch "
                     "scores; paper: the largest / 1000 times the 3-neighbour reweighting",
                     choices=CHOICES["object_score"], preset=paper)
    add_field_option(items, "--bank-views", DetectorConfig, "bank_views", "own: one bank per modality for every "
                     "combination; paper: each combination scored as the official separate method (Triple's 1 %% "
                     "RGB/IR banks, std swaps)", choices=CHOICES["bank_views"], preset=paper)
    add_field_option(items, "--map-protocol", DetectorConfig, "map_protocol", "native: maps at the image size; "
                     "paper: 224 x 224 with the 8-bit blur", choices=CHOICES["map_protocol"], preset=paper)
    nets = tr.add_argument_group("pretrained backbones (optional; the default is weight-free)")
    nets.add_argument("--image-backbone", choices=["handcrafted", "raw_patches", "random_conv",
                                                   "vit_base_patch8_224.dino"],
                      default=None, help="RGB/IR features: weight-free descriptors (default); raw pixel blocks or a "
                      "random conv stack (weight-free, for comparison); or the paper's DINO ViT-B/8 (--preset "
                      "paper's)")
    nets.add_argument("--image-weights", help="local weights file for the image backbone (.safetensors or .pth)")
    nets.add_argument("--ir-backbone", choices=["same", "handcrafted", "raw_patches", "random_conv"], default="same",
                      help="IR features: same = the image backbone (default, as in the paper; the weight-free one with "
                      "specular glints filtered out, except under --preset paper), or another one")
    nets.add_argument("--point-backbone", choices=["fpfh", "point_mae"], default=None,
                      help="point features: FPFH (default, weight-free) or the paper's Point-MAE (--preset paper's)")
    nets.add_argument("--point-weights", help="local pointmae_pretrain.pth")
    nets.add_argument("--point-frame", choices=POINT_FRAMES, default=None,
                      help="Point-MAE input: unit_sphere (default, the frame it was pretrained in) or centred "
                      "(centred only, in the file's mm: --preset paper's, as the original)")
    nets.add_argument("--point-mode", choices=["eval", "train"], default=None,
                      help="Point-MAE mode: eval (default, deterministic) or train (--preset paper's, as the "
                      "original: DropPath active, BatchNorm on each cloud's statistics, features stochastic)")
    nets.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the networks run")
    tr.set_defaults(handler=_train)

    ev = sub.add_parser("evaluate", help="score a dataset's test split and print Table 5/6-style results",
                        description="Object AUROC per category for each sensor combination (single = raw score, "
                        "dual/triple = fused), and per-modality localisation (pixel/point AUROC, F1-max, AUPR, "
                        "AUPRO at FPR 0.3). Writes results.json and object_auroc.csv with --out.")
    ev.add_argument("dataset", type=Path)
    ev.add_argument("--models", type=Path, required=True)
    ev.add_argument("--modalities", default="rgb,ir,pc")
    ev.add_argument("--all-combinations", action="store_true", help="single, dual and triple (Table 5)")
    ev.add_argument("--fusion", choices=FUSIONS, default=None, help="override the model's fusion")
    ev.add_argument("--preset", choices=PROTOCOLS, default=None,
                    help="metrics protocol (default: the model's preset): corrected (images compared at width 256, "
                    "aspect kept; AUPR = average precision) or paper (maps and masks at 224 x 224, AUPR = "
                    "auc(recall, precision), Tables 5 and 6 in the paper's layout and rounding)")
    ev.add_argument("--category", action="append", help="only these categories")
    add_backend_options(ev, "scoring test samples")
    ev.add_argument("--out", type=Path, help="folder for results.json, object_auroc.csv and per_sample.csv")
    ev.add_argument("--strict", action="store_true",
                    help="refuse to start when a category has no model (default: evaluate the others and list it)")
    ev.add_argument("--report", type=Path, metavar="DIR",
                    help="also write DIR/index.html: one self-contained page (opens offline) with the tables, ROC "
                    "and PR curves, score histograms with the threshold, and a gallery per category, errors first, "
                    "each sample's heatmaps with ground truth and scores")
    ev.add_argument("--report-samples", type=int, default=GALLERY_SAMPLES, metavar="N",
                    help=f"gallery rows per category in the report (default {GALLERY_SAMPLES})")
    ev.set_defaults(handler=_evaluate)

    de = sub.add_parser("detect", help="inspect freshly acquired parts with a trained model",
                        description="Score one or more samples: per-modality scores, the fused score, a "
                        "normal/anomalous decision against a threshold calibrated on held-out normals, anomaly-map "
                        "overlay PNGs, per-vertex point-cloud scores (PLY) and a JSON report per sample. A SAMPLE "
                        "is a capture folder holding rgb.png, infrared.png and pointcloud.stl; a fresh capture "
                        "with only scan_a/scan_b is merged first (the gates of 'mulsen dataset merge'). Results go "
                        "to OUT/<the sample's path below the samples' common folder>/, so samples of the same name "
                        "never overwrite each other. A verdict on an input unlike the training data (image size, "
                        "mesh size, part size, scores far beyond the held-out normals) is flagged unreliable, "
                        "with the reason.",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    de.add_argument("samples", nargs="*", type=Path, metavar="SAMPLE")
    de.add_argument("--model", type=Path, required=True,
                    help="a category's model folder; with --watch the folder of one model per category")
    de.add_argument("--watch", type=Path, metavar="CAPTURES_ROOT",
                    help="on the line: judge each capture the moment the session puts it into CAPTURES_ROOT/"
                    "<category>/<id>/ (never a partial one), one line per part appended to OUT/verdicts.jsonl; "
                    "a restart skips the parts already judged; Ctrl-C stops")
    de.add_argument("--once", action="store_true", help="with --watch: judge the captures present, then exit")
    de.add_argument("--poll", type=float, default=0.5, help="with --watch: seconds between looks for new captures")
    de.add_argument("--false-alarm-rate", type=float, default=None,
                    help="override the model's calibrated false-alarm rate (saved at training)")
    de.add_argument("--out", type=Path, default=Path("detections"),
                    help="folder for the reports, overlays and point-cloud scores")
    add_backend_options(de, "judging SAMPLE folders")
    de.add_argument("--report", action="store_true",
                    help="also write an HTML page per part (verdict, scores, heatmaps, point-cloud views, "
                    "warnings) beside its report.json, and OUT/index.html listing every part, anomalous first "
                    "(with --watch: the part pages; verdicts.jsonl is the list)")
    de.add_argument("--force", action="store_true",
                    help="judge captures whose capture.json names another category than the model's")
    de.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                    help="where pretrained networks run, overriding the model's (default: as trained; auto: cuda "
                    "when available); the weight-free detector always runs on the CPU")
    de.set_defaults(handler=_detect)


def _dataset(path: Path):
    from mulsen.dataset.reader import MulsenDataset

    return MulsenDataset(path)


# options whose default is the chosen preset's (None: not given)
PRESET_OPTIONS = ("coreset_ratio", "max_bank_size", "coreset_projection_dim", "fusion", "gate_fit", "gate_lambda",
                  "false_alarm_rate", "seed", "holdout_fraction", "coreset", "bank_tolerance",
                  "object_score", "bank_views", "map_protocol")


def _lambdas(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"give three numbers RGB,IR,PC, got {text!r}")
    return values[0], values[1], values[2]


def _yes_no(text: str) -> bool:
    if text.lower() in ("yes", "true", "1", "on"):
        return True
    if text.lower() in ("no", "false", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"give yes or no, got {text!r}")


def detector_config(args: argparse.Namespace) -> DetectorConfig:
    """The configuration ``mulsen train``'s options ask for: the preset's, changed where an option was given."""
    import dataclasses

    from mulsen.core.errors import MulsenError
    from mulsen.detection.backbones import WEIGHT_SOURCES, resolve_device

    paper = args.preset == "paper"
    base = paper_config() if paper else DetectorConfig()
    device = resolve_device(args.device)
    image_norm = args.image_normalisation or base.image.normalisation
    image = ImageFeatureConfig(backbone=args.image_backbone or base.image.backbone, weights=args.image_weights,
                               device=device, normalisation=image_norm)
    infrared: ImageFeatureConfig | None
    if args.ir_backbone != "same":
        infrared = ImageFeatureConfig(backbone=args.ir_backbone, normalisation=image_norm)
    elif image.backbone == "handcrafted" and not paper and base.infrared is not None:  # the weight-free IR filters
        infrared = dataclasses.replace(base.infrared, normalisation=image_norm)
    else:  # one extractor for RGB and IR, as the paper
        infrared = None
    points = dataclasses.replace(base.points, backbone=args.point_backbone or base.points.backbone,
                                 weights=args.point_weights, device=device,
                                 normalisation=args.point_normalisation or base.points.normalisation)
    if args.point_frame:
        points = dataclasses.replace(points, frame=args.point_frame)
    if args.point_mode:
        points = dataclasses.replace(points, train_mode=args.point_mode == "train")
    given = {name: getattr(args, name) for name in PRESET_OPTIONS if getattr(args, name) is not None}
    config = dataclasses.replace(base, modalities=parse_modalities(args.modalities), image=image, infrared=infrared,
                                 points=points, **given)
    for m in config.modalities:  # before any training: a missing file would stop it at the first sample
        extractor = config.extractor(m)
        if extractor.backbone in WEIGHT_SOURCES and not extractor.weights:
            flag, free = ("--point-weights", "--point-backbone fpfh") if m == "pointcloud" else \
                ("--image-weights", "--image-backbone handcrafted")
            raise MulsenError(f"the {m} backbone {extractor.backbone} needs its weights: give {flag} FILE "
                              f"({WEIGHT_SOURCES[extractor.backbone]}; nothing is downloaded), or {free} for "
                              f"{'the paper computation on ' if paper else ''}weight-free features")
    return config


def _train(args: argparse.Namespace) -> int:
    import sys

    from mulsen.detection.model import TripleADModel

    ds = _dataset(args.dataset)
    categories = ds.categories if args.all else args.category
    output_folder(args.out, "model folder")  # checked before minutes of training, not after
    config = detector_config(args)
    gpus = 1.0 if "cuda" in (config.image.device, config.points.device) else 0.0
    for category in categories:
        records = ds.records(category, "train")
        model = TripleADModel(category, config).fit(ds.load, records, progress=bar(f"train {category}"),
                                                    workers=executor_from(args, gpus=gpus))
        folder = model.save(args.out / category)
        sizes = ", ".join(f"{m} {len(b.features)}" for m, b in model.banks.items())
        print(f"{category}: {len(records)} normals, banks [{sizes}] -> {folder}")
    if config.holdout_fraction == 0:
        print("note: no normals were held out (the paper's way): the saved thresholds come from the bank samples' "
              "own scores, which are biased low, so 'mulsen detect' will call most normals anomalous; the paper "
              "reports AUROC only. For usable verdicts train with --holdout-fraction 0.2.", file=sys.stderr)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import sys

    from mulsen.core.errors import MulsenError
    from mulsen.detection.evaluate import (
        confusion_table,
        evaluate_category,
        modality_table,
        table5,
        table6,
        write_results,
    )
    from mulsen.detection.model import TripleADModel

    ds = _dataset(args.dataset)
    modalities = parse_modalities(args.modalities)
    combos = all_combinations(modalities) if args.all_combinations else [modalities]
    if args.out:
        output_folder(args.out, "results folder")
    if args.report:
        output_folder(args.report, "report folder")
        if args.report_samples < 0:
            raise MulsenError(f"--report-samples must be 0 or more, got {args.report_samples}")
    if not args.models.is_dir():
        raise MulsenError(f"{args.models}: models folder not found")
    categories = args.category or ds.categories
    missing = tuple(c for c in categories if not (args.models / c).is_dir())
    if missing and (args.strict or len(missing) == len(categories)):
        raise MulsenError(f"{args.models}: no model for {', '.join(missing)} (train it with 'mulsen train')")
    results, models = [], {}
    for category in categories:
        if category in missing:
            continue
        model = models[category] = TripleADModel.load(args.models / category, modalities)
        results.append(evaluate_category(ds, model, combos, args.fusion, progress=bar(f"evaluate {category}"),
                                         jobs=executor_from(args), protocol=args.preset))
    paper = {r.protocol for r in results} == {"paper"}  # the paper's layout when every model was evaluated so
    print("Object-level AUROC (single = raw score; dual/triple = fused)" + (
        "; the paper's Table 5 layout" if paper else ""))
    print(table5(results, paper))
    print("\nModality-specific object AUROC (each modality against its own labels; defects it cannot see count "
          "as normal)")
    print(modality_table(results))
    print("\nVerdicts at each model's calibrated threshold (all categories)")
    print(confusion_table(results))
    print("\nLocalisation per modality" + ("; the paper's Table 6 layout" if paper else ""))
    print(table6(results, paper))
    if args.out:
        write_results(results, args.out, missing, paper)
        print(f"\nwrote {args.out / 'results.json'}, object_auroc.csv, per_sample.csv and Tables 5 and 6 "
              f"(table5.csv/.md, table6.csv/.md) in {args.out}")
    if args.report:
        import time

        from mulsen.reports.evaluation import write_evaluation_report

        started = time.perf_counter()
        page = write_evaluation_report(results, ds, models, args.report, args.report_samples, paper,
                                       bar("report"))
        print(f"\nwrote the report {page} ({page.stat().st_size / 1e6:.1f} MB, "
              f"{time.perf_counter() - started:.1f} s); open it in any browser, offline")
    if missing:
        print(f"warning: no model for {', '.join(missing)} in {args.models}; evaluated the other categories "
              "(--strict refuses)", file=sys.stderr)
    return 0


def _detect(args: argparse.Namespace) -> int:
    import os

    from mulsen.core.errors import MulsenError

    if args.watch:
        return _watch(args)
    if not args.samples:
        raise MulsenError("detect needs SAMPLE folders, or --watch CAPTURES_ROOT")

    from mulsen.detection.inspector import Detector, inspect_many

    device = None
    if args.device is not None:
        from mulsen.detection.backbones import resolve_device

        device = resolve_device(args.device)
    detector = Detector.load(args.model, device=device)
    output_folder(args.out, "detections folder")
    resolved = [Path(sample).resolve() for sample in args.samples]
    base = Path(os.path.commonpath(resolved)) if len(resolved) > 1 else resolved[0].parent
    tasks = [(sample, args.out / (full.relative_to(base) if full != base else Path(full.name)))
             for sample, full in zip(args.samples, resolved, strict=True)]

    def report(detections, total):
        """Print each verdict as it arrives (results come in sample order)."""
        for (sample, where), detection in zip(tasks, detections, strict=False):  # stops at a refused one
            print(f"{sample}: {detection.decision}{'' if detection.reliable else ' (UNRELIABLE)'} "
                  f"(fused {detection.fused:.3f}, threshold {detection.threshold:.3f}; "
                  + ", ".join(f"{k} {v:.3f}" for k, v in detection.scores.items()) + f") -> {where}/", flush=True)
            for warning in detection.warnings:
                print(f"  warning: {warning}", flush=True)
            yield detection

    after = None
    if args.report:
        from functools import partial

        from mulsen.reports.detection import INDEX_PAGE, index_page, part_page

        after = partial(part_page, index=args.out / INDEX_PAGE)
    detections = inspect_many(detector, tasks, args.force, args.false_alarm_rate, executor_from(args), report,
                              after)
    anomalous = sum(d.anomalous for d in detections)
    unreliable = sum(not d.reliable for d in detections)
    print(f"{anomalous} of {len(args.samples)} samples anomalous"
          + (f", {unreliable} unreliable" if unreliable else "") + f"; results in {args.out}/")
    if args.report:
        page = index_page(args.out, [(d, where) for d, (_, where) in zip(detections, tasks, strict=True)])
        print(f"report: {page} (one page per part beside its report.json)")
    return 0



def _watch(args: argparse.Namespace) -> int:
    from mulsen.core.errors import MulsenError
    from mulsen.detection.inspector import Verdict, watch

    if args.samples:
        raise MulsenError("--watch judges the captures under its folder; give no SAMPLE with it")
    if not args.poll > 0:
        raise MulsenError(f"--poll must be positive, got {args.poll:g}")
    output_folder(args.out, "detections folder")

    def report(verdict: Verdict) -> None:
        print(verdict.summary(), flush=True)

    if not args.once:
        print(f"watching {args.watch} (models in {args.model}); verdicts in {args.out / 'verdicts.jsonl'}; "
              "Ctrl-C stops", flush=True)
    after = None
    if args.report:
        from mulsen.reports.detection import part_page

        after = part_page
    try:
        judged = watch(args.watch, args.model, args.out, args.poll, args.once, report=report, after=after)
    except KeyboardInterrupt:
        print("stopped", flush=True)
        return 0
    print(f"{judged} captures judged; verdicts in {args.out / 'verdicts.jsonl'}")
    return 0
