"""Writer -> reader round trips and the validator against hand-broken copies."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from mulsen.cli import main
from mulsen.core.errors import DataFormatError, MulsenError
from mulsen.dataset import layout
from mulsen.dataset.formats import read_labels_csv, read_pc_gt
from mulsen.dataset.reader import MulsenDataset
from mulsen.dataset.records import ModalityLabels, SampleKey, Split
from mulsen.dataset.stats import dataset_stats
from mulsen.dataset.validate import validate_dataset
from mulsen.dataset.writer import DatasetWriter
from tests.conftest import make_content


def test_round_trip_exact(tmp_path: Path):
    root = tmp_path / "ds"
    writer = DatasetWriter(root)
    content = make_content(True, True, True, seed=3)
    key = writer.add("capsule", "test", "crack", content)
    assert key == SampleKey("capsule", Split.TEST, "crack", 0)
    writer.add("capsule", "train", "good", make_content(seed=1))
    ds = MulsenDataset(root)
    rec = ds.records("capsule", Split.TEST)[0]
    assert rec.labels == ModalityLabels(1, 1, 1)
    data = ds.load(rec)
    assert np.array_equal(data.rgb, content.rgb)
    assert np.array_equal(data.infrared, content.infrared)
    assert np.array_equal(data.rgb_mask, content.rgb_mask)
    assert np.array_equal(data.ir_mask, content.ir_mask)
    # The three planted vertices come back as exactly three labelled vertices at the same places.
    assert data.pc_mask.sum() == 3
    found = np.sort(data.mesh.vertices[data.pc_mask], 0)
    assert np.allclose(found, np.sort(content.pc_anomalous_points, 0), atol=1e-4)
    assert np.allclose(data.mesh.vertices.mean(0), content.mesh.vertices.mean(0), atol=1e-3)
    # as an inspector reads it: the three sensor files only (ground-truth files corrupted: never read), no masks
    for gt in (rec.rgb_gt, rec.ir_gt, rec.pc_gt):
        assert gt is not None
        gt.write_bytes(b"not a mask")
    bare = ds.load(rec, ground_truth=False)
    assert np.array_equal(bare.rgb, data.rgb) and np.array_equal(bare.mesh.vertices, data.mesh.vertices)
    assert not bare.rgb_mask.any() and not bare.ir_mask.any() and not bare.pc_mask.any()


def test_ir_channels_that_disagree_are_averaged_rounding_half_up(tmp_path: Path):
    from PIL import Image

    from mulsen.dataset.formats import read_ir

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    rgb[0, :3] = [[255, 255, 255], [0, 0, 1], [0, 1, 1]]
    Image.fromarray(rgb).save(tmp_path / "ir.png")
    expected = ((rgb.astype(np.int64).sum(axis=2) + 1) // 3).astype(np.uint8)
    gray = read_ir(tmp_path / "ir.png")
    assert gray.dtype == np.uint8 and np.array_equal(gray, expected)
    assert gray[0, :3].tolist() == [255, 0, 1]


def test_numbering_restarts_per_folder_and_csv_is_sorted(small_dataset: Path):
    ds = MulsenDataset(small_dataset)
    assert ds.categories == ["capsule", "nut"]  # official order
    stems = [(r.key.split.value, r.key.defect_type, r.key.stem) for r in ds.records("nut")]
    assert stems == [("train", "good", 0), ("train", "good", 1), ("train", "good", 2), ("test", "good", 0),
                     ("test", "good", 1), ("test", "crack", 0), ("test", "crack", 1), ("test", "hole", 0),
                     ("test", "hole", 1)]
    text = layout.csv_path(small_dataset, "nut", "crack").read_text()
    assert text == "object,RGB,infrared,pointcloud\n0,1,1,1\n1,1,0,0\n"
    good = layout.csv_path(small_dataset, "nut", "good").read_text()
    assert good == "object,RGB,infrared,pointcloud\n0,0,0,0\n1,0,0,0\n"
    assert not (small_dataset / "nut/Pointcloud/GT/crack/1.txt").exists()
    assert (small_dataset / "nut/Infrared/GT/hole/1.png").exists()


def test_csv_is_joined_by_object_not_row_order(small_dataset: Path):
    csv = layout.csv_path(small_dataset, "capsule", "crack")
    csv.write_text("object,RGB,infrared,pointcloud\n1,1,0,0\n0.png,1,1,1\n")  # reversed, with an extension
    tests = MulsenDataset(small_dataset).records("capsule", "test")
    rec = {r.key.stem: r for r in tests if r.key.defect_type == "crack"}
    assert rec[0].labels == ModalityLabels(1, 1, 1)
    assert rec[1].labels == ModalityLabels(1, 0, 0)


def test_single_3d_rule():
    assert ModalityLabels(1, 1, 0).object_label() == 1
    from mulsen.dataset.records import LabelRule
    assert ModalityLabels(1, 1, 0).object_label(LabelRule.SINGLE_3D) == 0
    assert ModalityLabels(0, 0, 1).object_label(LabelRule.SINGLE_3D) == 1


def test_writer_refuses_wrong_labels_and_rolls_back(tmp_path: Path):
    writer = DatasetWriter(tmp_path / "ds")
    with pytest.raises(MulsenError, match="belongs in test/good"):
        writer.add("nut", "test", "crack", make_content())
    with pytest.raises(MulsenError, match="cannot carry ground truth"):
        writer.add("nut", "train", "good", make_content(True))
    bad = make_content(False, False, True)
    bad.pc_anomalous_points = bad.pc_anomalous_points + 5.0  # not on the mesh
    with pytest.raises(DataFormatError):
        writer.add("nut", "test", "hole", bad)
    leftovers = [p for p in (tmp_path / "ds").rglob("*") if p.is_file()]
    assert leftovers == []


def test_writer_never_overwrites(small_dataset: Path):
    writer = DatasetWriter(small_dataset)
    key = writer.add("nut", "test", "crack", make_content(True, seed=7))
    assert key.stem == 2  # continues after the existing samples
    (small_dataset / "nut/RGB/test/crack/3.png").write_bytes(b"x")  # a stray file blocks stem 3
    with pytest.raises(FileExistsError):
        writer._next_stem = lambda *a: 3  # force a collision
        writer.add("nut", "test", "crack", make_content(True, seed=8))
    assert not (small_dataset / "nut/Infrared/test/crack/3.png").exists()


def test_valid_dataset_passes_and_stats_match(small_dataset: Path):
    report = validate_dataset(small_dataset)
    assert report.errors == [], [str(p) for p in report.errors]
    assert report.samples == 18
    rows = dataset_stats(MulsenDataset(small_dataset))
    nut = rows[1]
    assert (nut.train_normal, nut.test_normal, nut.test_abnormal, nut.total, nut.anomaly_types) == (3, 2, 4, 9, 2)
    assert nut.visibility == {"rgb_only": 1, "ir_only": 0, "pc_only": 1, "two": 1, "all_three": 1}
    # RGB masks: 10 x (10 + seed) pixels of a 64 x 48 image, seeds 1 and 2 (two RGB-labelled samples).
    expected_rgb = np.mean([10 * 11 / (64 * 48), 10 * 12 / (64 * 48)]) * 100
    assert nut.rgb_abnormal_ratio_pct == pytest.approx(expected_rgb)
    assert rows[-1].category == "total" and rows[-1].total == 18


def _kinds(root: Path) -> set[str]:
    return {p.kind for p in validate_dataset(root).errors}


@pytest.fixture
def broken(small_dataset: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "broken"
    shutil.copytree(small_dataset, copy)
    return copy


def test_missing_file_in_one_modality(broken: Path):
    (broken / "nut/Infrared/train/1.png").unlink()
    assert "missing-file" in _kinds(broken)


def test_extra_and_odd_files(broken: Path):
    (broken / "nut/RGB/train/notes.txt").write_text("x")
    shutil.copy(broken / "nut/RGB/train/0.png", broken / "nut/RGB/train/00.png")
    kinds = _kinds(broken)
    assert {"extra-file", "duplicate-stem"} <= kinds


def test_stems_that_do_not_pair_or_are_not_contiguous(broken: Path):
    for m, ext in (("RGB", "png"), ("Infrared", "png"), ("Pointcloud", "stl")):
        (broken / f"nut/{m}/train/2.{ext}").rename(broken / f"nut/{m}/train/5.{ext}")
    assert "numbering" in _kinds(broken)


def test_csv_row_naming_no_file_and_file_with_no_row(broken: Path):
    csv = layout.csv_path(broken, "nut", "crack")
    csv.write_text("object,RGB,infrared,pointcloud\n0,1,1,1\n7,1,0,0\n")
    kinds = _kinds(broken)
    assert {"csv-orphan-row", "csv-missing-row"} <= kinds


def test_csv_wrong_header_and_bad_label(broken: Path):
    layout.csv_path(broken, "nut", "crack").write_text("id,rgb,ir,pc\n0,1,1,1\n1,1,0,0\n")
    layout.csv_path(broken, "nut", "hole").write_text("object,RGB,infrared,pointcloud\n0,0,0,2\n1,0,1,1\n")
    problems = [p for p in validate_dataset(broken).errors if p.kind == "csv-format"]
    assert any("header must be" in p.message for p in problems)
    assert any("labels must be 0 or 1" in p.message and "0,0,2" in p.message for p in problems)
    with pytest.raises(DataFormatError, match=r"data\.csv: csv header must be"):
        read_labels_csv(layout.csv_path(broken, "nut", "crack"))


def test_label_one_without_gt(broken: Path):
    (broken / "nut/RGB/GT/crack/1.png").unlink()
    assert "missing-gt" in _kinds(broken)
    with pytest.raises(DataFormatError, match="label is 1 but its ground truth file is missing"):
        MulsenDataset(broken).records("nut")
    lenient = MulsenDataset(broken, strict=False)
    assert len(lenient.records("nut", "test")) == 5 and len(lenient.problems) == 1


def test_gt_present_for_label_zero(broken: Path):
    shutil.copy(broken / "nut/Infrared/GT/crack/0.png", broken / "nut/Infrared/GT/crack/1.png")
    assert "gt-for-label-0" in _kinds(broken)


def test_orphan_gt(broken: Path):
    shutil.copy(broken / "nut/RGB/GT/crack/0.png", broken / "nut/RGB/GT/crack/9.png")
    assert "orphan-gt" in _kinds(broken)


def test_all_zero_labels_in_defect_folder(broken: Path):
    layout.csv_path(broken, "nut", "crack").write_text("object,RGB,infrared,pointcloud\n0,1,1,1\n1,0,0,0\n")
    (broken / "nut/RGB/GT/crack/1.png").unlink()
    assert "no-positive-label" in _kinds(broken)


def test_mask_size_differs(broken: Path):
    from PIL import Image
    Image.new("L", (10, 10), 255).save(broken / "nut/RGB/GT/crack/0.png")
    assert "mask-size" in _kinds(broken)


def test_non_binary_and_empty_masks(broken: Path):
    from PIL import Image
    arr = np.zeros((48, 64), np.uint8)
    arr[5:9, 5:9] = 128
    arr[20:25, 20:25] = 255
    Image.fromarray(arr).save(broken / "nut/RGB/GT/crack/0.png")
    Image.new("L", (64, 48), 0).save(broken / "nut/RGB/GT/crack/1.png")
    kinds = _kinds(broken)
    assert {"mask-not-binary", "mask-empty"} <= kinds


def test_empty_truncated_and_unreadable_files(broken: Path):
    (broken / "nut/Pointcloud/train/0.stl").write_bytes(b"")
    data = (broken / "nut/Pointcloud/train/1.stl").read_bytes()
    (broken / "nut/Pointcloud/train/1.stl").write_bytes(data[: len(data) // 2])
    (broken / "nut/RGB/train/2.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    problems = validate_dataset(broken).errors
    messages = {(p.path.name, p.kind) for p in problems}
    assert ("0.stl", "stl-unreadable") in messages and ("1.stl", "stl-unreadable") in messages
    assert ("2.png", "unreadable-file") in messages


def test_stl_in_metres_is_flagged(broken: Path):
    from mulsen.dataset.meshio import read_stl, write_stl
    mesh = read_stl(broken / "nut/Pointcloud/train/0.stl")
    mesh.vertices /= 1000.0
    write_stl(broken / "nut/Pointcloud/train/0.stl", mesh, overwrite=True)
    assert "stl-scale" in _kinds(broken)


def test_point_gt_far_from_vertices_and_malformed(broken: Path):
    gt = broken / "nut/Pointcloud/GT/crack/0.txt"
    points = read_pc_gt(gt)
    gt.write_text("# x, y, z\n" + "\n".join(f"{x:.6f},{y:.6f},{z + 0.5:.6f}" for x, y, z in points) + "\n")
    (broken / "nut/Pointcloud/GT/hole/0.txt").write_text("# x, y, z\n1.0,2.0,abc\n")
    problems = validate_dataset(broken).errors
    assert any(p.kind == "pc-gt-mismatch" and p.path == gt for p in problems)
    assert any(p.kind == "pc-gt-format" and "line 2: non-numeric" in p.message for p in problems)


def test_missing_csv_and_missing_modality_folder(broken: Path):
    layout.csv_path(broken, "nut", "good").unlink()
    shutil.rmtree(broken / "capsule/Pointcloud/test/hole")
    kinds = _kinds(broken)
    assert {"missing-csv", "missing-folder"} <= kinds


def test_nested_root_is_tolerated(small_dataset: Path, tmp_path: Path):
    outer = tmp_path / "MulSen_AD"
    shutil.copytree(small_dataset, outer / "MulSen_AD")
    report = validate_dataset(outer)
    assert report.ok and any(p.kind == "nested-root" for p in report.problems)
    assert MulsenDataset(outer).nested


def test_cli_validate_reports_lines_and_exit_status(broken: Path, small_dataset: Path, capsys):
    assert main(["dataset", "validate", str(small_dataset), "--jobs", "1"]) == 0
    (broken / "nut/Infrared/train/1.png").unlink()
    layout.csv_path(broken, "nut", "crack").write_text("object,RGB,infrared,pointcloud\n0,1,1,1\n")
    assert main(["dataset", "validate", str(broken), "--jobs", "2"]) == 1
    out = capsys.readouterr().out
    path = broken / "nut/Infrared/train/1.png"
    assert f"{path}: sample 1 exists in another modality but not here (missing-file)" in out
    assert "csv-missing-row: 1" in out and "missing-file: 1" in out


def test_cli_stats_formats(small_dataset: Path, capsys):
    import json
    assert main(["dataset", "stats", str(small_dataset), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["category"] == "capsule" and rows[0]["visible_all_three"] == 1
    assert main(["dataset", "stats", str(small_dataset), "--csv"]) == 0
    assert capsys.readouterr().out.startswith("category,train_normal,")
    assert main(["dataset", "stats", str(small_dataset)]) == 0
    assert "visibility of anomalous samples" in capsys.readouterr().out


def test_cli_missing_folder_is_one_line(tmp_path: Path, capsys):
    assert main(["dataset", "stats", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'}: dataset folder not found"
