"""``mulsen dataset report DATASET``: a curator's look at a dataset in one self-contained page.

The validator's verdict (errors and warnings, every problem listed), the counts and Table 3, the visibility
shares of the anomalous samples, and a QA gallery per category: each anomalous sample's images with their
masks outlined and its point cloud with the ground-truth points ringed, samples the validator flagged first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mulsen.core.errors import MulsenError
from mulsen.core.parallel import Executor
from mulsen.dataset.reader import MulsenDataset
from mulsen.dataset.records import GOOD, SampleRecord, Split
from mulsen.dataset.stats import VISIBILITY_KEYS, CategoryStats, category_stats, total_row
from mulsen.dataset.validate import ERROR, ValidationReport, sample_of, validate_dataset

from . import QA_SAMPLES, html, render

REPORT_FILE = "index.html"
PROBLEMS_SHOWN = 200  # validation problems listed on the page, errors first
Progress = Callable[[Iterable, int], Iterable]

PAGE = """
<p><span class="verdict {{ 'normal' if errors == 0 else 'anomalous' }}">{{
  'valid' if errors == 0 else 'invalid' }}</span>
<strong data-key="samples">{{ samples }}</strong> samples checked: <strong data-key="errors">{{ errors }}</strong>
errors, <strong data-key="warnings">{{ warnings }}</strong> warnings.</p>
<nav>{% for name in categories %}<a href="#cat-{{ name }}">{{ name }}</a>{% endfor %}</nav>
<h2>Counts and abnormal ratios (Table 3)</h2>
<p class="note">Abnormal ratio: mean share of anomalous pixels / points over the samples labelled anomalous in
that sensor. Visibility: which sensors can see each anomalous sample's defect.</p>
{{ table3 }}
{% for u in unreadable %}<p><span class="tag false-alarm">left out of Table 3</span> {{ u }}</p>{% endfor %}
{% if shares %}<p>Visibility of the anomalous samples: {% for k, v in shares %}{{ k }}
<span data-key="share/{{ k }}">{{ v }}</span>{{ '; ' if not loop.last else '' }}{% endfor %}.</p>{% endif %}
<h2>Validation</h2>
{% if problems %}
<table class="numbers plain"><thead><tr><th>file</th><th>severity</th><th>kind</th><th>problem</th></tr></thead>
<tbody>{% for p in problems[:limit] %}<tr><td>{{ p.path }}</td><td>{{ p.severity }}</td><td>{{ p.kind }}</td>
<td>{{ p.message }}</td></tr>{% endfor %}</tbody></table>
{% if problems | length > limit %}<p class="note">... and {{ problems | length - limit }} more ('mulsen dataset
validate' lists them all).</p>{% endif %}
{% else %}<p>No problem found.</p>{% endif %}
{{ galleries }}
"""

CATEGORY = """
<section id="cat-{{ name }}"><h2>{{ name }}</h2>
<p class="note">Anomalous test samples, those the validator flagged first: masks outlined in cyan on RGB and IR,
ground-truth points ringed on the point cloud (from above and from the side).</p>
{% for row in rows %}
<div class="sample"><div><strong>{{ row.key }}</strong>
{% if row.flags %}<span class="tag {{ 'false-alarm' if row.error else 'warn' }}">{{
  'error' if row.error else 'warning' }}</span>{% endif %}
visible to {{ row.visible or 'no sensor' }}
{% for f in row.flags %}<div class="note">{{ f }}</div>{% endfor %}</div>
{% if row.picture %}<img alt="ground truth of {{ row.key }}" src="{{ row.picture | jpeg }}">{% endif %}
</div>
{% endfor %}
</section>
"""


@dataclass(frozen=True)
class QARow:
    key: str
    visible: str
    flags: tuple[str, ...]
    picture: bytes | None  # None: the sample cannot be read (its flags say why)

    @property
    def error(self) -> bool:
        return any(f.startswith(ERROR) for f in self.flags)


def _table3(rows: list[CategoryStats]) -> str:
    header = ["category", "#train", "#test good", "#test bad", "#total", "#types", "RGB %", "IR %", "PC %",
              "RGB only", "IR only", "PC only", "two", "all three"]
    body = []
    for r in rows:
        ratios = [html.number(v) for v in (r.rgb_abnormal_ratio_pct, r.ir_abnormal_ratio_pct,
                                           r.pc_abnormal_ratio_pct)]
        body.append([r.category, str(r.train_normal), str(r.test_normal), str(r.test_abnormal), str(r.total),
                     str(r.anomaly_types), *ratios, *(str(r.visibility[k]) for k in VISIBILITY_KEYS)])
    return html.table(header, body, "stats")


def _flags_by_sample(report: ValidationReport) -> dict[str, list[str]]:
    flags: dict[str, list[str]] = {}
    for problem in report.problems:
        key = sample_of(report.root, problem.path)
        if key is not None:
            flags.setdefault(key, []).append(f"{problem.severity}: {problem.message} ({problem.kind})")
    return flags


def _qa_row(dataset: MulsenDataset, record: SampleRecord, flags: list[str]) -> QARow:
    visible = ", ".join(name for name, seen in zip(("RGB", "IR", "PC"), record.labels.as_tuple(), strict=True)
                        if seen)
    try:
        data = dataset.load(record)
    except MulsenError as exc:  # a sample the reader refuses: listed with the reason, no picture
        return QARow(str(record.key), visible, (*flags, f"{ERROR}: cannot be read: {exc}"), None)
    panels = [render.Panel("rgb", "RGB", np.zeros(data.rgb.shape[:2]), data.rgb_mask, image=data.rgb),
              render.Panel("infrared", "IR", np.zeros(data.infrared.shape[:2]), data.ir_mask, image=data.infrared),
              render.Panel("pointcloud", "PC", np.zeros(len(data.mesh.vertices)), data.pc_mask,
                           vertices=data.mesh.vertices)]
    return QARow(str(record.key), visible, tuple(flags), render.sample_png(panels, colour_bar=False))


def write_dataset_report(root: Path, folder: Path, samples: int = QA_SAMPLES, jobs: int | Executor = 1,
                         progress: Progress | None = None) -> tuple[Path, ValidationReport]:
    """Validate ``root``, describe it and write ``folder/index.html``; returns the page and the validation."""
    from markupsafe import Markup

    report = validate_dataset(root, jobs=jobs)
    dataset = MulsenDataset(root, strict=False)
    rows, unreadable = [], []
    for category in dataset.categories:  # one bad mask leaves its category out of Table 3, not the page
        try:
            rows.append(category_stats(dataset, category))
        except MulsenError as exc:
            unreadable.append(f"{category}: {exc}")
    rows.append(total_row(rows))
    flags = _flags_by_sample(report)
    galleries = []
    chosen: Iterable[str] = progress(dataset.categories, len(dataset.categories)) if progress \
        else dataset.categories
    for category in chosen:
        anomalous = [r for r in dataset.records(category, Split.TEST) if r.key.defect_type != GOOD]
        # errors first, then warnings, then the rest (each in sample order)
        anomalous.sort(key=lambda r: (not any(f.startswith(ERROR) for f in flags.get(str(r.key), [])),
                                      str(r.key) not in flags))
        qa = [_qa_row(dataset, r, flags.get(str(r.key), [])) for r in anomalous[:samples]]
        galleries.append(html.render(CATEGORY, name=category, rows=qa))
    total = rows[-1]
    bad = sum(total.visibility.values())
    shares = [(k.replace("_", " "), f"{100 * total.visibility[k] / bad:.1f}%") for k in VISIBILITY_KEYS] if bad \
        else []
    errors = len(report.errors)
    problems = sorted(report.problems, key=lambda p: (p.severity != ERROR, str(p.path)))
    body = html.render(PAGE, samples=report.samples, errors=errors, warnings=len(report.problems) - errors,
                       categories=dataset.categories, table3=Markup(_table3(rows)), shares=shares,
                       unreadable=unreadable,
                       problems=problems, limit=PROBLEMS_SHOWN, galleries=Markup("\n".join(galleries)))
    page = html.page(f"Dataset {dataset.root.name}", body, f"{dataset.root}")
    return html.write_page(folder / REPORT_FILE, page), report
