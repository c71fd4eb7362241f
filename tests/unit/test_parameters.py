"""One definition per parameter: configs validate themselves, the CLI takes its defaults from them, and
options that used to be silently ignored or capped now act."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mulsen.acquisition.lockin import FREQUENCY_RANGE_HZ, LockInWindow
from mulsen.acquisition.thermography import LockInSettings
from mulsen.cli import build_parser, main
from mulsen.core.errors import ConfigError, MulsenError
from mulsen.dataset.reader import MulsenDataset
from mulsen.dataset.writer import DatasetWriter
from mulsen.detection.config import DetectorConfig
from mulsen.detection.features import ImageFeatureConfig
from mulsen.detection.memory_bank import MemoryBank
from mulsen.detection.model import TripleADModel
from tests.conftest import make_content


@pytest.mark.parametrize(("changes", "message"), [
    ({"coreset_ratio": 0}, "coreset ratio must be in"),
    ({"coreset_ratio": 1.5}, "coreset ratio must be in"),
    ({"max_bank_size": 0}, "maximum bank size"),
    ({"fusion": "mean"}, "unknown fusion 'mean'"),
    ({"gate_fit": "train"}, "unknown gate fit"),
    ({"false_alarm_rate": 1.0}, "false-alarm rate"),
    ({"modalities": ("rgb", "sound")}, "modalities"),
])
def test_detector_config_refuses_out_of_range_values(changes: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        DetectorConfig(**changes)
    with pytest.raises(ConfigError, match="unknown image backbone"):
        ImageFeatureConfig(backbone="resnet")
    with pytest.raises(ConfigError, match="stride >= 1"):
        ImageFeatureConfig(stride=0)


def test_the_lockin_frequency_range_is_checked_once_for_settings_and_window():
    low, high = FREQUENCY_RANGE_HZ
    for make in (lambda f: LockInSettings(frequency_hz=f, frame_rate_hz=100 * f + 1),
                 lambda f: LockInWindow(f, 0.0, 1, 2)):
        make(low)
        make(high)
        for bad in (low / 2, high * 2):
            with pytest.raises(ConfigError, match=f"must be {low:g}-{high:g} Hz"):
                make(bad)


def test_cli_defaults_are_the_dataclass_defaults(tmp_path: Path):
    from mulsen.commands.inspect import detector_config
    from mulsen.detection.config import paper_config

    def config(*options: str) -> DetectorConfig:
        return detector_config(build_parser().parse_args(["train", str(tmp_path), "--all", "--out",
                                                          str(tmp_path / "m"), "--device", "cpu", *options]))

    assert config() == DetectorConfig()
    assert config("--preset", "paper", "--image-weights", "v.pth", "--point-weights", "p.pth") == paper_config("v.pth",
                                                                                                               "p.pth")
    # an option given wins over the preset; the rest stays the preset's
    mixed = config("--preset", "paper", "--image-backbone", "handcrafted", "--point-backbone", "fpfh",
                   "--holdout-fraction", "0.2", "--gate-lambda", "0.1,1,1", "--point-mode", "eval")
    assert (mixed.holdout_fraction, mixed.gate_lambda, mixed.coreset, mixed.object_score) == (0.2, (0.1, 1, 1), "paper",
                                                                                             "paper")
    assert mixed.image.backbone == "handcrafted" and mixed.infrared is None  # one extractor for RGB and IR
    assert (mixed.points.backbone, mixed.points.frame, mixed.points.train_mode) == ("fpfh", "centred", False)
    with pytest.raises(MulsenError, match="needs its weights: give --image-weights FILE"):
        config("--preset", "paper", "--point-weights", "p.pth")
    capture = build_parser().parse_args(["capture", "ir", str(tmp_path / "ir"), "--sim", "s"])
    settings = LockInSettings()
    assert (capture.frequency, capture.periods, capture.settle, capture.fps, capture.power,
            capture.gray_reference_k) == (settings.frequency_hz, settings.periods, settings.settle_periods,
                                          settings.frame_rate_hz, settings.power_percent, settings.gray_reference_k)


def test_bad_parameters_are_one_line_errors(small_dataset: Path, tmp_path: Path, capsys):
    assert main(["train", str(small_dataset), "--all", "--out", str(tmp_path / "m"), "--coreset-ratio", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: coreset ratio must be in (0, 1], got 0"
    assert main(["capture", "ir", str(tmp_path / "ir"), "--sim", str(tmp_path), "--frequency", "5"]) == 2
    assert "lock-in frequency must be 0.01-2 Hz, got 5" in capsys.readouterr().err


def test_max_bank_size_caps_every_bank(tmp_path: Path):
    writer = DatasetWriter(tmp_path / "ds")
    for seed in range(6):
        writer.add("capsule", "train", "good", make_content(seed=seed))
    assert main(["train", str(tmp_path / "ds"), "--category", "capsule", "--out", str(tmp_path / "m"),
                 "--coreset-ratio", "1", "--max-bank-size", "37"]) == 0
    model = TripleADModel.load(tmp_path / "m" / "capsule")
    assert model.config.max_bank_size == 37 and {len(b.features) for b in model.banks.values()} == {37}
    with pytest.raises(ValueError, match="coreset ratio"):
        MemoryBank.fit([model.banks["rgb"].features], 0.0)


def test_a_saved_device_is_overridden_on_load(small_dataset: Path, tmp_path: Path):
    ds = MulsenDataset(small_dataset)
    records = ds.records("capsule", "train") + [r for r in ds.records("capsule", "test") if r.key.defect_type == "good"]
    config = DetectorConfig(modalities=("rgb",), infrared=ImageFeatureConfig(backbone="raw_patches"))
    folder = TripleADModel("capsule", config).fit(ds.load, records).save(tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    for extractor in ("image", "infrared"):  # as if trained on another machine's GPU
        meta["config"][extractor]["device"] = "cuda:1"
    (folder / "model.json").write_text(json.dumps(meta))
    assert TripleADModel.load(folder).config.image.device == "cuda:1"
    loaded = TripleADModel.load(folder, device="cpu")
    assert loaded.config.image.device == "cpu" and loaded.config.infrared is not None
    assert loaded.config.infrared.device == "cpu"


def test_the_dataset_layer_knows_how_many_normals_training_needs():
    """dataset.layout cannot import the detector (layering); its copy of the minimum must not drift."""
    from mulsen.dataset.layout import MIN_TRAINING_NORMALS
    from mulsen.detection.config import DetectorConfig

    assert DetectorConfig().min_holdout + 2 == MIN_TRAINING_NORMALS
