"""The HTML reports opened in a real browser (headless Chromium over the DevTools protocol): they load with no
console error, exception or failed load, reach for nothing outside the file, every picture is decoded and
not blank, the page itself is not blank, and the numbers shown equal the JSON results."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from mulsen.cli import main
from mulsen.dataset.formats import write_ir, write_rgb
from mulsen.dataset.meshio import write_stl
from mulsen.dataset.reader import MulsenDataset
from mulsen.hardware_mocks.world.generate import GenerationConfig, generate_dataset
from tests.browser import IMAGES_JS, KEYS_JS, chromium, open_page

needs_browser = pytest.mark.skipif(chromium() is None, reason="needs Chromium (make test installs Debian's chromium)")


def _check_page(path: Path, profile: Path, images: int) -> dict[str, str]:
    """Open ``path``; assert a clean load, ``images`` decoded non-blank pictures and a non-blank page; return
    its keyed numbers."""
    text = path.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text), "the page reaches outside itself"
    with open_page(path, profile / "chromium") as page:
        assert page.problems == []
        shown = page.evaluate(IMAGES_JS)
        keys = page.evaluate(KEYS_JS)
        shot = page.screenshot()
    assert len(shown) == images
    for image in shown:
        assert image["complete"] and image["width"] > 100 and image["src"].startswith("data:image/"), image
        assert image["stats"]["std"] > 10, f"{image['alt']} is blank"
    assert shot.shape[0] > 600 and shot.std() > 20  # rendered, not an empty white page
    dark = (shot.mean(axis=2) < 128).mean()
    assert 0.01 < dark < 0.6
    return keys


@needs_browser
def test_the_browser_harness_sees_what_goes_wrong(tmp_path: Path):
    page_file = tmp_path / "broken.html"
    page_file.write_text('<html><body><p>x</p><img src="missing.png"><img src="https://example.com/a.png">'
                         '<script>console.error("boom"); notDefined();</script></body></html>')
    with open_page(page_file, tmp_path / "chromium") as page:
        problems = page.problems
        images = page.evaluate(IMAGES_JS)
    assert any("console.error: boom" in p for p in problems)
    assert any("notDefined" in p for p in problems)
    assert any("missing.png" in p for p in problems) and any("example.com" in p for p in problems)
    assert [i["width"] for i in images] == [0, 0]


@pytest.mark.slow
@needs_browser
def test_evaluation_and_detection_reports_in_a_browser(tmp_path: Path, capsys):
    generate_dataset(tmp_path / "ds", GenerationConfig(categories=("capsule",), train=8, test_good=3, test_bad=5,
                                                       seed=21))
    models, results, report = tmp_path / "models", tmp_path / "results", tmp_path / "report"
    assert main(["train", str(tmp_path / "ds"), "--all", "--out", str(models), "--jobs", "1"]) == 0
    assert main(["evaluate", str(tmp_path / "ds"), "--models", str(models), "--all-combinations", "--out",
                 str(results), "--report", str(report), "--report-samples", "5", "--jobs", "1"]) == 0
    assert f"wrote the report {report / 'index.html'}" in capsys.readouterr().out

    # summary: two figures + a gallery of 5 sample rows, each one picture
    keys = _check_page(report / "index.html", tmp_path, images=2 + 5)
    saved = json.loads((results / "results.json").read_text())["categories"][0]
    for name, value in saved["object_auroc"].items():
        assert keys[f"object_auroc/capsule/{name}"] == f"{value:.3f}"
    for name, value in saved["modality_auroc"].items():
        assert keys[f"modality_auroc/capsule/{name}"] == f"{value:.3f}"
    assert keys["object_auroc/mean/Triple"] == f"{saved['object_auroc']['Triple']:.3f}"
    triple = saved["confusion"]["Triple"]
    assert keys["confusion/capsule/Triple/TP"] == str(triple["true_positive"])
    assert keys["confusion/capsule/Triple/FN"] == str(triple["false_negative"])
    rows = {r["sample"]: r for r in csv.DictReader((results / "per_sample.csv").open())}
    gallery = [k.rsplit("/", 1)[0] for k in keys if k.endswith("/fused")]
    assert len(gallery) == 5
    for sample in gallery:
        assert keys[f"{sample}/fused"] == f"{float(rows[sample]['Triple fused']):.3f}"
        assert keys[f"{sample}/PC"] == f"{float(rows[sample]['PC']):.3f}"
    # errors first: every wrong verdict in the set comes before any right one
    wrong = {s for s, r in rows.items() if (r["Triple verdict"] == "anomalous") != (r["label"] == "1")}
    assert set(gallery[:len(wrong)]) == wrong or wrong >= set(gallery)

    # the inspector's pages: one judged part, its page and the index
    ds = MulsenDataset(tmp_path / "ds")
    data = ds.load(next(r for r in ds.records("capsule", "test") if r.key.defect_type != "good"))
    part = tmp_path / "parts" / "p1"
    part.mkdir(parents=True)
    write_rgb(part / "rgb.png", data.rgb)
    write_ir(part / "infrared.png", data.infrared)
    write_stl(part / "pointcloud.stl", data.mesh)
    detections = tmp_path / "detections"
    assert main(["detect", "--model", str(models / "capsule"), "--out", str(detections), "--report", "--jobs", "1",
                 str(part)]) == 0
    saved_part = json.loads((detections / "p1" / "report.json").read_text())
    keys = _check_page(detections / "p1" / "report.html", tmp_path, images=1)
    assert keys["decision"] == saved_part["decision"]
    assert keys["fused"] == f"{saved_part['fused']:.3f}" and keys["threshold"] == f"{saved_part['threshold']:.3f}"
    assert keys["score/PC"] == f"{saved_part['scores']['pointcloud']:.3f}"
    index = (detections / "index.html").read_text()
    assert 'href="p1/report.html"' in index and 'href="p1/report.json"' in index
    with open_page(detections / "index.html", tmp_path / "chromium") as page:
        assert page.problems == []
        listed = page.evaluate(KEYS_JS)
    assert listed[f"{part}/decision"] == saved_part["decision"] and listed["parts"] == "1"
    assert np.isfinite(saved_part["fused"])


@needs_browser
def test_dataset_report_lists_problems_and_shows_flagged_samples_first(small_dataset: Path, tmp_path: Path, capsys):
    broken = small_dataset / "nut" / "Infrared" / "GT" / "hole" / "1.png"
    assert broken.exists()
    broken.write_bytes(b"not a png at all")  # the validator's error, and a sample the reader refuses
    out = tmp_path / "report"
    assert main(["dataset", "report", str(small_dataset), "--out", str(out), "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "18 samples, 1 errors" in printed and f"wrote the report {out / 'index.html'}" in printed
    text = (out / "index.html").read_text()
    assert "nut/Infrared/GT/hole/1.png" in text and "cannot be read" in text
    # pictures: every anomalous test sample (4 per category) but the unreadable one
    keys = _check_page(out / "index.html", tmp_path, images=4 + 3)
    assert (keys["samples"], keys["errors"]) == ("18", "1")
    assert keys["stats/capsule/#train"] == "3" and keys["stats/capsule/#test bad"] == "4"
    # the category with the unreadable mask is left out of Table 3 (and says so), not the whole page
    assert "stats/nut/#total" not in keys and keys["stats/total/#total"] == "9"
    assert "left out of Table 3</span> nut:" in text
    nut = text[text.index('id="cat-nut"'):]
    assert nut.index("nut/test/hole/1") < nut.index("nut/test/crack/0")  # the flagged sample first
