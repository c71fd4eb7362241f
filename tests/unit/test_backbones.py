"""Pretrained backbones in pure torch: official weight layouts load strictly; features are deterministic."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mulsen.core.errors import MulsenError

torch = pytest.importorskip("torch")

from mulsen.detection.backbones import (  # noqa: E402
    PointMAEExtractor,
    ViTExtractor,
    farthest_point_sample,
    point_mae,
    vision_transformer,
)


def _random_state(module, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=generator) * 0.05 if v.is_floating_point() else v.clone())
            for k, v in module.state_dict().items()}


@pytest.mark.slow
def test_vit_loads_the_timm_dino_layout_and_gives_28x28_tokens(tmp_path: Path):
    state = _random_state(vision_transformer(), 1)
    path = tmp_path / "vit_base_patch8_224.dino.pth"
    torch.save({**state, "head.weight": torch.zeros(1000, 768)}, path)  # classifier heads are ignored
    extractor = ViTExtractor(str(path))
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    tokens, grid = extractor(image)
    assert tokens.shape == (784, 768) and grid == (28, 28) and tokens.dtype == np.float32
    again, _ = ViTExtractor(str(path))(image)
    np.testing.assert_array_equal(tokens, again)
    random_init, _ = ViTExtractor("random")(image)
    assert not np.allclose(tokens, random_init)  # the file's weights are really used
    gray, _ = extractor(image.mean(axis=2).astype(np.uint8))  # IR: gray replicated to 3 channels
    assert gray.shape == (784, 768)


def test_wrong_or_missing_weights_are_refused_by_name(tmp_path: Path):
    state = _random_state(vision_transformer(), 2)
    del state["blocks.11.mlp.fc2.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(MulsenError, match=r"partial.pth: does not fit the network: 1 missing .*blocks.11.mlp.fc2"):
        ViTExtractor(str(tmp_path / "partial.pth"))
    with pytest.raises(MulsenError, match="weights file not found"):
        ViTExtractor(str(tmp_path / "nothing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(MulsenError, match="not a readable weights file"):
        ViTExtractor(str(tmp_path / "junk.pth"))
    from mulsen.detection.features import ImageFeatureConfig, image_features

    with pytest.raises(MulsenError, match="needs its weights as a local file"):
        image_features(np.zeros((8, 8, 3), np.uint8), ImageFeatureConfig(backbone="vit_base_patch8_224.dino"))


@pytest.mark.slow
def test_point_mae_loads_the_official_checkpoint_layout_and_is_deterministic(tmp_path: Path):
    encoder = _random_state(point_mae(), 3)
    official = {f"module.MAE_encoder.{k}": v for k, v in encoder.items()}
    official["module.MAE_decoder.blocks.blocks.0.norm1.weight"] = torch.ones(384)  # pretraining-only parts
    official["module.mask_token"] = torch.zeros(1, 1, 384)
    path = tmp_path / "pointmae_pretrain.pth"
    torch.save({"base_model": official, "epoch": 300}, path)
    rng = np.random.default_rng(0)
    vertices = rng.normal(0, 5, (3000, 3)) + [100.0, -40.0, 2000.0]  # scanner millimetres
    extractor = PointMAEExtractor(str(path), groups=64, group_size=32)
    features, centres = extractor(vertices)
    assert features.shape == (64, 1152) and centres.shape == (64, 3)
    np.testing.assert_allclose(centres[0], vertices[0])  # FPS starts at index 0, centres back in mm
    again, _ = PointMAEExtractor(str(path), groups=64, group_size=32)(vertices)
    np.testing.assert_array_equal(features, again)  # eval mode: no DropPath, BatchNorm on running statistics
    scaled, _ = extractor(vertices * 3.0)  # the unit-sphere normalisation makes features scale-free
    np.testing.assert_allclose(scaled, features, atol=1e-4)
    broken = {k: v for k, v in official.items() if "encoder.second_conv.3" not in k}
    torch.save({"base_model": broken}, tmp_path / "broken.pth")
    with pytest.raises(MulsenError, match="2 missing"):
        PointMAEExtractor(str(tmp_path / "broken.pth"))


def test_farthest_point_sampling_matches_the_definition():
    points = np.random.default_rng(5).uniform(-1, 1, (200, 3))
    chosen = farthest_point_sample(points, 10)
    assert chosen[0] == 0
    for k in range(1, 10):
        distance = np.min(np.linalg.norm(points[:, None] - points[chosen[:k]][None], axis=2), axis=1)
        assert chosen[k] == np.argmax(distance)


@pytest.mark.slow
def test_the_detector_trains_with_pretrained_backbones(tmp_path: Path, small_dataset):
    from mulsen.dataset.reader import MulsenDataset
    from mulsen.detection.features import ImageFeatureConfig, PointFeatureConfig
    from mulsen.detection.model import DetectorConfig, TripleADModel

    torch.save(_random_state(vision_transformer(), 4), tmp_path / "vit.pth")
    dataset = MulsenDataset(small_dataset)
    category = dataset.categories[0]
    config = DetectorConfig(modalities=("rgb", "pointcloud"),
                            image=ImageFeatureConfig(backbone="vit_base_patch8_224.dino",
                                                     weights=str(tmp_path / "vit.pth")),
                            points=PointFeatureConfig(backbone="point_mae", weights="random"))
    records = dataset.records(category, "train") + [r for r in dataset.records(category, "test")
                                                    if r.key.defect_type == "good"]  # five normal samples
    model = TripleADModel(category, config).fit(dataset.load, records)
    assert model.banks["rgb"].features.shape[1] == 768 and model.banks["pointcloud"].features.shape[1] == 1152
    saved = model.save(tmp_path / "models" / "model")
    loaded = TripleADModel.load(saved)
    assert loaded.config.image.backbone == "vit_base_patch8_224.dino"
    # self-contained: the weights are referenced relative to the folder, with their hash
    meta = json.loads((saved / "model.json").read_text())
    assert meta["config"]["image"]["weights"] == "../../vit.pth" and len(meta["weights"]["image"]["sha256"]) == 64
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "models", moved / "models")
    shutil.copy(tmp_path / "vit.pth", moved / "vit.pth")
    data = dataset.load(records[0])
    again = TripleADModel.load(moved / "models" / "model")
    assert again.config.image.weights == str((moved / "vit.pth").resolve())
    assert again.score(data)["rgb"].score == loaded.score(data)["rgb"].score
    with open(moved / "vit.pth", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(MulsenError, match="differs from the one the model was trained with"):
        TripleADModel.load(moved / "models" / "model")
    (moved / "vit.pth").unlink()
    with pytest.raises(MulsenError, match=r"vit\.pth: weights file of the model .* not found"):
        TripleADModel.load(moved / "models" / "model")
