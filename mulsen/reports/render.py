"""Pictures for the reports, drawn off-screen with matplotlib (Agg): curves, histograms, heatmaps over images
with a colour bar and the ground-truth outline, and point clouds seen from two sides coloured by score.

Pure functions of arrays returning encoded images (bytes); no display, no files. Anomaly maps are shown in
units of the model's *normal level* (``map_scale``: where its held-out normals' worst patch typically lies),
so 1.0 means "as bad as a normal part gets" on every sensor and every page, whatever the raw distances.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

COLORMAP = "inferno"  # perceptually uniform, readable in grey; hot = anomalous
SHOWN_RANGE = (0.5, 2.0)  # the colour bar's span in normal levels: transparent below, saturated above
GT_COLOUR = "#00e5ff"  # ground-truth outlines and points (cyan stands out on inferno and on photographs)
IMAGE_WIDTH = 360  # pixels of each image panel in a gallery row
CLOUD_POINTS = 6000  # points drawn per point-cloud view (a random, fixed subset)
CLOUD_TRUTH_POINTS = 400  # ground-truth vertices ringed per view: enough to show the region, few enough to see through
BELOW_RANGE = "#b0b0b0"  # point-cloud points under the colour bar's range: the part's shape in grey


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # off-screen: no display needed, never a GUI window
    import matplotlib.pyplot as plt

    return plt


def encode(fig, fmt: str = "png", dpi: int = 100) -> bytes:
    """The figure as PNG (plots: sharp lines) or JPEG (photographs: a fifth of the size) bytes; closes it."""
    plt = pyplot()
    buffer = io.BytesIO()
    try:
        if fmt == "jpeg":
            png = io.BytesIO()
            fig.savefig(png, format="png", dpi=dpi)
            from PIL import Image

            Image.open(png).convert("RGB").save(buffer, format="JPEG", quality=85, optimize=True)
        else:
            fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()


@dataclass(frozen=True)
class Curve:
    """One sensor combination's object scores on a test set, and the model's threshold for it."""

    name: str
    labels: np.ndarray  # 1 anomalous, 0 good
    scores: np.ndarray
    threshold: float


def curves_png(curves: Sequence[Curve], title: str) -> bytes:
    """ROC and precision-recall curves of every combination side by side, AUROC / AP in the legends, each
    threshold's operating point marked."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    plt = pyplot()
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    colours = plt.get_cmap("tab10")
    for k, curve in enumerate(curves):
        y, s = curve.labels.astype(bool), curve.scores
        if y.all() or not y.any():
            continue  # one class only: no curve is defined
        colour = colours(k % 10)
        fpr, tpr, _ = roc_curve(y, s)
        roc_ax.plot(fpr, tpr, color=colour, lw=1.6, label=f"{curve.name} {roc_auc_score(y, s):.3f}")
        precision, recall, _ = precision_recall_curve(y, s)
        pr_ax.plot(recall, precision, color=colour, lw=1.6,
                   label=f"{curve.name} {average_precision_score(y, s):.3f}")
        said = s > curve.threshold
        roc_ax.plot([said[~y].mean()], [said[y].mean()], "o", color=colour, ms=5)
        if said.any():
            pr_ax.plot([said[y].mean()], [y[said].mean()], "o", color=colour, ms=5)
    roc_ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    roc_ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title=f"{title}: ROC (AUROC)",
               xlim=(0, 1), ylim=(0, 1.02))
    pr_ax.set(xlabel="recall", ylabel="precision", title=f"{title}: precision-recall (AP)", xlim=(0, 1),
              ylim=(0, 1.02))
    for ax in (roc_ax, pr_ax):
        ax.legend(loc="lower right" if ax is roc_ax else "lower left", fontsize=8, title="dot: at threshold",
                  title_fontsize=7)
        ax.grid(alpha=0.3)
    return encode(fig)


