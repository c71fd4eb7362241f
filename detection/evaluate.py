"""Evaluation on a MulSen-AD dataset: object AUROC per sensor combination, localisation per modality."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from mulsen.core.atomic import atomic_write_text
from mulsen.core.errors import ConfigError
from mulsen.core.parallel import Executor
from mulsen.core.records import Record
from mulsen.dataset.reader import MulsenDataset
from mulsen.dataset.records import Split

from .config import PROTOCOLS, SHORT, Protocol, combo_name
from .features import PAPER_MAP_SIZE
from .metrics import aupr, aupr_trapezoid, aupro, auroc, f1_max, mesh_components
from .model import TripleADModel
from .scoring import score_row

PIXEL_METRIC_WIDTH = 256  # maps and masks are compared at this width, like the official 224 px protocol


@dataclass(frozen=True)
class SampleScore:
    """One test sample: its label, raw score per modality, and per combination the fused score and verdict."""

    sample: str
    label: int
    scores: dict[str, float]
    fused: dict[str, float]
    anomalous: dict[str, bool]


@dataclass(frozen=True)
class Confusion:
    """Verdicts at the model's calibrated threshold against the object labels."""

    true_positive: int
    false_positive: int
    true_negative: int
    false_negative: int

    @property
    def accuracy(self) -> float:
        total = self.true_positive + self.false_positive + self.true_negative + self.false_negative
        return (self.true_positive + self.true_negative) / total if total else float("nan")


@dataclass
class CategoryResult:
    category: str
    object_auroc: dict[str, float] = field(default_factory=dict)  # combination name -> AUROC (NaN: undefined)
    localisation: dict[str, dict[str, float]] = field(default_factory=dict)  # modality -> metric -> value
    # a modality's own score against its own label column: defect samples it cannot see count as negatives
    modality_auroc: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, Confusion] = field(default_factory=dict)  # combination name -> at the model's threshold
    thresholds: dict[str, float] = field(default_factory=dict)  # combination name -> the model's threshold
    samples: list[SampleScore] = field(default_factory=list)
    protocol: Protocol = "corrected"  # how maps were compared and AUPR computed (``evaluate_category``)


def _json_number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


@dataclass(frozen=True)
class CategoryEntry:
    """One category in ``results.json``; null where a metric is undefined (e.g. no anomalous sample)."""

    category: str
    object_auroc: dict[str, float | None]
    localisation: dict[str, dict[str, float | None]]
    modality_auroc: dict[str, float | None] = field(default_factory=dict)
    confusion: dict[str, Confusion] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationResults(Record):
    """``results.json`` of ``mulsen evaluate``."""

    FORMAT = "mulsen-evaluation"
    VERSION = 2  # 2: confusion at the model's threshold, categories without a model
    WHAT = "evaluation results"

    categories: tuple[CategoryEntry, ...]
    missing_models: tuple[str, ...] = ()

    @classmethod
    def migrate(cls, data: dict) -> dict:
        if data.get("format") == f"{cls.FORMAT}/1":
            return {**data, "format": cls.tag()}
        return super().migrate(data)

    @classmethod
    def of(cls, results: list[CategoryResult], missing: tuple[str, ...] = ()) -> EvaluationResults:
        return cls(tuple(CategoryEntry(r.category, {k: _json_number(v) for k, v in r.object_auroc.items()},
                                       {m: {k: _json_number(v) for k, v in metrics.items()}
                                        for m, metrics in r.localisation.items()},
                                       {m: _json_number(v) for m, v in r.modality_auroc.items()},
                                       dict(r.confusion)) for r in results), missing)


def _paper_size(array: np.ndarray, nearest: bool) -> np.ndarray:
    """A mask (NEAREST, then > 0.5) or map (bilinear) at the official 224 x 224 (4:3 images squashed)."""
    if array.shape == (PAPER_MAP_SIZE, PAPER_MAP_SIZE):
        return array
    size = (PAPER_MAP_SIZE, PAPER_MAP_SIZE)
    if nearest:
        return np.asarray(Image.fromarray(array.astype(np.uint8) * 255, mode="L").resize(
            size, Image.Resampling.NEAREST)) > 127
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))


def _shrink(array: np.ndarray, width: int, nearest: bool) -> np.ndarray:
    h, w = array.shape
    if w <= width:
        return array
    size = (width, max(1, round(h * width / w)))
    img = Image.fromarray(array.astype(np.uint8) * 255 if nearest else array.astype(np.float32),
                          mode="L" if nearest else "F")
    out = np.asarray(img.resize(size, Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR))
    return out > 127 if nearest else out


@dataclass(frozen=True)
class _Scored:
    """What evaluation keeps of one test sample (a worker's result): maps and masks already at metric size."""

    name: str
    label: int
    own_labels: dict[str, int]
    scores: dict[str, float]
    maps: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    regions: np.ndarray | None  # connected defect regions on the mesh, for the point-cloud AUPRO


