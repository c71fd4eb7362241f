"""Detector: coreset, kNN, metrics, fusion hygiene, persistence, and a planted defect found end to end."""

from pathlib import Path

import numpy as np
import pytest

from mulsen.core.errors import MulsenError
from mulsen.dataset.reader import MulsenDataset
from mulsen.detection.features import image_features, upsample_scores
from mulsen.detection.memory_bank import MemoryBank, greedy_coreset, nearest_neighbours
from mulsen.detection.metrics import aupr, aupro, auroc, f1_max
from mulsen.detection.model import DetectorConfig, TripleADModel, all_combinations, combo_name, parse_modalities
from mulsen.detection.training import INSAMPLE_DIAGNOSTIC
from mulsen.hardware_mocks.world.generate import GenerationConfig, generate_dataset


def test_coreset_picks_the_greedy_farthest_points():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    picks = greedy_coreset(x, 20, projection_dim=0, seed=3)
    # brute-force reference from the same start point
    ref = [int(picks[0])]
    d = np.linalg.norm(x - x[ref[0]], axis=1)
    for _ in range(19):
        nxt = int(np.argmax(d))
        ref.append(nxt)
        d = np.minimum(d, np.linalg.norm(x - x[nxt], axis=1))
    assert picks.tolist() == ref
    assert len(set(picks.tolist())) == 20
    with pytest.raises(ValueError):
        greedy_coreset(x, 0)


def test_greedy_order_matches_a_float64_farthest_point_loop_at_bank_scale():
    # the step is one product over the transposed candidates with the squared norms folded in; on thousands of
    # 16-d rows (the projected width) it must pick what the textbook loop in float64 picks
    from mulsen.detection.memory_bank import greedy_order

    x = np.random.default_rng(5).normal(size=(4000, 16)).astype(np.float32)
    picks = greedy_order(x, 300, 17)
    x64 = x.astype(np.float64)
    ref = [17]
    d = ((x64 - x64[17]) ** 2).sum(axis=1)
    for _ in range(299):
        ref.append(int(np.argmax(d)))
        d = np.minimum(d, ((x64 - x64[ref[-1]]) ** 2).sum(axis=1))
    assert picks.tolist() == ref


def test_knn_scores_equal_brute_force():
    rng = np.random.default_rng(1)
    bank, queries = rng.normal(size=(500, 16)), rng.normal(size=(70, 16))
    brute = np.sqrt(((queries[:, None] - bank[None]) ** 2).sum(-1)).min(1)
    assert np.allclose(nearest_neighbours(queries, bank, 1)[0][:, 0], brute, atol=1e-4)
    assert np.allclose(nearest_neighbours(queries, bank, 1, block_rows=7)[0][:, 0], brute, atol=1e-4)
    mb = MemoryBank(bank, np.zeros(16), np.ones(16))
    assert np.allclose(mb.score(queries), brute, atol=1e-4)


def test_knn_neighbours_are_the_brute_force_ones_nearest_first():
    rng = np.random.default_rng(2)
    bank, queries = rng.normal(size=(300, 12)), rng.normal(size=(50, 12))
    full = np.sqrt(((queries[:, None] - bank[None]) ** 2).sum(-1))
    dist, idx = nearest_neighbours(queries, bank, 5, block_rows=9)
    assert np.array_equal(idx, np.argsort(full, axis=1)[:, :5])
    assert np.allclose(dist, np.sort(full, axis=1)[:, :5], atol=1e-5)
    # far from the origin the expanded |q|^2 - 2 q.b + |b|^2 loses digits; the distances returned do not
    assert np.allclose(nearest_neighbours(queries + 1e3, bank + 1e3, 1)[0][:, 0], full.min(1), rtol=1e-3)
    with pytest.raises(ValueError):
        nearest_neighbours(queries, bank[:, :5], 1)
    # leave one group out: the nearest row of another group, infinite where only the own group exists
    qg, bg = np.arange(50) % 3, np.arange(300) % 3
    dist, idx = nearest_neighbours(queries, bank, 1, block_rows=8, groups=(qg, bg))
    assert np.allclose(dist[:, 0], np.where(qg[:, None] == bg[None], np.inf, full).min(1), atol=1e-5)
    assert np.all(bg[idx[:, 0]] != qg)
    dist, _ = nearest_neighbours(queries, bank, 1, groups=(np.zeros(50, int), np.zeros(300, int)))
    assert np.all(np.isinf(dist))


