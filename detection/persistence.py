"""Model folders: ``model.safetensors`` (banks and calibration scores) + ``model.json`` (a ``ModelRecord``).

A model folder is self-contained and tamper-evident: ``model.json`` records the SHA-256 of the arrays file,
and pretrained weights are referenced relative to the folder with their own SHA-256, so a folder can be
moved with its weights, and a changed byte in either is refused by name instead of scoring silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mulsen import __version__
from mulsen.core.atomic import atomic_path
from mulsen.core.errors import DataFormatError, MulsenError
from mulsen.core.records import Record, RecordError

from .config import DetectorConfig
from .detect import InputProfile
from .features import RANDOM_WEIGHTS
from .fusion import Calibration
from .memory_bank import MemoryBank

MODEL_FILE = "model.json"
# what models written before the paper preset (format 3 and older) computed, setting by setting
PRE_PAPER_SETTINGS = {"preset": "default", "coreset": "fast", "object_score": "topk", "bank_views": "own",
                      "map_protocol": "native", "gate_lambda": [1.0, 1.0, 1.0]}
ARRAYS_FILE = "model.safetensors"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class WeightsFile:
    path: str  # relative to the model folder (absolute only across drives)
    sha256: str


@dataclass(frozen=True)
class ModelRecord(Record):
    """``model.json``: what a model folder holds and how it was trained."""

    FORMAT = "mulsen-model"
    VERSION = 4  # 3: banks may carry per-entry tolerances; 4: the paper's settings (preset, coreset, ...)
    WHAT = "model description"

    category: str
    config: DetectorConfig
    bank_sizes: dict[str, int]
    arrays_sha256: str
    toolkit_version: str = __version__
    weights: dict[str, WeightsFile] = field(default_factory=dict)  # "image" | "infrared" | "points" -> file
    inputs: InputProfile | None = None  # the range of inputs it was trained on (absent in older models)

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Version 2 models were trained before bank tolerances existed (their banks score without them) and
        before the IR gain and compression options (absent: off, as they were trained); versions 2 and 3
        before the paper's settings (absent: the default computation, which they were trained with)."""
        if data.get("format") not in (f"{cls.FORMAT}/2", f"{cls.FORMAT}/3"):
            return super().migrate(data)
        config = data.get("config")
        if isinstance(config, dict):
            if data.get("format") == f"{cls.FORMAT}/2":
                config = {"bank_tolerance": False, **config}
            config = {**PRE_PAPER_SETTINGS, **config}
            if isinstance(config.get("points"), dict):
                config["points"] = {"frame": "unit_sphere", "train_mode": False, "normalisation": "per_dimension",
                                    **config["points"]}
            for extractor in ("image", "infrared"):  # every bank was standardised per dimension then
                if isinstance(config.get(extractor), dict):
                    config[extractor] = {"normalisation": "per_dimension", **config[extractor]}
            data = {**data, "config": config}
        return {**data, "format": cls.tag()}

    @classmethod
    def from_dict(cls, data: object) -> ModelRecord:
        if isinstance(data, dict) and "format" not in data and "format_version" in data:
            raise RecordError("format_version", f"model format {data['format_version']!r} is not supported by this "
                              f"toolkit (expects {cls.tag()}); retrain with 'mulsen train'")
        versions = f"model written by {_written_by(data)}, this is mulsen-toolkit {__version__}"
        if isinstance(data, dict) and data.get("format") == cls.tag() and isinstance(data.get("config"), dict):
            missing = _missing_settings(data["config"])
            if missing:  # a default may have changed since: never fill a trained model's setting silently
                raise RecordError(f"config.{missing[0]}", f"missing ({versions})")
        try:
            return super().from_dict(data)
        except RecordError as exc:
            raise RecordError("", f"{exc} ({versions})") from None


def _written_by(data: object) -> str:
    version = data.get("toolkit_version") if isinstance(data, dict) else None
    return f"mulsen-toolkit {version}" if isinstance(version, str) else "an unknown toolkit version"


def _missing_settings(config: dict[str, Any]) -> list[str]:
    """Config keys (dotted) a current model file must hold: every field whose default is not None."""
    def missing(cls: type, values: dict[str, Any], prefix: str) -> list[str]:
        out = []
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if f.name not in values:
                if default is not None:
                    out.append(prefix + f.name)
            elif dataclasses.is_dataclass(default) and isinstance(values[f.name], dict):
                out += missing(type(default), values[f.name], f"{prefix}{f.name}.")
        return out

    return missing(DetectorConfig, config, "")


def _portable(extractor, folder: Path, name: str, weights: dict[str, WeightsFile]):
    """The extractor config with its weights path made relative to the model folder (hash recorded)."""
    if extractor is None or not extractor.weights or extractor.weights == RANDOM_WEIGHTS:
        return extractor
    source = Path(extractor.weights).resolve()
    if not source.is_file():
        raise MulsenError(f"{source}: weights file not found")
    try:
        relative = os.path.relpath(source, folder.resolve())
    except ValueError:  # another drive (Windows): keep it absolute
        relative = str(source)
    weights[name] = WeightsFile(relative, sha256_file(source))
    return dataclasses.replace(extractor, weights=relative)


