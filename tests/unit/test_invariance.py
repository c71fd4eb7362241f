"""The point-cloud detector depends on the part, not on where the scanner left it or how densely it sampled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mulsen.core.geometry import apply_transform, rigid_transform, rotation_from_rotvec
from mulsen.dataset.records import Mesh, ModalityLabels, SampleData, SampleKey, SampleRecord, Split
from mulsen.detection.config import DetectorConfig
from mulsen.detection.features import ImageFeatureConfig, point_features
from mulsen.detection.model import TripleADModel
from mulsen.hardware_mocks.world.defects import DefectConfig
from mulsen.hardware_mocks.world.generate import Nuisance, SampleTask, render_sample

CONFIG = DetectorConfig(modalities=("pointcloud",), min_holdout=2, holdout_fraction=0.3)


def _mesh(seed: int, defect: str | None = None) -> tuple[Mesh, np.ndarray]:
    content, _ = render_sample(SampleTask("capsule", "test", 0, defect, seed, "small", DefectConfig()))
    points = content.pc_anomalous_points
    mask = np.zeros(len(content.mesh.vertices), bool)
    if points is not None:
        mask = np.isin(content.mesh.vertices.view([("", float)] * 3), points.view([("", float)] * 3)).ravel()
    return content.mesh, mask


def _data(mesh: Mesh) -> SampleData:
    record = SampleRecord(SampleKey("capsule", Split.TEST, "good", 0), Path("rgb.png"), Path("ir.png"),
                          Path("pc.stl"), ModalityLabels())
    return SampleData(record, np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), mesh,
                      np.zeros((8, 8), bool), np.zeros((8, 8), bool), np.zeros(len(mesh.vertices), bool))


def _random_pose(rng: np.random.Generator) -> np.ndarray:
    axis = rng.normal(size=3)
    rotation = rotation_from_rotvec(axis / np.linalg.norm(axis) * rng.uniform(0, np.pi))
    return rigid_transform(rotation, rng.uniform(-2000, 2000, 3))  # metres away, like a hand-held scanner


@pytest.fixture(scope="module")
def model() -> TripleADModel:
    normals = [_data(_mesh(seed)[0]) for seed in range(100, 107)]
    return TripleADModel("capsule", CONFIG).fit(lambda data: data, normals)


def test_point_features_are_the_same_in_any_scanner_frame():
    mesh, _ = _mesh(1, "hole")
    features, groups = point_features(mesh.vertices, CONFIG.points, mesh.faces)
    rng = np.random.default_rng(0)
    for _ in range(3):
        moved = apply_transform(_random_pose(rng), mesh.vertices)
        again, regrouped = point_features(moved, CONFIG.points, mesh.faces)
        np.testing.assert_array_equal(regrouped.vertex_to_group, groups.vertex_to_group)
        np.testing.assert_allclose(again, features, atol=2e-4)


@pytest.mark.slow
def test_scores_and_vertex_ranking_survive_any_rigid_transform(model: TripleADModel):
    mesh, mask = _mesh(2, "hole")
    assert mask.any()
    reference = model.score(_data(mesh))["pointcloud"]
    rng = np.random.default_rng(1)
    for _ in range(3):
        moved = Mesh(apply_transform(_random_pose(rng), mesh.vertices), mesh.faces)
        result = model.score(_data(moved))["pointcloud"]
        assert result.score == pytest.approx(reference.score, rel=1e-3)
        order = np.argsort(-reference.anomaly_map, kind="stable")[:200]
        assert np.array_equal(np.argsort(-result.anomaly_map, kind="stable")[:200], order)
    # and the planted defect is where the map is highest
    assert reference.anomaly_map[mask].mean() > 2 * reference.anomaly_map[~mask].mean()


def test_point_features_do_not_depend_on_the_part_size():
    mesh, _ = _mesh(3, "hole")
    features, groups = point_features(mesh.vertices, CONFIG.points, mesh.faces)
    for factor in (0.4, 3.0):  # a 10 mm and a 100 mm version of the same part
        again, regrouped = point_features(mesh.vertices * factor, CONFIG.points, mesh.faces)
        np.testing.assert_array_equal(regrouped.vertex_to_group, groups.vertex_to_group)
        np.testing.assert_allclose(again, features, atol=2e-4)


@pytest.mark.slow
def test_half_and_double_mesh_density_keep_normals_below_anomalies(model: TripleADModel):
    for density in (0.5, 2.0):
        nuisance = Nuisance(density_range=(density, density))
        scores = {}
        # local geometric defects; broad bends and squeezes are beyond local features at any density
        for seed, defect in ((20, None), (21, None), (22, None), (23, "hole"), (24, "broken"), (26, "hole")):
            content, _ = render_sample(SampleTask("capsule", "test", 0, defect, seed, "small", DefectConfig(),
                                                  nuisance))
            scores[(seed, defect)] = model.score(_data(content.mesh))["pointcloud"].score
        normal = max(v for (_, d), v in scores.items() if d is None)
        assert min(v for (_, d), v in scores.items() if d is not None) > normal, (density, scores)


def test_ir_glints_are_filtered_out_but_defect_sized_spots_are_not():
    from mulsen.detection.features import ImageFeatureConfig, image_features

    base = np.full((120, 160), 40, np.uint8)
    base[30:90, 30:130] = 160  # the heated part
    rows, cols = np.mgrid[:120, :160]
    glint, defect = base.copy(), base.copy()
    glint[(rows - 60) ** 2 + (cols - 80) ** 2 <= 2] = 255  # a specular reflection, about 3 px across
    defect[(rows - 60) ** 2 + (cols - 80) ** 2 <= 100] = 200  # a subsurface defect, 20 px across
    filtered, plain = ImageFeatureConfig(glint_filter=0.03), ImageFeatureConfig()
    assert np.abs(image_features(glint, filtered)[0] - image_features(base, filtered)[0]).max() == 0
    assert np.abs(image_features(glint, plain)[0] - image_features(base, plain)[0]).max() > 0.05
    assert np.abs(image_features(defect, filtered)[0] - image_features(base, filtered)[0]).max() > 0.05
    assert DetectorConfig().extractor("infrared").glint_filter == filtered.glint_filter


def test_ir_lamp_power_drift_moves_features_less_than_a_faint_defect():
    from mulsen.detection.features import image_features

    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[:120, :160]
    part = (rows - 60) ** 2 + (cols - 80) ** 2 <= 35 ** 2
    amplitude = np.where(part, 150.0, 15.0) + rng.normal(0, 1.5, (120, 160))
    faint = amplitude + 8.0 * np.exp(-((rows - 50) ** 2 + (cols - 90) ** 2) / (2 * 4.0 ** 2))  # a 5 % blob

    def moved(config: ImageFeatureConfig) -> tuple[float, float]:
        """(farthest patch move under +-5 % gain, farthest under the blob), each dimension in units of its
        spread over the image, as the bank standardises them."""
        def features(image: np.ndarray) -> np.ndarray:
            return image_features(np.clip(image, 0, 255).round().astype(np.uint8), config)[0]

        base = features(amplitude)
        spread = base.std(axis=0) + 1e-3
        drift = max(np.linalg.norm((features(amplitude * g) - base) / spread, axis=1).max() for g in (0.95, 1.05))
        return float(drift), float(np.linalg.norm((features(faint) - base) / spread, axis=1).max())

    ir = DetectorConfig().extractor("infrared")
    assert isinstance(ir, ImageFeatureConfig)
    drift, defect = moved(ir)
    assert defect > 2 * drift, (defect, drift)
    # the plain descriptors: the same drift moves patches farther than the defect does
    drift, defect = moved(ImageFeatureConfig(glint_filter=ir.glint_filter))
    assert drift > defect, (defect, drift)


def test_a_cloud_without_faces_gets_outward_normals_and_uniform_samples():
    from mulsen.detection.features import surface_samples

    rng = np.random.default_rng(4)
    points = rng.normal(size=(4000, 3))
    points = 20 * points / np.linalg.norm(points, axis=1, keepdims=True) + [5.0, -3.0, 2000.0]  # a sphere, r 20
    chosen, normals, spacing = surface_samples(points - points.mean(axis=0), None, 1000)
    radial = (points[chosen] - points.mean(axis=0)) / 20
    assert np.einsum("ij,ij->i", normals, radial).min() > 0.95  # outward, from 30 neighbours each
    assert len(chosen) == 1000 and spacing == pytest.approx(np.sqrt(4 * np.pi * 400 / 1000), rel=0.15)
