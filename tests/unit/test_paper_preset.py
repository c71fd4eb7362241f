"""The paper preset, item by item, on small arrays with hand-computed expectations (issue: the paper's
configuration, faithfully). Each test names the row of the official code it reproduces."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mulsen.detection.config import DetectorConfig, all_combinations, combo_name, paper_config
from mulsen.detection.evaluate import CategoryResult, table5_rows, table6_rows
from mulsen.detection.features import (
    PAPER_MAP_SIZE,
    ImageFeatureConfig,
    PatchGrid,
    PointFeatureConfig,
    paper_map,
    resize_align_corners,
    upsample_scores,
)
from mulsen.detection.fusion import Calibration
from mulsen.detection.memory_bank import WorstPatch, greedy_order, paper_coreset, standardise
from mulsen.detection.metrics import aupr, aupr_trapezoid

WEIGHT_FREE = {"image": ImageFeatureConfig(normalisation="scalar"),
               "points": PointFeatureConfig(smoothing_neighbours=1)}


def test_paper_coreset_is_greedy_from_row_0_with_int_sizing():
    x = np.array([[0], [1], [10], [4], [6], [20], [2], [15], [8], [12]], np.float32)
    # from 0: farthest is 20 (row 5); then 10 (row 2, 10 away from both); then 15 (row 7, 5 away)
    assert paper_coreset(x, 0.4).tolist() == [0, 5, 2, 7]
    assert paper_coreset(x, 0.39).tolist() == [0, 5, 2]  # int(3.9) = 3, not round's 4: a prefix of the above
    with pytest.raises(ValueError, match="no patch"):
        paper_coreset(x, 0.05)


def test_paper_coreset_projects_with_sparse_random_projection_eps_0_9():
    from sklearn.random_projection import SparseRandomProjection, johnson_lindenstrauss_min_dim

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 800)).astype(np.float32)
    dims = johnson_lindenstrauss_min_dim(400, eps=0.9)
    assert 140 < dims < 800  # 24.7 ln n: projected here (low-dimensional features are not: see above)
    projected = SparseRandomProjection(eps=0.9, random_state=3).fit_transform(x).astype(np.float32)
    assert projected.shape[1] == dims
    assert paper_coreset(x, 0.1, seed=3).tolist() == greedy_order(projected, 40, 0).tolist()


def test_scalar_normalisation_is_one_mean_and_unbiased_std():
    mean, scale = standardise(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), scalar=True)
    assert mean.tolist() == [2.5, 2.5]
    assert scale == pytest.approx([math.sqrt(5 / 3)] * 2)  # torch.std over the 4 elements (n - 1)


def test_reweighted_max_object_score_by_hand():
    bank = np.array([[0, 0], [1, 0], [0, 2], [5, 5]], np.float32)
    queries = np.array([[0, 0.5], [3, 0]], np.float32)
    worst = WorstPatch.of(queries, bank)
    assert worst.distances.tolist() == pytest.approx([0.5, 2.0])
    # the worst patch (3, 0) is nearest (1, 0); that entry's next neighbours are (0, 0) and (0, 2)
    assert sorted(worst.around.tolist()) == pytest.approx([3.0, math.sqrt(13)])
    root = math.sqrt(2)
    expected = (1 - math.exp(0.002 / root) / (math.exp(0.003 / root) + math.exp(math.sqrt(13) / 1000 / root))) * 0.002
    assert worst.score(2) == pytest.approx(expected, rel=1e-9)
    assert 0.49 < worst.score(2) / 0.002 < 0.51  # w ~ 0.5: the reweighting is all but inert
    doubled = (1 - math.exp(0.004 / root) / (math.exp(0.006 / root) + math.exp(2 * math.sqrt(13) / 1000 / root))) * .004
    assert worst.score(2, factor=2.0) == pytest.approx(doubled, rel=1e-9)


def test_paper_maps_are_224_bilinear_align_corners_then_8_bit_blur():
    grid = np.array([[0.0, 1.0], [2.0, 3.0]])
    big = resize_align_corners(grid, (224, 224))
    assert big[0, 0] == 0 and big[0, -1] == 1 and big[-1, 0] == 2 and big[-1, -1] == 3  # corners on corners
    assert big[0, 1] == pytest.approx(1 / 223)  # i (n_in - 1) / (n_out - 1)
    torch = pytest.importorskip("torch")
    reference = torch.nn.functional.interpolate(torch.tensor(grid, dtype=torch.float32)[None, None], size=(224, 224),
                                                mode="bilinear", align_corners=True)[0, 0].numpy()
    assert np.abs(big - reference).max() < 1e-6
    flat = paper_map(np.full((28, 28), 0.7))
    assert flat.shape == (PAPER_MAP_SIZE, PAPER_MAP_SIZE) and np.allclose(flat, 0.7)  # 255/255 x max
    spot = np.zeros((28, 28))
    spot[14, 14] = 2.0
    blurred = paper_map(spot)
    top = float(resize_align_corners(spot, (224, 224)).max())  # the peak falls between output pixels
    levels = np.unique(blurred / top * 255)
    assert len(levels) <= 256 and np.allclose(levels, np.round(levels), atol=1e-3)  # 8-bit quantised, times the max
    peak = np.array(np.unravel_index(blurred.argmax(), blurred.shape))
    assert 0 < blurred.max() < top and np.abs(peak - 14 * 223 / 27).max() <= 1  # grid cell 14 lands at 115.6
    assert upsample_scores(spot.ravel(), PatchGrid(28, 28, (480, 640)), "paper").shape == (224, 224)
    assert upsample_scores(spot.ravel(), PatchGrid(28, 28, (480, 640))).shape == (480, 640)


def test_aupr_as_the_paper_against_average_precision():
    labels, scores = np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])
    # PR points (recall, precision): (0, 1) (.5, 1) (.5, .5) (1, 2/3) (1, .5)
    assert aupr(labels, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # steps: 0.8333
    assert aupr_trapezoid(labels, scores) == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)  # trapezoids: 0.7917


@pytest.mark.parametrize("fit", ["paper", "holdout"])
def test_the_gate_rises_with_each_modality(fit: str):
    rng = np.random.default_rng(1)
    columns = ("rgb", "infrared", "pointcloud")
    holdout = np.abs(rng.normal([1.0, 2.0, 0.5], [0.1, 0.3, 0.05], (12, 3)))
    insample = holdout * 0.7  # in-sample scores are biased low, as the paper's
    config = DetectorConfig(fusion="gate", gate_fit=fit)  # type: ignore[arg-type]
    calibration = Calibration(columns, holdout, insample)
    for combo in [c for c in all_combinations() if len(c) > 1]:
        assert (calibration.gate(combo, config) > 0).all(), combo_name(combo)
        base = dict(zip(columns, holdout.mean(axis=0), strict=True))
        fused = calibration.fuse(base, combo, config)
        for m in combo:
            assert calibration.fuse({**base, m: base[m] * 1.5}, combo, config) > fused, (combo, m)


def test_the_gate_takes_lambda_weighted_raw_scores_in_the_paper_fit():
    from mulsen.detection.fusion import gate_weights

    rng = np.random.default_rng(2)
    insample = np.abs(rng.normal(1.0, 0.2, (30, 3)))
    config = DetectorConfig(fusion="gate", gate_fit="paper", gate_lambda=(0.1, 1.0, 1.0))
    calibration = Calibration(("rgb", "infrared", "pointcloud"), insample, insample)
    triple = ("rgb", "infrared", "pointcloud")
    weights = gate_weights(insample * [0.1, 1.0, 1.0])
    assert calibration.gate(triple, config) == pytest.approx(weights)
    row = {"rgb": 1.2, "infrared": 0.9, "pointcloud": 1.1}
    assert calibration.fuse(row, triple, config) == pytest.approx(float(np.array([0.12, 0.9, 1.1]) @ weights))


def test_paper_tables_round_then_average():
    def result(name: str, value: float) -> CategoryResult:
        out = CategoryResult(name, {"RGB": value, "Triple": float("nan")})
        out.localisation = {"RGB": {"auroc": value, "f1_max": 0.5, "aupr": 0.25, "aupro": 0.9}}
        return out

    results = [result("a", 0.1004), result("b", 0.1004), result("c", 0.1004), result("d", 0.1014)]
    header, rows = table5_rows(results, paper=True)
    assert header == ["category", "RGB", "Triple"]
    # rounded .100 .100 .100 .101 -> mean .10025 -> .100 (the unrounded mean .10065 would print .101);
    # an undefined value is 0, as the original's absent metrics
    assert rows[-1] == ["mean", "0.100", "0.000"] and rows[0] == ["a", "0.100", "0.000"]
    assert table5_rows(results)[1][-1] == ["mean", "0.101", "nan"]
    header6, rows6 = table6_rows(results, paper=True)
    assert header6 == ["category", "RGB AUROC", "RGB F1", "RGB AUPR"] and rows6[-1][1:] == ["0.100", "0.500", "0.250"]


def test_point_mae_train_mode_and_millimetre_frame():
    pytest.importorskip("torch")
    from mulsen.detection.backbones import PointMAEExtractor

    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(400, 3)) * 20 + 500  # a part in mm, far from the origin
    evaluated = PointMAEExtractor("random", groups=32, group_size=16)
    first, centres = evaluated(cloud)
    assert np.array_equal(first, evaluated(cloud)[0]) and first.shape == (32, 1152)
    assert np.allclose(evaluated(cloud * 3)[0], first, atol=1e-4)  # unit sphere: scale-free
    centred = PointMAEExtractor("random", groups=32, group_size=16, frame="centred")
    assert not np.allclose(centred(cloud * 3)[0], centred(cloud)[0], atol=1e-3)  # the file's mm reach the network
    trained = PointMAEExtractor("random", groups=32, group_size=16, train_mode=True)
    norm = trained.model.encoder.first_conv[1]
    before = norm.running_mean.clone()
    a, b = trained(cloud)[0], trained(cloud)[0]
    assert not np.array_equal(a, b)  # DropPath: stochastic, as the original's features
    assert not np.allclose(norm.running_mean.numpy(), before.numpy())  # BatchNorm updates its statistics
    assert trained.model.training and not evaluated.model.training
    assert np.allclose(centres.mean(axis=0), cloud.mean(axis=0), atol=30)  # centres in the input frame


def test_a_triple_paper_model_scores_as_the_seven_official_methods(small_dataset: Path, tmp_path: Path):
    """Banks from every normal; the Triple's RGB/IR banks of int(0.1 x PC bank) entries and the std swaps;
    one model holds every method's columns, equal to separately trained single- and dual-modality models."""
    from mulsen.dataset.reader import MulsenDataset
    from mulsen.detection.model import TripleADModel
    from mulsen.detection.scoring import score_row, views

    ds = MulsenDataset(small_dataset)
    train = ds.records("capsule", "train")
    test = ds.load(ds.records("capsule", "test")[2])
    config = paper_config(**WEIGHT_FREE)
    triple = TripleADModel("capsule", config).fit(ds.load, train, workers=1)
    patches = {m: sum(len(f) for f in [_features(ds, r, config, m) for r in train]) for m in config.modalities}
    assert {m: len(b.features) for m, b in triple.banks.items()} == {m: int(0.1 * n) for m, n in patches.items()}
    pc_bank = len(triple.banks["pointcloud"].features)
    std = {m: float(b.scale[0]) for m, b in triple.banks.items()}
    columns = views(triple.banks, config)
    assert columns["rgb@Triple"].size == columns["infrared@Triple"].size == int(0.1 * pc_bank)
    assert columns["pointcloud@Triple"].factor == pytest.approx(std["pointcloud"] / std["rgb"])
    assert columns["rgb@RGB+IR"].factor == pytest.approx(std["rgb"] / std["infrared"])
    assert columns["pointcloud@PC+IR"].factor == pytest.approx(std["pointcloud"] / std["infrared"])
    assert columns["rgb@PC+RGB"].factor == 1.0 and columns["rgb"].size == len(triple.banks["rgb"].features)
    assert len(triple.calibration.insample_scores) == len(train)  # every normal in the banks and the gate fit

    row = score_row(triple.score(test))
    saved = TripleADModel.load(triple.save(tmp_path / "triple"))
    assert score_row(saved.score(test)) == row
    for combo in [("rgb",), ("pointcloud", "rgb"), ("rgb", "infrared")]:
        alone = TripleADModel("capsule", paper_config(modalities=tuple(sorted(combo, key=config.modalities.index)),
                                                      **WEIGHT_FREE)).fit(ds.load, train, workers=1)
        own = score_row(alone.score(test))
        for m in combo:
            assert own[alone.config.column(m, alone.config.modalities)] == pytest.approx(
                row[config.column(m, combo)], rel=1e-6), (combo, m)
        assert alone.fuse(own, alone.config.modalities) == pytest.approx(triple.fuse(row, alone.config.modalities),
                                                                         rel=1e-6)
    assert triple.score(test)["rgb"].anomaly_map.shape == (224, 224)