def _score_record(dataset: MulsenDataset, model: TripleADModel, modalities: tuple[str, ...], protocol: Protocol,
                  rec) -> _Scored:
    data = dataset.load(rec)
    result = model.score(data, modalities)
    maps, masks = {}, {}
    for m in modalities:
        gt = {"rgb": data.rgb_mask, "infrared": data.ir_mask, "pointcloud": data.pc_mask}[m]
        amap = result[m].anomaly_map
        if m != "pointcloud" and protocol == "paper":
            gt, amap = _paper_size(gt, True), _paper_size(amap, False)
        elif m != "pointcloud":
            gt, amap = _shrink(gt, PIXEL_METRIC_WIDTH, True), _shrink(amap, PIXEL_METRIC_WIDTH, False)
        maps[m], masks[m] = amap, gt
    regions = mesh_components(data.pc_mask, data.mesh.faces) if "pointcloud" in modalities else None
    return _Scored(str(rec.key), rec.labels.label_or, {m: rec.labels.of(m) for m in modalities},
                   score_row(result), maps, masks, regions)


def evaluate_category(dataset: MulsenDataset, model: TripleADModel, combos: list[tuple[str, ...]],
                      fusion: str | None = None, progress=None, jobs: int | Executor = 1,
                      protocol: Protocol | None = None) -> CategoryResult:
    """Every test sample of the model's category scored (on ``jobs`` processes or an executor), then the
    metrics. ``protocol`` (default: the model's preset): corrected (images compared at width 256, aspect
    kept; AUPR as average precision) or paper (maps and masks at 224 x 224, masks resized NEAREST; AUPR as
    ``auc(recall, precision)``, F1 with the original's 1e-6)."""
    protocol = protocol or ("paper" if model.config.preset == "paper" else "corrected")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {protocol!r} (use {', '.join(PROTOCOLS)})")
    records = dataset.records(model.category, Split.TEST)
    modalities = tuple(sorted({m for c in combos for m in c}, key=model.config.modalities.index))
    scored = model.config.runner(jobs).map(partial(_score_record, dataset, model, modalities, protocol), records,
                                           progress)
    names = [s.name for s in scored]
    labels = [s.label for s in scored]
    own_labels = {m: [s.own_labels[m] for s in scored] for m in modalities}
    scores = [s.scores for s in scored]
    maps = {m: [s.maps[m] for s in scored] for m in modalities}
    masks = {m: [s.masks[m] for s in scored] for m in modalities}
    regions = [s.regions for s in scored if s.regions is not None]
    out = CategoryResult(model.category, protocol=protocol)
    y = np.array(labels)
    fused_by: dict[str, list[float]] = {}
    verdicts: dict[str, list[bool]] = {}
    for combo in combos:
        name = combo_name(combo)
        fused_by[name] = [model.fuse(s, combo, fusion) for s in scores]
        threshold = out.thresholds[name] = model.threshold(combo, fusion)
        verdicts[name] = [f > threshold for f in fused_by[name]]
        out.object_auroc[name] = auroc(y, np.array(fused_by[name]))
        said, truth = np.array(verdicts[name], bool), y.astype(bool)
        out.confusion[name] = Confusion(int((said & truth).sum()), int((said & ~truth).sum()),
                                        int((~said & ~truth).sum()), int((~said & truth).sum()))
    out.samples = [SampleScore(names[i], int(labels[i]), {SHORT[m]: float(scores[i][m]) for m in modalities},
                               {n: float(f[i]) for n, f in fused_by.items()},
                               {n: bool(v[i]) for n, v in verdicts.items()}) for i in range(len(names))]
    paper = protocol == "paper"
    for m in modalities:
        out.modality_auroc[SHORT[m]] = auroc(np.array(own_labels[m]), np.array([s[m] for s in scores]))
        flat_gt = np.concatenate([g.ravel() for g in masks[m]])
        flat_map = np.concatenate([a.ravel() for a in maps[m]])
        out.localisation[SHORT[m]] = {
            "auroc": auroc(flat_gt, flat_map), "f1_max": f1_max(flat_gt, flat_map, 1e-6 if paper else 0.0),
            "aupr": aupr_trapezoid(flat_gt, flat_map) if paper else aupr(flat_gt, flat_map),
            "aupro": aupro(masks[m], maps[m], labelled=regions if m == "pointcloud" else None),
        }
    return out


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


Table = tuple[list[str], list[list[str]]]


def _rows(categories: list[str], columns: list[list[float]], paper: bool) -> list[list[str]]:
    """One row per category and the mean row, 3 decimals. ``paper``: the paper's rounding, each value to 3
    decimals (undefined: 0, as the original) and the mean over the *rounded* values (the official CSV's mean
    row); else undefined values print as nan and the mean is over the defined, unrounded ones."""
    if paper:
        columns = [[0.0 if np.isnan(v) else round(float(v), 3) for v in c] for c in columns]
        means = [round(float(np.mean(c)), 3) for c in columns]
    else:
        means = [_mean(c) for c in columns]
    rows = [[name] + [f"{c[i]:.3f}" for c in columns] for i, name in enumerate(categories)]
    return rows + [["mean"] + [f"{m:.3f}" for m in means]]


