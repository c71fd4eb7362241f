"""Dataset statistics shaped like Table 3 of the MulSen-AD paper, for any dataset in the layout."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .formats import read_mask, read_pc_gt
from .meshio import dedup_vertices, read_stl_corners
from .reader import MulsenDataset
from .records import GOOD, SampleRecord, Split

VISIBILITY_KEYS = ("rgb_only", "ir_only", "pc_only", "two", "all_three")


@dataclass
class CategoryStats:
    category: str
    train_normal: int = 0
    test_normal: int = 0
    test_abnormal: int = 0
    total: int = 0
    anomaly_types: int = 0
    rgb_abnormal_ratio_pct: float = float("nan")
    ir_abnormal_ratio_pct: float = float("nan")
    pc_abnormal_ratio_pct: float = float("nan")
    visibility: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VISIBILITY_KEYS, 0))

    def row(self) -> dict[str, object]:
        flat = {k: v for k, v in asdict(self).items() if k != "visibility"}
        flat.update({f"visible_{k}": v for k, v in self.visibility.items()})
        return flat


def visibility_class(labels: tuple[int, int, int]) -> str:
    count = sum(labels)
    if count == 3:
        return "all_three"
    if count == 2:
        return "two"
    return ("rgb_only", "ir_only", "pc_only")[labels.index(1)]


def _mean_pct(values: list[float]) -> float:
    return float(np.mean(values) * 100) if values else float("nan")


def category_stats(dataset: MulsenDataset, category: str,
                   progress: Callable[[Iterable, int], Iterable] | None = None) -> CategoryStats:
    records = dataset.records(category)
    stats = CategoryStats(category)
    ratios: dict[str, list[float]] = {"rgb": [], "infrared": [], "pointcloud": []}
    types = set()
    abnormal: list[SampleRecord] = []
    for rec in records:
        if rec.key.split is Split.TRAIN:
            stats.train_normal += 1
        elif rec.key.defect_type == GOOD:
            stats.test_normal += 1
        else:
            stats.test_abnormal += 1
            types.add(rec.key.defect_type)
            abnormal.append(rec)
    stats.total = len(records)
    stats.anomaly_types = len(types)
    iterable: Iterable = progress(abnormal, len(abnormal)) if progress else abnormal
    for rec in iterable:
        if rec.labels.label_or:
            stats.visibility[visibility_class(rec.labels.as_tuple())] += 1
        for modality in ("rgb", "infrared"):
            gt = rec.gt_of(modality)
            if gt is not None:
                ratios[modality].append(float(read_mask(gt).mean()))
        if rec.pc_gt is not None:
            vertices, _ = dedup_vertices(read_stl_corners(rec.pc_path))
            ratios["pointcloud"].append(len(read_pc_gt(rec.pc_gt)) / len(vertices))
    stats.rgb_abnormal_ratio_pct = _mean_pct(ratios["rgb"])
    stats.ir_abnormal_ratio_pct = _mean_pct(ratios["infrared"])
    stats.pc_abnormal_ratio_pct = _mean_pct(ratios["pointcloud"])
    return stats


def total_row(rows: list[CategoryStats]) -> CategoryStats:
    total = CategoryStats("total")
    for r in rows:
        total.train_normal += r.train_normal
        total.test_normal += r.test_normal
        total.test_abnormal += r.test_abnormal
        total.total += r.total
        total.anomaly_types += r.anomaly_types
        for k in VISIBILITY_KEYS:
            total.visibility[k] += r.visibility[k]
    for attr in ("rgb_abnormal_ratio_pct", "ir_abnormal_ratio_pct", "pc_abnormal_ratio_pct"):
        values = [getattr(r, attr) for r in rows if not np.isnan(getattr(r, attr))]
        setattr(total, attr, float(np.mean(values)) if values else float("nan"))  # mean over categories
    return total


def dataset_stats(dataset: MulsenDataset, progress=None) -> list[CategoryStats]:
    rows = [category_stats(dataset, c, progress) for c in dataset.categories]
    return [*rows, total_row(rows)]


_COLUMNS = [("category", "category", "{}"), ("train_normal", "#train", "{}"), ("test_normal", "#test good", "{}"),
            ("test_abnormal", "#test bad", "{}"), ("total", "#total", "{}"), ("anomaly_types", "#types", "{}"),
            ("rgb_abnormal_ratio_pct", "RGB %", "{:.3f}"), ("ir_abnormal_ratio_pct", "IR %", "{:.3f}"),
            ("pc_abnormal_ratio_pct", "PC %", "{:.3f}")]


def _missing(value: object) -> bool:
    return isinstance(value, float) and bool(np.isnan(value))


def format_table(rows: list[CategoryStats]) -> str:
    """Plain-text Table 3 plus the visibility breakdown."""
    headers = [c[1] for c in _COLUMNS] + ["RGB only", "IR only", "PC only", "two", "all three"]
    body = []
    for r in rows:
        flat = r.row()
        cells = ["-" if _missing(flat[k]) else fmt.format(flat[k]) for k, _, fmt in _COLUMNS]
        cells += [str(r.visibility[k]) for k in VISIBILITY_KEYS]
        body.append(cells)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(b) for b in body[:-1]] + ["  ".join("-" * w for w in widths), line(body[-1])]
    total = rows[-1]
    bad = sum(total.visibility.values())
    if bad:
        shares = ", ".join(f"{k.replace('_', ' ')} {100 * total.visibility[k] / bad:.1f}%" for k in VISIBILITY_KEYS)
        out.append(f"visibility of anomalous samples: {shares}")
    out.append("abnormal ratio = mean share of anomalous pixels/points over samples labelled 1 in that modality")
    return "\n".join(out)


def to_json(rows: list[CategoryStats]) -> str:
    def clean(v):
        return None if isinstance(v, float) and np.isnan(v) else v
    return json.dumps([{k: clean(v) for k, v in r.row().items()} for r in rows], indent=2)


def to_csv(rows: list[CategoryStats]) -> str:
    buffer = io.StringIO()
    flat = [r.row() for r in rows]
    writer = csv.DictWriter(buffer, fieldnames=list(flat[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue()


def write_stats(rows: list[CategoryStats], path: Path) -> None:
    path.write_text(to_json(rows) if path.suffix == ".json" else to_csv(rows), encoding="utf-8")
