"""``mulsen train | evaluate | detect``: commands for inspectors and model builders."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mulsen.core.errors import MulsenError
from mulsen.core.progress import bar


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
    tr.add_argument("--coreset-ratio", type=float, default=0.1)
    tr.add_argument("--coreset-projection-dim", type=int, default=None,
                    help="dimensions the coreset selection works in (random projection; default: the model's)")
    tr.add_argument("--fusion", choices=["gate", "zmean", "max"], default="zmean",
                    help="zmean (default): mean of held-out z-scores; gate: the paper's SGDOneClassSVM weighting "
                    "(fragile with few held-out normals); max: largest z-score")
    tr.add_argument("--gate-fit", choices=["holdout", "paper"], default="holdout",
                    help="paper: fit the gate in-sample on the bank samples, as the original code")
    tr.add_argument("--seed", type=int, default=0)
    nets = tr.add_argument_group("pretrained backbones (optional; the default is weight-free)")
    nets.add_argument("--image-backbone", choices=["handcrafted", "raw_patches", "random_conv",
                                                   "vit_base_patch8_224.dino"],
                      default="handcrafted", help="RGB/IR features: weight-free descriptors (default); raw pixel "
                      "blocks or a random conv stack (weight-free, for comparison); or the paper's DINO ViT-B/8")
    nets.add_argument("--image-weights", help="local weights file for the image backbone (.safetensors or .pth)")
    nets.add_argument("--ir-backbone", choices=["auto", "handcrafted", "raw_patches", "random_conv"], default="auto",
                      help="IR features: auto = raw pixel blocks with the weight-free default, else the image "
                      "backbone (as in the paper)")
    nets.add_argument("--point-backbone", choices=["fpfh", "point_mae"], default="fpfh",
                      help="point features: FPFH (default, weight-free) or the paper's Point-MAE")
    nets.add_argument("--point-weights", help="local pointmae_pretrain.pth")
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
    ev.add_argument("--fusion", choices=["gate", "zmean", "max"], default=None, help="override the model's fusion")
    ev.add_argument("--category", action="append", help="only these categories")
    ev.add_argument("--out", type=Path, help="folder for results.json and object_auroc.csv")
    ev.set_defaults(handler=_evaluate)

    de = sub.add_parser("detect", help="inspect freshly acquired parts with a trained model",
                        description="Score one or more samples: per-modality scores, the fused score, a "
                        "normal/anomalous decision against a threshold calibrated on held-out normals, anomaly-map "
                        "overlay PNGs and a JSON result per sample. A SAMPLE is a folder holding rgb.png, "
                        "infrared.png and pointcloud.stl (a capture folder).")
    de.add_argument("samples", nargs="+", type=Path, metavar="SAMPLE")
    de.add_argument("--model", type=Path, required=True, help="a category's model folder")
    de.add_argument("--false-alarm-rate", type=float, default=None, help="default: the model's (0.05)")
    de.add_argument("--out", type=Path, default=Path("detections"))
    de.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="the weight-free detector runs on the CPU; cuda is refused when unavailable")
    de.set_defaults(handler=_detect)


def _dataset(path: Path):
    from mulsen.dataset.reader import MulsenDataset

    return MulsenDataset(path)


def _ir_config(args: argparse.Namespace):
    from mulsen.detection.features import ImageFeatureConfig

    if args.ir_backbone == "auto":
        return ImageFeatureConfig(backbone="raw_patches") if args.image_backbone == "handcrafted" else None
    return ImageFeatureConfig(backbone=args.ir_backbone)


def _train(args: argparse.Namespace) -> int:
    from mulsen.detection.model import DetectorConfig, TripleADModel, parse_modalities

    ds = _dataset(args.dataset)
    categories = ds.categories if args.all else args.category
    from mulsen.detection.backbones import resolve_device
    from mulsen.detection.features import ImageFeatureConfig, PointFeatureConfig

    device = resolve_device(args.device)
    config = DetectorConfig(modalities=parse_modalities(args.modalities), coreset_ratio=args.coreset_ratio,
                            fusion=args.fusion, gate_fit=args.gate_fit, seed=args.seed,
                            **({"coreset_projection_dim": args.coreset_projection_dim}
                               if args.coreset_projection_dim else {}),
                            image=ImageFeatureConfig(backbone=args.image_backbone, weights=args.image_weights,
                                                     device=device),
                            infrared=_ir_config(args),
                            points=PointFeatureConfig(backbone=args.point_backbone, weights=args.point_weights,
                                                      device=device))
    for category in categories:
        records = ds.records(category, "train")
        model = TripleADModel(category, config).fit(ds.load, records, progress=bar(f"train {category}"))
        folder = model.save(args.out / category)
        sizes = ", ".join(f"{m} {len(b.features)}" for m, b in model.banks.items())
        print(f"{category}: {len(records)} normals, banks [{sizes}] -> {folder}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mulsen.detection.evaluate import evaluate_category, table5, table6, write_results
    from mulsen.detection.model import TripleADModel, all_combinations, parse_modalities

    ds = _dataset(args.dataset)
    modalities = parse_modalities(args.modalities)
    combos = all_combinations(modalities) if args.all_combinations else [modalities]
    results = []
    for category in args.category or ds.categories:
        model = TripleADModel.load(args.models / category, modalities)
        results.append(evaluate_category(ds, model, combos, args.fusion, progress=bar(f"evaluate {category}")))
    print("Object-level AUROC (single = raw score; dual/triple = fused)")
    print(table5(results))
    print("\nLocalisation per modality")
    print(table6(results))
    if args.out:
        write_results(results, args.out)
        print(f"\nwrote {args.out / 'results.json'} and {args.out / 'object_auroc.csv'}")
    return 0


def load_capture(folder: Path):
    """A capture folder (rgb.png, infrared.png, pointcloud.stl) -> SampleData without ground truth."""
    from mulsen.dataset.formats import read_ir, read_rgb
    from mulsen.dataset.meshio import read_stl
    from mulsen.dataset.records import ModalityLabels, SampleData, SampleKey, SampleRecord, Split

    paths = {name: folder / name for name in ("rgb.png", "infrared.png", "pointcloud.stl")}
    missing = [n for n, p in paths.items() if not p.is_file()]
    if missing:
        raise MulsenError(f"{folder}: capture folder lacks {', '.join(missing)}")
    rgb, ir, mesh = read_rgb(paths["rgb.png"]), read_ir(paths["infrared.png"]), read_stl(paths["pointcloud.stl"])
    record = SampleRecord(SampleKey("capture", Split.TEST, "unknown", 0), paths["rgb.png"], paths["infrared.png"],
                          paths["pointcloud.stl"], ModalityLabels())
    return SampleData(record, rgb, ir, mesh, np.zeros(rgb.shape[:2], bool), np.zeros(ir.shape, bool),
                      np.zeros(len(mesh.vertices), bool))


def overlay(image: np.ndarray, anomaly_map: np.ndarray, threshold: float) -> np.ndarray:
    """Red overlay of map values above ``threshold`` (scaled) on the image."""
    base = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    level = np.clip(anomaly_map / max(threshold, 1e-9) - 1, 0, 1)[..., None]
    red = np.array([255, 0, 0], np.float32)
    return np.round(base * (1 - 0.6 * level) + red * 0.6 * level).astype(np.uint8)


def _detect(args: argparse.Namespace) -> int:
    from mulsen.dataset.formats import write_png
    from mulsen.detection.model import TripleADModel

    if args.device == "cuda":
        try:
            import torch
            available = torch.cuda.is_available()
        except ImportError:
            available = False
        if not available:
            raise MulsenError("--device cuda: no CUDA device available on this machine")
    model = TripleADModel.load(args.model)
    combo = model.config.modalities
    threshold = model.threshold(combo, false_alarm_rate=args.false_alarm_rate)
    args.out.mkdir(parents=True, exist_ok=True)
    anomalous = 0
    for folder in args.samples:
        data = load_capture(folder)
        result = model.score(data)
        raw = {m: r.score for m, r in result.items()}
        fused = model.fuse(raw, combo)
        decision = "anomalous" if fused > threshold else "normal"
        anomalous += decision == "anomalous"
        name = folder.name
        files = {}
        for m, image in (("rgb", data.rgb), ("infrared", data.infrared)):
            if m in result:
                # overlay scale: the mean object score (largest patch distance) of the held-out normals
                idx = model.config.modalities.index(m)
                path = args.out / f"{name}_{m}_overlay.png"
                write_png(path, overlay(image, result[m].anomaly_map, float(model.norm_mean[idx])), "RGB",
                          overwrite=True)
                files[m] = str(path)
        report = {"sample": str(folder), "category": model.category, "scores": raw,
                  "normalised": model.normalise(raw), "fused": fused, "fusion": model.config.fusion,
                  "threshold": threshold, "decision": decision, "overlays": files}
        (args.out / f"{name}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"{folder}: {decision} (fused {fused:.3f}, threshold {threshold:.3f}; "
              + ", ".join(f"{k} {v:.3f}" for k, v in raw.items()) + ")")
    print(f"{anomalous} of {len(args.samples)} samples anomalous; results in {args.out}/")
    return 0
