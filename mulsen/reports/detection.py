"""``mulsen detect --report``: one page per judged part and an index of them all.

A part's page shows the verdict, the scores against the threshold, every sensor's heatmap (images and the
point cloud from two sides, in normal levels) and the warnings, and links the JSON it was written from; the
index lists every part, anomalous ones first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mulsen.dataset.records import SampleData
from mulsen.detection.config import SHORT
from mulsen.detection.detect import Detection
from mulsen.detection.inspector import Detector, map_scale

from . import html, render

PART_PAGE = "report.html"
INDEX_PAGE = "index.html"

PART = """
<p><span class="verdict {{ d.decision }}" data-key="decision">{{ d.decision }}</span>
{% if not d.reliable %}<span class="tag warn">unreliable: the input is unlike the training data</span>{% endif %}
fused {{ d.fusion }} score <strong data-key="fused">{{ d.fused | num }}</strong> against the threshold
<span data-key="threshold">{{ d.threshold | num }}</span> ({{ far }} false alarms on good parts).</p>
<table class="numbers plain"><thead><tr><th>sensor</th><th>score</th><th>normalised (z)</th>
<th>× normal level</th></tr></thead><tbody>
{% for m in d.modalities %}<tr><td>{{ short[m] }}</td><td data-key="score/{{ short[m] }}">{{ d.scores[m] | num }}</td>
<td data-key="z/{{ short[m] }}">{{ d.normalised[m] | num }}</td><td>{{ (d.scores[m] / levels[m]) | num(2) }}</td></tr>
{% endfor %}</tbody></table>
{% for w in d.warnings %}<p><span class="tag warn">warning</span> {{ w }}</p>{% endfor %}
<figure><img alt="heatmaps of {{ d.sample }}" src="{{ picture | jpeg }}">
<figcaption>Heatmaps in units of the normal level (1 = the worst patch of a typical good part): clear below 0.5,
saturated at 2; the point cloud from above and from the side.</figcaption></figure>
<p class="note">Model {{ model }}. Files: <a href="report.json">report.json</a>{% for m, f in files.items() %},
<a href="{{ f }}">{{ f }}</a>{% endfor %}{% if index %} · <a href="{{ index }}">all parts</a>{% endif %}</p>
"""

INDEX = """
<p><strong data-key="anomalous">{{ anomalous }}</strong> of <strong data-key="parts">{{ rows | length }}</strong>
parts anomalous{% if unreliable %}, {{ unreliable }} unreliable{% endif %}.</p>
<table class="numbers plain"><thead><tr><th>part</th><th>verdict</th><th>fused</th><th>threshold</th>
{% for m in modalities %}<th>{{ short[m] }}</th>{% endfor %}<th>warnings</th><th></th></tr></thead><tbody>
{% for r in rows %}<tr><td><a href="{{ r.page }}">{{ r.detection.sample }}</a></td>
<td><span class="verdict {{ r.detection.decision }}" data-key="{{ r.detection.sample }}/decision">{{
  r.detection.decision }}</span></td>
<td data-key="{{ r.detection.sample }}/fused">{{ r.detection.fused | num }}</td>
<td>{{ r.detection.threshold | num }}</td>
{% for m in modalities %}<td>{{ r.detection.scores[m] | num if m in r.detection.scores else '' }}</td>{% endfor %}
<td>{{ r.detection.warnings | length }}</td><td><a href="{{ r.json }}">json</a></td></tr>
{% endfor %}</tbody></table>
"""


def part_page(detector: Detector, detection: Detection, data: SampleData, out: Path, files: dict[str, str],
              index: Path | None = None) -> Path:
    """``out/report.html`` for one judged part (``files``: what ``write_detection`` wrote beside it; ``index``:
    the index page to link back to)."""
    model = detector.model
    levels = {m: map_scale(model, m) for m in detection.modalities}
    titles = {m: f"{SHORT[m]} {detection.scores[m]:.3g} ({detection.scores[m] / levels[m]:.2f}× normal)"
              for m in detection.modalities}
    picture = render.sample_png(render.panels_for(data, detection.maps, levels, titles, truth=False))
    identity = model.identity
    described = f"{identity.folder} ({identity.category}, arrays {identity.arrays_sha256[:12]})" if identity \
        else f"{model.category} (not saved)"
    back = os.path.relpath(index, out) if index else ""
    body = html.render(PART, d=detection, short=SHORT, levels=levels, picture=picture, files=files,
                       far=f"{detection.false_alarm_rate:.0%}", model=described, index=back)
    return html.write_page(out / PART_PAGE, html.page(f"{detection.sample}: {detection.decision}", body,
                                                      f"category {detection.category}"))


@dataclass(frozen=True)
class IndexRow:
    detection: Detection
    page: str  # the part's page, relative to the index
    json: str


def index_page(folder: Path, judged: Sequence[tuple[Detection, Path]]) -> Path:
    """``folder/index.html`` over (detection, the folder its files went to) pairs, anomalous parts first (the
    highest fused score first), then the normal ones."""
    rows = [IndexRow(d, os.path.relpath(where / PART_PAGE, folder), os.path.relpath(where / "report.json", folder))
            for d, where in judged]
    rows.sort(key=lambda r: (not r.detection.anomalous, -r.detection.fused))
    modalities = [m for m in ("rgb", "infrared", "pointcloud") if any(m in r.detection.scores for r in rows)]
    body = html.render(INDEX, rows=rows, modalities=modalities, short=SHORT,
                       anomalous=sum(r.detection.anomalous for r in rows),
                       unreliable=sum(not r.detection.reliable for r in rows))
    category = ", ".join(sorted({r.detection.category for r in rows}))
    return html.write_page(folder / INDEX_PAGE, html.page(f"Inspection of {len(rows)} parts", body,
                                                          f"category {category}"))