def table5_rows(results: list[CategoryResult], paper: bool = False) -> Table:
    """Object AUROC per category and combination and the mean row (the paper's Table 5); ``paper``: its
    rounding."""
    names = list(results[0].object_auroc)
    columns = [[r.object_auroc[n] for r in results] for n in names]
    return ["category", *names], _rows([r.category for r in results], columns, paper)


def table6_rows(results: list[CategoryResult], paper: bool = False) -> Table:
    """Localisation per modality and category, mean row last. ``paper``: the paper's Table 6 layout (pixel or
    point AUROC, F1-max and AUPR per modality, its rounding); else also AUPRO (FPR 0.3)."""
    modalities = list(results[0].localisation)
    keys = ("auroc", "f1_max", "aupr") if paper else ("auroc", "f1_max", "aupr", "aupro")
    label = {"auroc": "AUROC", "f1_max": "F1", "aupr": "AUPR", "aupro": "PRO"}
    header = ["category"] + [f"{m} {label[k]}" for m in modalities for k in keys]
    columns = [[r.localisation[m][k] for r in results] for m in modalities for k in keys]
    return header, _rows([r.category for r in results], columns, paper)


def table5(results: list[CategoryResult], paper: bool = False) -> str:
    """Object AUROC per category and combination, plus the mean row (paper's Table 5)."""
    return _format(*table5_rows(results, paper))


def modality_table(results: list[CategoryResult]) -> str:
    """Modality-specific object AUROC: each modality's score against its own labels (what it can be held to)."""
    names = list(results[0].modality_auroc)
    columns = [[r.modality_auroc[n] for r in results] for n in names]
    return _format(["category", *names], _rows([r.category for r in results], columns, False))


def table6(results: list[CategoryResult], paper: bool = False) -> str:
    """Localisation per modality (pixel/point AUROC, F1-max, AUPR, AUPRO), per category and the mean."""
    return _format(*table6_rows(results, paper))


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table, numbers right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([header, *rows])
    return buffer.getvalue()


def _format(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def total_confusions(results: list[CategoryResult]) -> dict[str, Confusion]:
    """Per combination, the verdicts at each model's calibrated threshold summed over the categories."""
    fields = ("true_positive", "false_positive", "true_negative", "false_negative")
    return {n: Confusion(*(sum(getattr(r.confusion[n], f) for r in results) for f in fields))
            for n in results[0].confusion}


def confusion_table(results: list[CategoryResult]) -> str:
    """Verdicts at each model's calibrated threshold: TP/FP/TN/FN and accuracy per combination, all categories."""
    rows = [[n, str(c.true_positive), str(c.false_positive), str(c.true_negative), str(c.false_negative),
             f"{c.accuracy:.3f}"] for n, c in total_confusions(results).items()]
    return _format(["combination", "TP", "FP", "TN", "FN", "accuracy"], rows)


def write_results(results: list[CategoryResult], out: Path, missing: tuple[str, ...] = (), paper: bool = False
                  ) -> None:
    """``results.json``, ``per_sample.csv``, ``object_auroc.csv`` (full precision) and Tables 5 and 6 as CSV and
    Markdown (``table5.csv``/``.md``, ``table6.csv``/``.md``; ``paper``: in the paper's layout and rounding)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("table5", table5_rows(results, paper)), ("table6", table6_rows(results, paper))):
        atomic_write_text(out / f"{name}.csv", csv_text(*rows))
        atomic_write_text(out / f"{name}.md", markdown(*rows))
    EvaluationResults.of(results, missing).write(out / "results.json")
    samples = io.StringIO()
    table = csv.writer(samples, lineterminator="\n")
    names = list(results[0].object_auroc)
    modality_names = list(results[0].modality_auroc)
    table.writerow(["category", "sample", "label", *modality_names, *(f"{n} fused" for n in names),
                    *(f"{n} verdict" for n in names)])
    for r in results:
        for sample in r.samples:
            table.writerow([r.category, sample.sample, sample.label,
                            *(f"{sample.scores[m]:.6g}" for m in modality_names),
                            *(f"{sample.fused[n]:.6g}" for n in names),
                            *("anomalous" if sample.anomalous[n] else "normal" for n in names)])
    atomic_write_text(out / "per_sample.csv", samples.getvalue())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(results[0].object_auroc)
    writer.writerow(["category", *names])
    for r in results:
        writer.writerow([r.category, *(f"{r.object_auroc[n]:.6f}" for n in names)])
    writer.writerow(["mean", *(f"{_mean([r.object_auroc[n] for r in results]):.6f}" for n in names)])
    atomic_write_text(out / "object_auroc.csv", buffer.getvalue())