def histograms_png(curves: Sequence[Curve], title: str) -> bytes:
    """Per combination: histograms of the good and the anomalous samples' scores and the threshold line."""
    plt = pyplot()
    cols = min(4, len(curves))
    rows = -(-len(curves) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.5 * rows), layout="constrained", squeeze=False)
    for ax, curve in zip(axes.ravel(), curves, strict=False):
        y = curve.labels.astype(bool)
        finite = curve.scores[np.isfinite(curve.scores)]
        edges = np.histogram_bin_edges(np.append(finite, curve.threshold), bins=20)
        ax.hist(curve.scores[~y], bins=edges, color="#4c72b0", alpha=0.75, label=f"good ({(~y).sum()})")
        ax.hist(curve.scores[y], bins=edges, color="#dd8452", alpha=0.75, label=f"anomalous ({y.sum()})")
        ax.axvline(curve.threshold, color="black", lw=1.2, ls="--", label="threshold")
        ax.set_title(curve.name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in axes.ravel()[len(curves):]:
        ax.axis("off")
    fig.suptitle(f"{title}: scores of good and anomalous samples", fontsize=10)
    return encode(fig)


def _fit_width(array: np.ndarray, width: int, nearest: bool = False) -> np.ndarray:
    from PIL import Image

    h, w = array.shape[:2]
    size = (width, max(1, round(h * width / w)))
    if array.dtype == np.uint8:
        return np.asarray(Image.fromarray(array).resize(size, Image.Resampling.BILINEAR))
    if nearest:
        return np.asarray(Image.fromarray(array.astype(np.uint8) * 255, mode="L").resize(
            size, Image.Resampling.NEAREST)) > 127
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))


@dataclass(frozen=True)
class Panel:
    """One sensor of one sample: what to draw and how to title it."""

    modality: str  # rgb, infrared or pointcloud
    title: str
    level: np.ndarray  # the anomaly map in normal levels (pixels, or one value per vertex)
    truth: np.ndarray | None  # ground-truth mask (pixels or vertices); None: unknown (a fresh capture)
    image: np.ndarray | None = None  # the photograph / IR image (uint8) under the map
    vertices: np.ndarray | None = None  # the point cloud (N, 3)


def heat_overlay(image: np.ndarray, level: np.ndarray) -> np.ndarray:
    """(H, W, 3) floats in [0, 1]: the image with the map (in normal levels, same H x W) laid over it in the
    colormap; below ``SHOWN_RANGE[0]`` the image is untouched, from two thirds of the range on the colour
    covers it at 75 %."""
    plt = pyplot()
    base = (image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)).astype(np.float64) / 255.0
    low, high = SHOWN_RANGE
    shown = np.clip((level - low) / (high - low), 0, 1)
    alpha = (0.75 * np.clip(shown * 1.5, 0, 1))[..., None]  # normal areas stay clear, hot ones cover the image
    return base * (1 - alpha) + plt.get_cmap(COLORMAP)(shown)[..., :3] * alpha


def _image_axis(ax, panel: Panel) -> object:
    plt = pyplot()
    assert panel.image is not None
    ax.imshow(heat_overlay(_fit_width(panel.image, IMAGE_WIDTH), _fit_width(panel.level, IMAGE_WIDTH)),
              interpolation="bilinear")
    if panel.truth is not None and panel.truth.any():
        ax.contour(_fit_width(panel.truth, IMAGE_WIDTH, nearest=True).astype(float), levels=[0.5],
                   colors=GT_COLOUR, linewidths=1.2)
    ax.set_xticks([])
    ax.set_yticks([])
    return plt.cm.ScalarMappable(norm=plt.Normalize(*SHOWN_RANGE), cmap=COLORMAP)


