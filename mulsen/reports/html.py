"""Self-contained HTML pages: Jinja2 templates, one stylesheet, pictures embedded as data URIs.

A report is one file that opens offline anywhere (mailed, archived, on a line PC without network): no CDN, no
external script, font or image. Numbers a reader checks carry ``data-key`` attributes (``category/column``),
which the browser tests compare with the JSON results.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mulsen.core.atomic import atomic_write_text

STYLE = """
:root { --ok: #2e7d32; --bad: #c62828; --muted: #666; --line: #ddd; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222; background: #fafafa; }
header { background: #263238; color: #fff; padding: 14px 24px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header .meta { color: #cfd8dc; font-size: 12px; }
main { padding: 8px 24px 40px; max-width: 1500px; }
h2 { border-bottom: 2px solid #263238; padding-bottom: 4px; margin-top: 28px; }
h3 { margin: 18px 0 6px; }
table.numbers { border-collapse: collapse; margin: 6px 0 14px; font-variant-numeric: tabular-nums; }
table.numbers th, table.numbers td { border: 1px solid var(--line); padding: 3px 8px; text-align: right; }
table.numbers th:first-child, table.numbers td:first-child { text-align: left; }
table.numbers tr:last-child td { font-weight: 600; }
table.numbers.plain tr:last-child td { font-weight: normal; }
.note { color: var(--muted); font-size: 12px; max-width: 1000px; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 10px; color: #fff; font-weight: 600; }
.verdict.anomalous { background: var(--bad); }
.verdict.normal { background: var(--ok); }
.tag { display: inline-block; padding: 1px 7px; border-radius: 8px; font-size: 12px; margin-right: 4px; }
.tag.miss, .tag.false-alarm { background: #ffebee; color: var(--bad); border: 1px solid var(--bad); }
.tag.right { background: #e8f5e9; color: var(--ok); border: 1px solid var(--ok); }
.tag.warn { background: #fff8e1; color: #8d6e00; border: 1px solid #c9a400; }
figure { margin: 8px 0 16px; }
figure img { max-width: 100%; border: 1px solid var(--line); background: #fff; }
figcaption { font-size: 12px; color: var(--muted); }
.sample { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; margin: 10px 0; }
.sample .scores { font-size: 12px; font-variant-numeric: tabular-nums; }
nav { font-size: 13px; margin: 10px 0; }
nav a { margin-right: 12px; }
label.filter { font-size: 13px; user-select: none; }
"""

FILTER_SCRIPT = """
document.querySelectorAll('input[data-filter]').forEach(function (box) {
  box.addEventListener('change', function () {
    var scope = document.getElementById(box.dataset.filter);
    scope.querySelectorAll('.sample').forEach(function (row) {
      row.style.display = (box.checked && row.dataset.right === 'yes') ? 'none' : '';
    });
  });
});
"""

BASE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title><style>{{ style }}</style></head>
<body><header><h1>{{ title }}</h1><div class="meta">{{ meta }}</div></header>
<main>{{ body }}</main>
{% if script %}<script>{{ script }}</script>{% endif %}
</body></html>
"""


def _environment():
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["num"] = number
    env.filters["png"] = lambda data: data_uri(data, "image/png")
    env.filters["jpeg"] = lambda data: data_uri(data, "image/jpeg")
    return env


def number(value: Any, digits: int = 3) -> str:
    """A metric as the tables print it: fixed decimals, ``n/a`` where undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def render(template: str, **context: Any) -> str:
    """A template's text filled in (autoescaped; undefined names are errors, not blanks)."""
    return _environment().from_string(template).render(**context)


def page(title: str, body: str, meta: str = "", script: str = "") -> str:
    """A whole page around ``body`` (already rendered HTML)."""
    from markupsafe import Markup

    from mulsen import __version__

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = f"{meta} · " if meta else ""
    return render(BASE, title=title, style=Markup(STYLE), body=Markup(body),
                  meta=f"{meta}mulsen-toolkit {__version__} · built {stamp}", script=Markup(script))


def write_page(path: Path, html: str) -> Path:
    """Write atomically (a reader never sees half a page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, html)
    return path


TABLE = """
<table class="numbers{{ ' plain' if plain else '' }}"><thead><tr>
{% for h in header %}<th>{{ h }}</th>{% endfor %}
</tr></thead><tbody>
{% for row in rows %}<tr><td>{{ row[0] }}</td>
{% for cell in row[1:] %}<td data-key="{{ keys[row[0]][loop.index0] if keys else '' }}">{{ cell }}</td>{% endfor %}
</tr>
{% endfor %}</tbody></table>
"""


def table(header: list[str], rows: list[list[str]], key_prefix: str = "", plain: bool = False,
          keys: Mapping[str, list[str]] | None = None) -> str:
    """An HTML table of already formatted cells; each value cell gets ``data-key="PREFIX/ROW/COLUMN"``
    (or the given ``keys`` per row name) so tests can find it."""
    if keys is None and key_prefix:
        keys = {row[0]: [f"{key_prefix}/{row[0]}/{h}" for h in header[1:]] for row in rows}
    return render(TABLE, header=header, rows=rows, keys=keys or {}, plain=plain)
