"""The report pictures and pages as functions: exact heatmap blending, pose-free point-cloud views, the
gallery's order, and tables whose numbers carry their keys (escaped)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mulsen.detection.evaluate import CategoryResult, SampleScore
from mulsen.reports import html, render
from mulsen.reports.evaluation import gallery_order


def test_heat_overlay_leaves_normal_pixels_alone_and_covers_hot_ones():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    level = np.full((20, 30), 0.3)
    level[5:10, 5:10] = 5.0  # far above the range: saturated
    level[15, 20] = render.SHOWN_RANGE[0]  # exactly at the bottom of the range: still clear
    out = render.heat_overlay(image, level)
    clear = level <= render.SHOWN_RANGE[0]
    np.testing.assert_allclose(out[clear], image[clear] / 255.0, atol=1e-12)
    import matplotlib

    top = np.asarray(matplotlib.colormaps[render.COLORMAP](1.0)[:3])
    np.testing.assert_allclose(out[5:10, 5:10], image[5:10, 5:10] / 255.0 * 0.25 + top * 0.75, atol=1e-12)
    gray = render.heat_overlay(image[..., 0], level)  # IR: one channel
    assert gray.shape == (20, 30, 3)


def _rotation(seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_point_cloud_views_are_the_same_in_any_pose():
    rng = np.random.default_rng(1)
    cloud = rng.normal(size=(3000, 3)) * [30.0, 12.0, 4.0]
    cloud[:, 0] += 0.02 * cloud[:, 0] ** 2  # skewed: every axis has a preferred direction
    cloud[:, 1] += 0.05 * cloud[:, 1] ** 2
    moved = cloud @ _rotation(3).T + [1500.0, -800.0, 2100.0]
    for view, view_moved in zip(render.cloud_views(cloud), render.cloud_views(moved), strict=True):
        before = (cloud - cloud.mean(axis=0)) @ view
        after = (moved - moved.mean(axis=0)) @ view_moved
        np.testing.assert_allclose(after, before, atol=1e-6 * np.abs(before).max())
    top, side = render.cloud_views(cloud)
    assert np.allclose(top.T @ top, np.eye(3)) and np.linalg.det(top) > 0  # a rotation: nothing mirrored
    assert np.allclose(side.T @ side, np.eye(3)) and np.linalg.det(side) > 0


def test_sample_picture_shows_each_sensor(tmp_path):
    rng = np.random.default_rng(2)
    image = rng.integers(60, 200, (96, 128, 3), dtype=np.uint8)
    level = np.zeros((96, 128))
    level[30:50, 40:70] = 3.0
    truth = level > 1
    cloud = rng.normal(size=(2000, 3)) * [20.0, 10.0, 3.0]
    panels = [render.Panel("rgb", "RGB", level, truth, image=image),
              render.Panel("pointcloud", "PC", np.where(cloud[:, 0] > 10, 3.0, 0.2), cloud[:, 0] > 10,
                           vertices=cloud)]
    picture = Image.open(io.BytesIO(render.sample_png(panels)))
    assert picture.format == "JPEG" and picture.width > 3 * picture.height  # one row: image + two cloud views
    pixels = np.asarray(picture.convert("RGB"), np.float64)
    assert pixels.std() > 20  # not blank
    cyan = (pixels[..., 0] < 90) & (pixels[..., 1] > 170) & (pixels[..., 2] > 170)
    assert cyan.sum() > 50  # the ground-truth outline and rings are drawn


def _result(rows: list[tuple[str, int, float]]) -> CategoryResult:
    result = CategoryResult("capsule", thresholds={"Triple": 1.0})
    result.samples = [SampleScore(name, label, {"RGB": 0.0}, {"Triple": fused}, {"Triple": fused > 1.0})
                      for name, label, fused in rows]
    return result


def test_gallery_puts_the_largest_errors_first_then_the_closest_calls():
    result = _result([("good-clear", 0, -3.0), ("bad-found", 1, 4.0), ("bad-missed-far", 1, -2.0),
                      ("good-alarm", 0, 1.5), ("bad-missed-near", 1, 0.9), ("good-close", 0, 0.8)])
    order = gallery_order(result, "Triple", count=5)
    assert [e.sample.sample for e in order] == ["bad-missed-far", "good-alarm", "bad-missed-near", "good-close",
                                                "bad-found"]
    assert [e.kind for e in order[:3]] == ["miss", "false-alarm", "miss"]
    assert order[0].margin == pytest.approx(-3.0)


def test_tables_key_every_number_and_escape_text():
    table = html.table(["category", "RGB", "<b>IR</b>"], [["cap<s>", "0.900", "n/a"]], "object_auroc")
    assert 'data-key="object_auroc/cap&lt;s&gt;/RGB">0.900</td>' in table
    assert "<b>" not in table and "&lt;b&gt;IR&lt;/b&gt;" in table
    assert html.number(float("nan")) == "n/a" and html.number(None) == "n/a" and html.number(0.12345) == "0.123"
