"""``mulsen evaluate --report DIR``: one self-contained HTML page of an evaluation.

Tables 5 and 6, modality-specific AUROC and verdicts at the models' thresholds for the whole set; per
category ROC and precision-recall curves, score histograms with the threshold, and a gallery sorted by error
(missed anomalies and false alarms first), each sample with its heatmaps, ground truth and scores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mulsen.dataset.reader import MulsenDataset
from mulsen.dataset.records import Split
from mulsen.detection.config import SHORT, combo_name
from mulsen.detection.evaluate import (
    CategoryResult,
    Confusion,
    SampleScore,
    table5_rows,
    table6_rows,
    total_confusions,
)
from mulsen.detection.inspector import map_scale
from mulsen.detection.model import TripleADModel

from . import GALLERY_SAMPLES, html, render

REPORT_FILE = "index.html"

Progress = Callable[[Iterable, int], Iterable]


@dataclass(frozen=True)
class GalleryEntry:
    """One sample of a category's gallery and why it is where it is."""

    sample: SampleScore
    kind: str  # miss, false-alarm, right
    margin: float  # fused score minus threshold (the model's own combination)


def gallery_order(result: CategoryResult, combo: str, count: int = GALLERY_SAMPLES) -> list[GalleryEntry]:
    """The ``count`` samples most worth a look: missed anomalies and false alarms first (the largest errors
    first), then the right verdicts closest to the threshold."""
    threshold = result.thresholds[combo]
    entries = []
    for s in result.samples:
        margin = s.fused[combo] - threshold
        said = s.anomalous[combo]
        kind = "right" if said == bool(s.label) else ("miss" if s.label else "false-alarm")
        entries.append(GalleryEntry(s, kind, margin))
    errors = sorted((e for e in entries if e.kind != "right"), key=lambda e: -abs(e.margin))
    right = sorted((e for e in entries if e.kind == "right"), key=lambda e: abs(e.margin))
    return (errors + right)[:count]


def _own_combo(result: CategoryResult, model: TripleADModel) -> str:
    name = combo_name(model.config.modalities)
    return name if name in result.object_auroc else list(result.object_auroc)[-1]


CATEGORY = """
<section id="cat-{{ name }}">
<h2>{{ name }}</h2>
<p class="note">Model: {{ combo }} ({{ fusion }} fusion), threshold {{ threshold | num }} at a {{ far }} false-alarm
rate on held-out normals; {{ good }} good and {{ bad }} anomalous test samples.</p>
{{ confusion }}
<figure><img alt="ROC and precision-recall curves of {{ name }}" src="{{ curves | png }}">
<figcaption>Object-level ROC and precision-recall curves per sensor combination; the dot is the operating point
at the model's threshold.</figcaption></figure>
<figure><img alt="score histograms of {{ name }}" src="{{ histograms | png }}">
<figcaption>Object scores of good and anomalous samples per combination (single sensors: raw score; pairs and
triple: fused), dashed: the threshold.</figcaption></figure>
<h3>Gallery: errors first</h3>
<label class="filter"><input type="checkbox" data-filter="gallery-{{ name }}"> show errors only</label>
<p class="note">Heatmaps in units of the normal level (1 = the worst patch of a typical good part): clear below
0.5, saturated at 2. Cyan: ground truth (outline on images, rings on the point cloud).</p>
<div id="gallery-{{ name }}">
{% for row in rows %}
<div class="sample" data-right="{{ 'yes' if row.entry.kind == 'right' else 'no' }}">
<div><strong>{{ row.entry.sample.sample }}</strong>
<span class="tag {{ row.entry.kind }}">{{ {'miss': 'missed anomaly', 'false-alarm': 'false alarm',
  'right': 'right'}[row.entry.kind] }}</span>
truth: {{ 'anomalous' if row.entry.sample.label else 'good' }}
{%- if row.visible %} (visible to {{ row.visible }}){% endif %},
verdict: <span class="verdict {{ 'anomalous' if row.entry.sample.anomalous[combo] else 'normal' }}">{{
  'anomalous' if row.entry.sample.anomalous[combo] else 'normal' }}</span></div>
<div class="scores">fused {{ combo }} <span data-key="{{ row.entry.sample.sample }}/fused">{{
  row.entry.sample.fused[combo] | num }}</span> vs threshold {{ threshold | num }};
{% for m, v in row.entry.sample.scores.items() %}{{ m }} <span data-key="{{ row.entry.sample.sample }}/{{ m }}">{{
  v | num }}</span>{{ '; ' if not loop.last else '' }}{% endfor %}</div>
<img alt="heatmaps of {{ row.entry.sample.sample }}" src="{{ row.picture | jpeg }}">
</div>
{% endfor %}
</div>
</section>
"""

