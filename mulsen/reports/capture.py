"""Capture previews: what was captured, seen at a glance.

Each finished capture folder gets ``preview.png``, a contact sheet: the RGB frame, the IR lock-in amplitude
and phase in false colour with their scales (float TIFFs ordinary viewers cannot show), both scanner passes
rendered from above, and the key facts (sample, operator, date, lock-in settings, frames, heater state).
``capture_index`` writes a page of every capture's sheet for a captures folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from mulsen.dataset.build import capture_folders
from mulsen.dataset.captures import CaptureRecord

from . import html, render

PREVIEW_FILE = "preview.png"
INDEX_FILE = "index.html"
PHASE_COLORMAP = "coolwarm"  # diverging: early and late phase either side of the part's typical one
PHASE_SIGNAL = 0.25  # phase is shown where the amplitude exceeds this share of its peak (elsewhere it is noise)
log = logging.getLogger(__name__)


def _scan_axis(ax, path: Path, title: str) -> None:
    from mulsen.dataset.scans import read_scan

    vertices = read_scan(path).vertices
    chosen = np.random.default_rng(0).permutation(len(vertices))[:render.CLOUD_POINTS]
    projected, _ = render.project(vertices, render.cloud_views(vertices)[0], chosen)
    ax.scatter(projected[:, 0], projected[:, 1], c=projected[:, 2], cmap="viridis", s=1.5, linewidths=0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{title}: {len(vertices)} points", fontsize=8)


def _facts(record: CaptureRecord | None, folder: Path) -> str:
    if record is None:
        return folder.name
    request, ir = record.request, record.steps.ir
    parts = [f"{request.category}/{request.sample_id}", f"operator {record.operator}", record.finished[:19]]
    if request.part:
        parts.append(f"part {request.part}")
    lockin = record.settings.get("lockin", {})
    if lockin:
        parts.append(f"lock-in {lockin.get('frequency_hz')} Hz x {lockin.get('periods')} periods "
                     f"(+{lockin.get('settle_periods')} settling), {lockin.get('power_percent')} % power")
    if ir is not None:
        parts.append(f"{ir.frames} IR frames ({ir.frames_used} used), heater "
                     f"{'confirmed off' if ir.heater_off_confirmed else 'NOT CONFIRMED OFF'}")
    if record.failures:
        parts.append(f"{len(record.failures)} earlier failure(s), resumed {len(record.resumed)}x")
    return " · ".join(parts)


def contact_sheet(folder: Path, record: CaptureRecord | None = None) -> bytes:
    """The PNG contact sheet of a capture folder (``record``: its capture record, else read from the folder)."""
    import tifffile

    from mulsen.dataset.captures import CAPTURE_FILE
    from mulsen.dataset.formats import read_rgb

    plt = render.pyplot()
    if record is None and (folder / CAPTURE_FILE).exists():
        record = CaptureRecord.read(folder / CAPTURE_FILE)
    scans = sorted(p for p in folder.iterdir() if p.stem in ("scan_a", "scan_b") and p.is_file())
    panels = 3 + len(scans)
    fig, axes = plt.subplots(1, panels, figsize=(3.1 * panels, 3.1), squeeze=False, layout="constrained")
    axes = list(axes.ravel())
    if (folder / "rgb.png").exists():
        axes[0].imshow(read_rgb(folder / "rgb.png"))
        axes[0].set_title("RGB", fontsize=8)
    amplitude = tifffile.imread(folder / "ir_amplitude.tiff") if (folder / "ir_amplitude.tiff").exists() else None
    if amplitude is not None:
        shown = axes[1].imshow(amplitude, cmap=render.COLORMAP)
        _bar(fig, axes[1], shown, "K")
        axes[1].set_title("IR lock-in amplitude", fontsize=8)
    if amplitude is not None and (folder / "ir_phase.tiff").exists():
        phase = tifffile.imread(folder / "ir_phase.tiff")
        signal = amplitude > PHASE_SIGNAL * float(amplitude.max())
        low, high = np.percentile(phase[signal], [2, 98]) if signal.any() else (-180.0, 180.0)
        cmap = plt.get_cmap(PHASE_COLORMAP).with_extremes(bad="#9e9e9e")
        shown = axes[2].imshow(np.ma.masked_where(~signal, phase), cmap=cmap, vmin=low, vmax=max(high, low + 1e-3))
        _bar(fig, axes[2], shown, "deg")
        axes[2].set_title("IR lock-in phase (grey: no signal)", fontsize=8)
    for ax, path in zip(axes[3:], scans, strict=True):
        _scan_axis(ax, path, path.stem.replace("_", " "))
    for ax in axes[:3]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(_facts(record, folder), fontsize=8)
    return render.encode(fig, dpi=80)


def _bar(fig, ax, shown, unit: str) -> None:
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    bar.set_label(unit, fontsize=7)
    bar.ax.tick_params(labelsize=7)


def write_preview(folder: Path, record: CaptureRecord | None = None) -> Path | None:
    """``folder/preview.png``; a preview that cannot be drawn is logged and skipped (a capture is never lost
    for its picture)."""
    from mulsen.core.atomic import atomic_write_bytes

    try:
        picture = contact_sheet(folder, record)
    except Exception as exc:
        log.warning("%s: no preview (%s: %s)", folder, type(exc).__name__, exc)
        return None
    atomic_write_bytes(folder / PREVIEW_FILE, picture)
    return folder / PREVIEW_FILE


INDEX = """
<p><strong data-key="captures">{{ rows | length }}</strong> captures in {{ root }}.</p>
{% for r in rows %}
<div class="sample"><strong>{{ r.name }}</strong>
{% if not r.preview %} <span class="tag warn">no preview</span>{% endif %}
<span class="note">{{ r.facts }}</span>
{% if r.preview %}<div><a href="{{ r.preview }}"><img alt="preview of {{ r.name }}" src="{{ r.preview }}"></a>
</div>{% endif %}
</div>
{% endfor %}
"""


def capture_index(root: Path) -> Path:
    """``root/index.html``: every finished capture's contact sheet (made now where missing), newest last."""
    rows = []
    from mulsen.dataset.captures import CAPTURE_FILE

    for category, sample, folder in capture_folders(root):
        record = CaptureRecord.read(folder / CAPTURE_FILE)
        preview = folder / PREVIEW_FILE
        if not preview.exists():
            write_preview(folder, record)
        rows.append({"name": f"{category}/{sample}", "facts": _facts(record, folder),
                     "preview": os.path.relpath(preview, root) if preview.exists() else ""})
    body = html.render(INDEX, rows=rows, root=root)
    return html.write_page(root / INDEX_FILE, html.page(f"Captures in {root.name}", body, str(root)))
