"""``--preset paper`` from the command line: train and evaluate with the paper's computation (weight-free
features here: the weight files are not in CI), Tables 5 and 6 in the paper's layout as CSV and Markdown,
the gate ranking anomalies above normals, and the model judging a capture."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mulsen.cli import main
from mulsen.dataset.formats import write_ir, write_rgb
from mulsen.dataset.meshio import write_stl
from mulsen.dataset.reader import MulsenDataset
from mulsen.detection.model import TripleADModel
from mulsen.hardware_mocks.world.generate import GenerationConfig, generate_dataset


def test_paper_preset_trains_evaluates_and_writes_the_papers_tables(tmp_path: Path, capsys):
    generate_dataset(tmp_path / "ds", GenerationConfig(categories=("capsule",), train=8, test_good=3, test_bad=5,
                                                       seed=11))
    models, out = tmp_path / "models", tmp_path / "eval"
    assert main(["train", str(tmp_path / "ds"), "--all", "--out", str(models), "--preset", "paper",
                 "--image-backbone", "handcrafted", "--point-backbone", "fpfh", "--jobs", "1"]) == 0
    captured = capsys.readouterr()
    assert "no normals were held out (the paper's way)" in captured.err
    model = TripleADModel.load(models / "capsule")
    assert (model.config.preset, model.config.coreset, model.config.bank_views) == ("paper", "paper", "paper")
    assert len(model.calibration.insample_scores) == 8  # every training normal built the banks

    assert main(["evaluate", str(tmp_path / "ds"), "--models", str(models), "--all-combinations", "--out",
                 str(out), "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "the paper's Table 5 layout" in printed and "the paper's Table 6 layout" in printed
    results = json.loads((out / "results.json").read_text())["categories"][0]
    rows = list(csv.reader((out / "table5.csv").open()))
    assert rows[0] == ["category", "RGB", "IR", "PC", "PC+RGB", "PC+IR", "RGB+IR", "Triple"]
    assert rows[1][0] == "capsule" and rows[-1][0] == "mean"
    for name, cell in zip(rows[0][1:], rows[1][1:], strict=True):
        assert cell == f"{round(results['object_auroc'][name], 3):.3f}"
    # the gate fitted in-sample on raw scores no longer ranks anomalies below normals
    assert results["object_auroc"]["Triple"] > 0.5 and results["object_auroc"]["RGB+IR"] > 0.5
    markdown = (out / "table6.md").read_text().splitlines()
    assert markdown[0] == ("| category | RGB AUROC | RGB F1 | RGB AUPR | IR AUROC | IR F1 | IR AUPR | PC AUROC | "
                           "PC F1 | PC AUPR |")

    ds = MulsenDataset(tmp_path / "ds")
    data = ds.load(next(r for r in ds.records("capsule", "test") if r.key.defect_type != "good"))
    part = tmp_path / "part"
    part.mkdir()
    write_rgb(part / "rgb.png", data.rgb)
    write_ir(part / "infrared.png", data.infrared)
    write_stl(part / "pointcloud.stl", data.mesh)
    detections = tmp_path / "detections"
    assert main(["detect", "--model", str(models / "capsule"), "--out", str(detections), "--jobs", "1",
                 str(part)]) == 0
    report = json.loads((detections / "part" / "report.json").read_text())
    assert report["fusion"] == "gate" and report["fused"] > 0
    overlay = np.asarray(Image.open(detections / "part" / "rgb_overlay.png"))
    assert overlay.shape[:2] == data.rgb.shape[:2]  # the 224 px map drawn at the image's size