def test_narrow_banks_search_a_tree_with_the_brute_force_answer():
    """Banks up to KDTREE_MAX_DIMS wide are searched with a k-d tree, wider ones with blocked products: both
    give the exact nearest entries; the tree is built once and never pickled (worker processes rebuild it)."""
    import pickle

    from mulsen.detection.memory_bank import KDTREE_MAX_DIMS

    rng = np.random.default_rng(5)
    for dims in (3, 12, KDTREE_MAX_DIMS, KDTREE_MAX_DIMS + 1):
        bank = rng.normal(size=(400, dims)).astype(np.float32)
        queries = np.concatenate([rng.normal(size=(60, dims)), 8 + rng.normal(size=(5, dims))]).astype(np.float32)
        full = np.sqrt(((queries[:, None].astype(np.float64) - bank[None]) ** 2).sum(-1))
        mb = MemoryBank(bank, np.zeros(dims), np.ones(dims))
        dist, idx = mb.nearest(queries, 3)
        assert np.array_equal(idx, np.argsort(full, axis=1)[:, :3]), dims
        assert np.allclose(dist, np.sort(full, axis=1)[:, :3], atol=1e-5)
        assert (mb._tree is not None) == (dims <= KDTREE_MAX_DIMS)
        again = pickle.loads(pickle.dumps(mb))
        assert again._tree is None and np.array_equal(again.score(queries), mb.score(queries))
    with pytest.raises(ValueError, match="width"):
        MemoryBank(bank[:, :4], np.zeros(4), np.ones(4)).nearest(queries[:, :3])


def test_point_features_are_open3d_fpfh_at_the_surface_samples():
    """The tensor FPFH the features use equals open3d's legacy FPFH (the reference implementation) on the same
    samples and normals, and the vertex map and smoothing neighbours are the exact nearest centres."""
    import open3d as o3d
    from scipy.spatial import cKDTree

    from mulsen.detection.features import PointFeatureConfig, point_features, surface_samples
    from mulsen.hardware_mocks.world.defects import DefectConfig
    from mulsen.hardware_mocks.world.generate import SampleTask, render_sample

    mesh = render_sample(SampleTask("capsule", "test", 0, "hole", 3, "small", DefectConfig()))[0].mesh
    config = PointFeatureConfig(max_points=800)
    feats, groups = point_features(mesh.vertices, config, mesh.faces)
    centred = mesh.vertices - mesh.vertices.mean(axis=0)
    chosen, normals, spacing = surface_samples(centred, mesh.faces, config.max_points, config.normal_smoothing)
    assert np.array_equal(groups.centres, centred[chosen])
    legacy = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(centred[chosen]))
    legacy.normals = o3d.utility.Vector3dVector(normals)
    for k, radius in enumerate(config.feature_radii):
        ref = np.asarray(o3d.pipelines.registration.compute_fpfh_feature(
            legacy, o3d.geometry.KDTreeSearchParamHybrid(radius=radius * spacing, max_nn=config.max_nn)).data).T
        ref = ref / (ref.sum(axis=1, keepdims=True) / 3 + 1e-9)
        assert np.allclose(feats[:, 33 * k:33 * (k + 1)], ref, rtol=1e-6, atol=1e-6)
    tree = cKDTree(groups.centres)
    assert np.array_equal(groups.vertex_to_group, tree.query(centred, k=1)[1])
    assert np.array_equal(groups.neighbours, tree.query(groups.centres, k=config.smoothing_neighbours)[1])