SUMMARY = """
<nav>{% for name in categories %}<a href="#cat-{{ name }}">{{ name }}</a>{% endfor %}</nav>
<h2>Object-level AUROC (Table 5)</h2>
<p class="note">Single sensors: raw score; pairs and triple: fused. Mean row last.</p>
{{ table5 }}
<h2>Modality-specific AUROC</h2>
<p class="note">Each sensor's score against its own labels: defects it cannot see count as good. What each
detector can be held to.</p>
{{ modality }}
<h2>Verdicts at the models' thresholds</h2>
{{ confusion }}
<h2>Localisation (Table 6)</h2>
<p class="note">Pixel (RGB, IR) or point (PC) AUROC, F1-max, AUPR and AUPRO (FPR limit 0.3), per category.</p>
{{ table6 }}
"""


def _confusion_rows(confusions: Mapping[str, Confusion], prefix: str) -> str:
    rows = [[name, str(c.true_positive), str(c.false_positive), str(c.true_negative), str(c.false_negative),
             html.number(c.accuracy)] for name, c in confusions.items()]
    return html.table(["combination", "TP", "FP", "TN", "FN", "accuracy"], rows, prefix, plain=True)


def _summary(results: list[CategoryResult], paper: bool) -> str:
    from markupsafe import Markup

    header5, rows5 = table5_rows(results, paper)
    header6, rows6 = table6_rows(results, paper)
    names = list(results[0].modality_auroc)
    modality_rows = [[r.category, *(html.number(r.modality_auroc[n]) for n in names)] for r in results]
    return html.render(SUMMARY, categories=[r.category for r in results],
                       table5=Markup(html.table(header5, rows5, "object_auroc")),
                       modality=Markup(html.table(["category", *names], modality_rows, "modality_auroc",
                                                  plain=True)),
                       confusion=Markup(_confusion_rows(total_confusions(results), "confusion/all")),
                       table6=Markup(html.table(header6, rows6, "localisation")))


def _category(result: CategoryResult, dataset: MulsenDataset, model: TripleADModel, count: int) -> str:
    from markupsafe import Markup

    combo = _own_combo(result, model)
    labels = np.array([s.label for s in result.samples])
    curves = [render.Curve(name, labels, np.array([s.fused[name] for s in result.samples]),
                           result.thresholds[name]) for name in result.object_auroc]
    records = {str(r.key): r for r in dataset.records(result.category, Split.TEST)}
    levels = {m: map_scale(model, m) for m in model.config.modalities}
    rows = []
    for entry in gallery_order(result, combo, count):
        record = records[entry.sample.sample]
        data = dataset.load(record)
        scored = model.score(data)
        titles = {m: f"{SHORT[m]} {r.score:.3g} ({r.score / levels[m]:.2f}× normal)" for m, r in scored.items()}
        picture = render.sample_png(render.panels_for(data, {m: r.anomaly_map for m, r in scored.items()}, levels,
                                                      titles))
        visible = ", ".join(SHORT[m] for m in model.config.modalities if record.labels.of(m))
        rows.append({"entry": entry, "picture": picture, "visible": visible})
    good = int((labels == 0).sum())
    return html.render(CATEGORY, name=result.category, combo=combo, fusion=model.config.fusion,
                       threshold=result.thresholds[combo], far=f"{model.config.false_alarm_rate:.0%}",
                       good=good, bad=len(labels) - good,
                       confusion=Markup(_confusion_rows(result.confusion, f"confusion/{result.category}")),
                       curves=render.curves_png(curves, result.category),
                       histograms=render.histograms_png(curves, result.category), rows=rows)


def write_evaluation_report(results: list[CategoryResult], dataset: MulsenDataset,
                            models: Mapping[str, TripleADModel], folder: Path, samples: int = GALLERY_SAMPLES,
                            paper: bool = False, progress: Progress | None = None) -> Path:
    """``folder/index.html`` of ``mulsen evaluate``'s results (``models``: the evaluated model per category;
    ``samples``: gallery rows per category). Returns the page's path."""
    if not results:
        raise ValueError("no evaluated category to report")
    parts = [_summary(results, paper)]
    chosen: Iterable[CategoryResult] = progress(results, len(results)) if progress else results
    for result in chosen:
        parts.append(_category(result, dataset, models[result.category], samples))
    title = f"Evaluation of {dataset.root.name}"
    meta = f"dataset {dataset.root} · {len(results)} categories · protocol {results[0].protocol}"
    return html.write_page(folder / REPORT_FILE, html.page(title, "\n".join(parts), meta, html.FILTER_SCRIPT))