def _resolved(extractor, folder: Path, name: str, record: ModelRecord, device: str | None):
    if extractor is None:
        return None
    changes: dict[str, object] = {}
    if device is not None:
        changes["device"] = device
    if extractor.weights and extractor.weights != RANDOM_WEIGHTS:
        entry = record.weights.get(name)
        path = (folder / extractor.weights).resolve()
        if entry is None:
            raise DataFormatError(folder / MODEL_FILE, f"{name} weights {extractor.weights} have no recorded hash")
        if not path.is_file():
            raise MulsenError(f"{path}: weights file of the model in {folder} not found (keep it at "
                              f"{extractor.weights} relative to the model folder)")
        if sha256_file(path) != entry.sha256:
            raise MulsenError(f"{path}: weights file differs from the one the model was trained with (SHA-256)")
        changes["weights"] = str(path)
    return dataclasses.replace(extractor, **changes) if changes else extractor


@dataclass(frozen=True)
class LoadedModel:
    category: str
    config: DetectorConfig
    banks: dict[str, MemoryBank]
    calibration: Calibration
    inputs: InputProfile | None
    arrays_sha256: str
    toolkit_version: str


def save_model(folder: str | Path, category: str, config: DetectorConfig, banks: dict[str, MemoryBank],
               calibration: Calibration, inputs: InputProfile | None = None) -> Path:
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"holdout_scores": calibration.holdout_scores, "insample_scores": calibration.insample_scores}
    for m, bank in banks.items():
        tensors[f"{m}.features"] = bank.features
        tensors[f"{m}.mean"] = bank.mean
        tensors[f"{m}.scale"] = bank.scale
        if bank.tolerance is not None:
            tensors[f"{m}.tolerance"] = bank.tolerance
    with atomic_path(folder / ARRAYS_FILE) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp))
        digest = sha256_file(tmp)
    weights: dict[str, WeightsFile] = {}
    portable = dataclasses.replace(config, image=_portable(config.image, folder, "image", weights),
                                   infrared=_portable(config.infrared, folder, "infrared", weights),
                                   points=_portable(config.points, folder, "points", weights))
    ModelRecord(category, portable, {m: len(b.features) for m, b in banks.items()}, digest,
                weights=weights, inputs=inputs).write(folder / MODEL_FILE)
    return folder


def load_model(folder: str | Path, modalities: tuple[str, ...] | None = None, device: str | None = None
               ) -> LoadedModel:
    """Everything a model folder holds, checked; ``device`` overrides the one it was trained on."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(folder)
    if not folder.is_dir():
        raise MulsenError(f"{folder}: model folder not found")
    record = ModelRecord.read(folder / MODEL_FILE)
    arrays = folder / ARRAYS_FILE
    if not arrays.is_file():
        raise MulsenError(f"{arrays}: model arrays file not found")
    if sha256_file(arrays) != record.arrays_sha256:
        raise MulsenError(f"{arrays}: unreadable or tampered model file (SHA-256 differs from {MODEL_FILE})")
    config = record.config
    config = dataclasses.replace(
        config, image=_resolved(config.image, folder, "image", record, device),
        infrared=_resolved(config.infrared, folder, "infrared", record, device),
        points=_resolved(config.points, folder, "points", record, device))
    if modalities and not set(modalities) <= set(config.modalities):
        raise MulsenError(f"{folder / MODEL_FILE}: model has modalities {', '.join(config.modalities)}, "
                          f"asked for {', '.join(modalities)}")
    try:
        tensors = load_file(str(arrays))
    except (SafetensorError, OSError, ValueError) as exc:
        raise MulsenError(f"{arrays}: unreadable or tampered model file ({exc})") from None
    banks = {}
    try:
        for m in config.modalities:
            if config.bank_tolerance != (f"{m}.tolerance" in tensors):
                raise KeyError(f"{m}.tolerance")
            banks[m] = MemoryBank(tensors[f"{m}.features"], tensors[f"{m}.mean"], tensors[f"{m}.scale"],
                                  tensors.get(f"{m}.tolerance"))
            if len(banks[m].features) != record.bank_sizes.get(m):
                raise KeyError(f"{m} bank size")
        calibration = Calibration(config.score_columns, tensors["holdout_scores"], tensors["insample_scores"])
    except (KeyError, ValueError) as exc:
        raise MulsenError(f"{folder}: model arrays do not match {MODEL_FILE} ({exc})") from None
    if calibration.holdout_scores.shape[1:] != (len(config.score_columns),) \
            or calibration.insample_scores.shape[1:] != (len(config.score_columns),):
        raise MulsenError(f"{folder}: model arrays do not match {MODEL_FILE} (calibration scores)")
    return LoadedModel(record.category, config, banks, calibration, record.inputs, record.arrays_sha256,
                       record.toolkit_version)