def test_image_descriptors_are_the_full_box_filters_sampled_at_patch_centres():
    """The descriptors run the box filters' column pass only where patches are sampled: the values of filtering
    every pixel with scipy's uniform_filter and sampling afterwards, for RGB and for log-compressed gray."""
    from PIL import Image
    from scipy.ndimage import uniform_filter

    from mulsen.detection.features import LOG_KNEE, ImageFeatureConfig, _channels

    rng = np.random.default_rng(4)
    rgb = (rng.random((150, 203, 3)) * 255).astype(np.uint8)
    gray = (rng.random((97, 131)) * 255).astype(np.uint8)
    for image, config in ((rgb, ImageFeatureConfig(work_width=96)),
                          (gray, ImageFeatureConfig(work_width=64, compress="log", gain_percentile=99.0))):
        feats, grid = image_features(image, config)
        h, w = image.shape[:2]
        work_h = max(8, round(h * config.work_width / w))
        chans = _channels(np.asarray(Image.fromarray(image).resize((config.work_width, work_h),
                                                                   Image.Resampling.BILINEAR)), config.gain_percentile)
        full = []
        for size in config.scales:
            mean = uniform_filter(chans, size=(size, size, 1), mode="reflect")
            sq = uniform_filter(chans * chans, size=(size, size, 1), mode="reflect")
            full += [mean, np.sqrt(np.clip(sq - mean * mean, 0, None))]
        stack = np.concatenate(full, axis=-1)
        if config.compress == "log":
            stack = np.sign(stack) * np.log1p(np.abs(stack) / LOG_KNEE)
        s = config.stride
        expected = stack[s // 2::s, s // 2::s]
        assert (grid.rows, grid.cols) == expected.shape[:2]
        assert np.array_equal(feats, expected.reshape(-1, expected.shape[-1]).astype(np.float32))


def test_anomaly_map_is_the_bilinear_resize_then_the_blur():
    """The map is computed as two products with per-axis matrices: the same values as resizing the patch
    grid with PIL and blurring it with scipy, on grids that do not divide the image."""
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    from mulsen.detection.features import PatchGrid

    rng = np.random.default_rng(3)
    for rows, cols, h, w in ((48, 64, 960, 1280), (7, 9, 100, 133), (1, 5, 20, 31)):
        low = (rng.random((rows, cols)) ** 4).astype(np.float32)
        resized = Image.fromarray(low, mode="F").resize((w, h), Image.Resampling.BILINEAR)
        reference = gaussian_filter(np.asarray(resized), 2.5)
        amap = upsample_scores(low.ravel(), PatchGrid(rows, cols, (h, w)), sigma=2.5)
        assert amap.shape == (h, w) and amap.dtype == np.float32
        assert np.allclose(amap, reference, rtol=1e-5, atol=1e-6 * reference.max())


def test_bank_tolerance_scores_a_variable_region_relative_to_its_own_spread():
    """Two kinds of normal patches: tight ones (spread 0.01) and variable ones (spread 1). Without
    tolerances a normal variable patch outscores a tight patch 0.3 off its cluster; with them, it does not."""
    rng = np.random.default_rng(0)

    def sample() -> np.ndarray:
        return np.concatenate([rng.normal(0, 0.01, (200, 2)), rng.normal(10, 1.0, (200, 2))]).astype(np.float32)

    sets = [sample() for _ in range(8)]
    plain = MemoryBank.fit(sets, 0.2, seed=1)
    tolerant = MemoryBank.fit(sets, 0.2, seed=1, tolerance=True)
    assert tolerant.tolerance is not None and len(tolerant.tolerance) == len(tolerant.features)
    test = np.concatenate([sample(), [[0.3, 0.0]]]).astype(np.float32)  # last: the anomaly
    for bank, anomaly_wins in ((plain, False), (tolerant, True)):
        scores = bank.score(test)
        assert bool(scores[-1] > scores[:-1].max()) is anomaly_wins, (scores[-1], scores[:-1].max())
    with pytest.raises(ValueError, match="positive"):
        MemoryBank(tolerant.features, tolerant.mean, tolerant.scale, np.zeros(len(tolerant.features)))


def test_metrics_match_hand_computed_values():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert auroc(y, s) == pytest.approx(0.75)
    assert auroc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert aupr(y, s) == pytest.approx((1.0 + 2 / 3) / 2)
    assert f1_max(y, s) == pytest.approx(0.8)  # threshold 0.35: P=2/3, R=1
    mask = np.zeros((10, 10), bool)
    mask[2:4, 2:4] = True
    perfect = mask.astype(float)
    assert aupro([mask], [perfect]) == pytest.approx(1.0, abs=0.02)
    assert np.isnan(auroc(np.zeros(3), np.arange(3.0)))


def test_modalities_and_combinations():
    assert parse_modalities("pc, IR") == ("infrared", "pointcloud")
    with pytest.raises(MulsenError):
        parse_modalities("rgb,thermal")
    names = [combo_name(c) for c in all_combinations()]
    assert names == ["RGB", "IR", "PC", "PC+RGB", "PC+IR", "RGB+IR", "Triple"]


def test_anomaly_map_upsampling_peaks_at_the_hot_patch():
    image = np.zeros((96, 128, 3), np.uint8)
    feats, grid = image_features(image)
    scores = np.zeros(len(feats))
    scores[grid.cols * (grid.rows // 2) + grid.cols // 4] = 1.0
    amap = upsample_scores(scores, grid)
    row, col = np.unravel_index(np.argmax(amap), amap.shape)
    assert abs(row - 48) < 6 and abs(col - 32) < 6


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    config = GenerationConfig(categories=("cube",), train=10, test_good=3, test_bad=6, seed=4)
    generate_dataset(root / "ds", config)
    ds = MulsenDataset(root / "ds")
    seen = []

    def load(rec):
        seen.append(rec)
        return ds.load(rec)

    model = TripleADModel("cube", DetectorConfig(min_holdout=3, holdout_fraction=0.3)).fit(
        load, ds.records("cube", "train"), workers=1)  # in process, so that ``seen`` is filled here
    return ds, model, root, seen


@pytest.mark.slow
def test_gate_is_fitted_on_held_out_normals_not_bank_samples(trained):
    ds, model, _, seen = trained
    train = ds.records("cube", "train")
    # in-sample rows: a diagnostic of a few bank samples (the paper's gate, which needs them all, is tested apart)
    assert len(model.holdout_scores) == 3 and len(model.insample_scores) == min(len(train) - 3, INSAMPLE_DIAGNOSTIC)
    # every held-out normal scores above zero: it is not in the bank, unlike in-sample samples
    assert model.holdout_scores.min(axis=0).min() > 0
    assert (model.holdout_scores.mean(axis=0) > model.insample_scores.mean(axis=0)).all()
    assert len({r.key for r in seen}) == len(train)


@pytest.mark.slow
def test_planted_defect_scores_highest_and_map_peaks_at_it(trained):
    ds, model, _, _ = trained
    tests = ds.records("cube", "test")
    fused = {}
    for rec in tests:
        data = ds.load(rec)
        result = model.score(data)
        fused[rec.key] = model.fuse({m: r.score for m, r in result.items()}, model.config.modalities)
        if rec.labels.rgb and rec.key.defect_type in ("color", "label", "foreign_body", "broken", "hole"):
            amap = result["rgb"].anomaly_map
            peak = np.unravel_index(np.argmax(amap), amap.shape)
            rows, cols = np.nonzero(data.rgb_mask)
            assert np.hypot(peak[0] - rows.mean(), peak[1] - cols.mean()) < 25, rec.key
    best = max(fused, key=fused.get)
    assert best.defect_type != "good"
    normals = [v for k, v in fused.items() if k.defect_type == "good"]
    assert max(fused.values()) > max(normals)


@pytest.mark.slow
def test_save_load_round_trips_scores_exactly_and_tampering_is_refused(trained):
    ds, model, root, _ = trained
    folder = model.save(root / "models" / "cube")
    loaded = TripleADModel.load(folder)
    data = ds.load(ds.records("cube", "test")[-1])
    a, b = model.score(data), loaded.score(data)
    for m in a:
        assert a[m].score == b[m].score
        assert np.array_equal(a[m].anomaly_map, b[m].anomaly_map)
    assert loaded.threshold(("rgb", "infrared", "pointcloud")) == model.threshold(("rgb", "infrared", "pointcloud"))
    original = (folder / "model.safetensors").read_bytes()
    for position in (4, len(original) - 3):  # the header length, then one byte of bank data
        blob = bytearray(original)
        blob[position] ^= 0x01
        (folder / "model.safetensors").write_bytes(bytes(blob))
        with pytest.raises(MulsenError, match="unreadable or tampered"):
            TripleADModel.load(folder)
    (folder / "model.safetensors").write_bytes(original)
    meta = (folder / "model.json").read_text()
    for edited, message in ((meta.replace('"mulsen-model/4"', '"mulsen-model/99"'), "not a model description file"),
                            (meta.replace('"coreset_ratio"', '"coreset_ration"'),
                             r"config.coreset_ratio: missing \(model written by mulsen-toolkit .*, this is"),
                            (meta.replace('"coreset_ratio"', '"bogus": 1, "coreset_ratio"'), "unknown field bogus"),
                            (meta.replace('"compress": "log"', '"glint_filter_": 0'),
                             "config.infrared.compress: missing"),
                            (meta.replace('"coreset_ratio": 0.1', '"coreset_ratio": 0'), "coreset ratio must be in"),
                            ("[]", "expected a JSON object"),
                            ('{"format_version": 1}', "model format 1 is not supported")):
        (folder / "model.json").write_text(edited)
        with pytest.raises(MulsenError, match=message):
            TripleADModel.load(folder)


@pytest.mark.slow
def test_loading_refuses_a_different_modality_set(trained, tmp_path: Path):
    ds, _, _, _ = trained
    rgb_only = TripleADModel("cube", DetectorConfig(modalities=("rgb",))).fit(ds.load, ds.records("cube", "train"))
    folder = rgb_only.save(tmp_path / "m")
    with pytest.raises(MulsenError, match="asked for rgb, infrared"):
        TripleADModel.load(folder, ("rgb", "infrared"))


@pytest.mark.slow
def test_modality_specific_auroc_holds_each_modality_to_its_own_labels(trained, tmp_path: Path):
    from mulsen.detection.evaluate import EvaluationResults, evaluate_category, write_results

    ds, model, _, _ = trained
    result = evaluate_category(ds, model, all_combinations())
    records = ds.records("cube", "test")
    for m, name in (("rgb", "RGB"), ("infrared", "IR"), ("pointcloud", "PC")):
        own = np.array([r.labels.of(m) for r in records])
        scores = np.array([model.score(ds.load(r), (m,))[m].score for r in records])
        assert result.modality_auroc[name] == pytest.approx(auroc(own, scores))
    write_results([result], tmp_path)
    saved = EvaluationResults.read(tmp_path / "results.json").categories[0]
    assert saved.modality_auroc == pytest.approx(result.modality_auroc)


def test_point_cloud_pro_uses_the_regions_connected_on_the_mesh():
    from mulsen.detection.metrics import mesh_components
    from tests.conftest import grid_mesh

    mesh = grid_mesh(n=12)
    mask = np.zeros(len(mesh.vertices), bool)
    mask[[0, 1, 12, 13]] = True  # a 2x2 patch in one corner of the top grid
    mask[[130, 131]] = True  # two neighbours far away
    labels = mesh_components(mask, mesh.faces)
    assert labels.max() == 2 and len(set(labels[[0, 1, 12, 13]])) == 1 and labels[130] == labels[131] != labels[0]
    perfect = mask.astype(float)
    assert aupro([mask], [perfect], labelled=[labels]) == pytest.approx(1.0)
    half = perfect.copy()
    half[[130, 131]] = 0  # one region found, the other missed at every useful threshold
    assert aupro([mask], [half], labelled=[labels]) == pytest.approx(0.5, abs=0.05)


def test_point_maps_can_interpolate_between_centres():
    from mulsen.detection.features import PointFeatureConfig, PointGroups, point_features

    groups = PointGroups(np.zeros((3, 3)), np.array([[0, 1], [2, 1]]), None, np.array([[0.75, 0.25], [0.5, 0.5]]))
    assert groups.vertex_map(np.array([4.0, 8.0, 2.0])).tolist() == [5.0, 5.0]  # .75 x 4 + .25 x 8; .5 x 2 + .5 x 8
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(2000, 3))
    _, nearest = point_features(cloud, PointFeatureConfig(max_points=200))
    _, idw = point_features(cloud, PointFeatureConfig(max_points=200, map_neighbours=4))
    assert nearest.vertex_weights is None and idw.vertex_weights is not None
    assert idw.vertex_to_group.shape == (2000, 4) and np.allclose(idw.vertex_weights.sum(axis=1), 1)
    assert np.array_equal(idw.vertex_to_group[:, 0], nearest.vertex_to_group)  # the nearest weighs most
    assert (idw.vertex_weights[:, 0] >= idw.vertex_weights[:, 1:].max(axis=1) - 1e-12).all()


def test_a_local_pool_for_point_features_is_forked_with_open3d_imported():
    """Workers inherit the parent's imports: the runner imports open3d once, so no worker of any pool pays it."""
    import subprocess
    import sys

    code = ("import sys\nfrom mulsen.detection.config import DetectorConfig\n"
            "assert 'open3d' not in sys.modules\n"
            "DetectorConfig(modalities=('rgb',)).runner(2)\nassert 'open3d' not in sys.modules\n"
            "DetectorConfig().runner(1)\nassert 'open3d' not in sys.modules\n"
            "DetectorConfig().runner(2)\nassert 'open3d' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