def _features(ds, record, config, modality):
    from mulsen.detection.scoring import extract

    return extract(modality, ds.load(record), config, maps=False)[0]


def test_models_before_the_paper_settings_load_as_the_default_computation(small_dataset: Path, tmp_path: Path):
    from mulsen.dataset.reader import MulsenDataset
    from mulsen.detection.model import TripleADModel

    ds = MulsenDataset(small_dataset)
    records = ds.records("capsule", "train") + [r for r in ds.records("capsule", "test") if r.key.defect_type == "good"]
    folder = TripleADModel("capsule", DetectorConfig(modalities=("rgb", "pointcloud"))).fit(
        ds.load, records, workers=1).save(tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    meta["format"] = "mulsen-model/3"
    for key in ("preset", "coreset", "object_score", "bank_views", "map_protocol", "gate_lambda"):
        del meta["config"][key]
    for key in ("frame", "train_mode", "normalisation"):
        del meta["config"]["points"][key]
    for extractor in ("image", "infrared"):
        del meta["config"][extractor]["normalisation"]
    (folder / "model.json").write_text(json.dumps(meta))
    loaded = TripleADModel.load(folder)  # trained before the point bank's scalar default: per dimension, as it was
    old = DetectorConfig(modalities=("rgb", "pointcloud"))
    per_dimension = dataclasses.replace(old.points, normalisation="per_dimension")
    assert loaded.config == dataclasses.replace(old, points=per_dimension)


def test_paper_protocol_scores_masks_resized_nearest_to_224_squashed():
    from mulsen.detection.evaluate import _paper_size

    mask = np.zeros((480, 640), bool)
    mask[100:200, 320:640] = True
    small = _paper_size(mask, nearest=True)
    # NEAREST: output pixel i reads source pixel floor((i + 0.5) x 480 / 224) (rows), x 640 / 224 (columns)
    rows = np.floor((np.arange(224) + 0.5) * 480 / 224).astype(int)
    cols = np.floor((np.arange(224) + 0.5) * 640 / 224).astype(int)
    assert small.shape == (224, 224) and np.array_equal(small, mask[np.ix_(rows, cols)])
    assert _paper_size(np.ones((224, 224), np.float32), nearest=False).shape == (224, 224)