def cloud_views(vertices: np.ndarray) -> list[np.ndarray]:
    """Two orthographic views of a cloud in its own principal frame: from above its flattest side (the two
    largest axes) and from the side (largest and smallest): frame-free, the same part gives the same views
    in any scanner pose. Each view is a (3, 2) projection; its third row is the depth."""
    centred = vertices - vertices.mean(axis=0)
    _, _, axes = np.linalg.svd(centred[:: max(1, len(centred) // 20000)], full_matrices=False)
    # an axis's sign is arbitrary: turn each towards the cloud's longer tail (its third moment), so a part
    # looks the same in every pose; a right-handed frame keeps the views from being mirrored
    skew = ((centred @ axes.T) ** 3).sum(axis=0)
    axes[:2] *= np.where(skew[:2] < 0, -1.0, 1.0)[:, None]
    axes[2] = np.cross(axes[0], axes[1])
    return [np.stack([axes[0], axes[1], axes[2]], axis=1), np.stack([axes[0], axes[2], -axes[1]], axis=1)]


def project(vertices: np.ndarray, view: np.ndarray, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``chosen`` vertices, centred on the cloud's mean and seen through ``view`` (``cloud_views``), far
    first (nearer points paint over them); returns (projected (n, 3) with depth last, the order applied)."""
    projected = (vertices[chosen] - vertices.mean(axis=0)) @ view
    order = np.argsort(projected[:, 2])
    return projected[order], order


def _cloud_axis(ax, panel: Panel, view: np.ndarray, title: str) -> None:
    plt = pyplot()
    assert panel.vertices is not None
    rng = np.random.default_rng(0)
    chosen = rng.permutation(len(panel.vertices))[:CLOUD_POINTS]
    hot = np.flatnonzero(panel.level >= SHOWN_RANGE[0])  # every anomalous-looking vertex is drawn
    chosen = np.union1d(chosen, hot[np.argsort(-panel.level[hot])[:CLOUD_POINTS]])
    projected, order = project(panel.vertices, view, chosen)
    low, high = SHOWN_RANGE
    cmap = plt.get_cmap(COLORMAP).with_extremes(under=BELOW_RANGE)
    ax.scatter(projected[:, 0], projected[:, 1], c=np.minimum(panel.level[chosen][order], high), cmap=cmap,
               vmin=low, vmax=high, s=2, linewidths=0)
    if panel.truth is not None and panel.truth.any():
        truth = rng.permutation(np.flatnonzero(panel.truth))[:CLOUD_TRUTH_POINTS]
        ringed, _ = project(panel.vertices, view, truth)
        ax.scatter(ringed[:, 0], ringed[:, 1], s=12, facecolors="none", edgecolors=GT_COLOUR, linewidths=0.5,
                   alpha=0.8)
    ax.set_aspect("equal")
    ax.set_facecolor("white")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def sample_png(panels: Sequence[Panel], colour_bar: bool = True) -> bytes:
    """One sample as a row: each image sensor's heatmap over its image, the point cloud from two sides, one
    colour bar in normal levels (``colour_bar=False``: ground truth only, as a dataset's QA shows it);
    ground truth outlined in cyan (JPEG: photographs)."""
    plt = pyplot()
    images = [p for p in panels if p.image is not None]
    clouds = [p for p in panels if p.vertices is not None]
    count = len(images) + 2 * len(clouds)
    fig, axes = plt.subplots(1, count, figsize=(3.2 * count + 0.6, 2.7), squeeze=False,
                             gridspec_kw={"wspace": 0.04})
    axes = list(axes.ravel())
    mappable = None
    for ax, panel in zip(axes, images, strict=False):
        mappable = _image_axis(ax, panel)
        ax.set_title(panel.title, fontsize=8)
    k = len(images)
    for panel in clouds:
        for j, view in enumerate(cloud_views(panel.vertices)):  # type: ignore[arg-type]
            _cloud_axis(axes[k], panel, view, f"{panel.title} ({'top' if j == 0 else 'side'})")
            k += 1
    if mappable is None:
        mappable = plt.cm.ScalarMappable(norm=plt.Normalize(*SHOWN_RANGE), cmap=COLORMAP)
    fig.subplots_adjust(left=0.01, right=0.94 if colour_bar else 0.99, top=0.9, bottom=0.02)
    if colour_bar:
        bar = fig.colorbar(mappable, cax=fig.add_axes((0.955, 0.1, 0.01, 0.75)), extend="both")
        bar.set_label("× normal level", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    return encode(fig, "jpeg", dpi=90)


def panels_for(data, maps: Mapping[str, np.ndarray], levels: Mapping[str, float], titles: Mapping[str, str],
               truth: bool = True) -> list[Panel]:
    """Panels of a loaded sample (``SampleData``) from its anomaly maps, each divided by its modality's normal
    level; ``truth``: outline its ground truth (a dataset sample; a fresh capture has none)."""
    out = []
    for m in ("rgb", "infrared", "pointcloud"):
        if m not in maps:
            continue
        level = np.asarray(maps[m], np.float64) / max(levels[m], 1e-12)
        if m == "pointcloud":
            out.append(Panel(m, titles[m], level, data.pc_mask if truth else None, vertices=data.mesh.vertices))
        else:
            image = data.rgb if m == "rgb" else data.infrared
            if level.shape != image.shape[:2]:  # the paper protocol's 224 x 224 maps
                level = _resize_to(level, image.shape[:2])
            mask = (data.rgb_mask if m == "rgb" else data.ir_mask) if truth else None
            out.append(Panel(m, titles[m], level, mask, image=image))
    return out


def _resize_to(level: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(level.astype(np.float32), mode="F").resize(
        (shape[1], shape[0]), Image.Resampling.BILINEAR))
