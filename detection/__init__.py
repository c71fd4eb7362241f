"""MulSen-TripleAD detector: per-modality memory banks, fusion and thresholds, metrics, inspection."""

from typing import TYPE_CHECKING

from mulsen.core.lazy import lazy_exports

if TYPE_CHECKING:
    from .config import DetectorConfig, all_combinations, combo_name, paper_config, parse_modalities
    from .detect import Detection, DetectionReport, load_capture
    from .evaluate import CategoryResult, EvaluationResults, evaluate_category
    from .features import ImageFeatureConfig, PointFeatureConfig
    from .inspector import Detector
    from .memory_bank import MemoryBank
    from .metrics import aupr, aupro, auroc, f1_max
    from .model import TripleADModel

_EXPORTS = {
    "DetectorConfig": "config",
    "all_combinations": "config",
    "combo_name": "config",
    "parse_modalities": "config",
    "paper_config": "config",
    "ImageFeatureConfig": "features",
    "PointFeatureConfig": "features",
    "TripleADModel": "model",
    "Detector": "inspector",
    "Detection": "detect",
    "DetectionReport": "detect",
    "load_capture": "detect",
    "MemoryBank": "memory_bank",
    "CategoryResult": "evaluate",
    "EvaluationResults": "evaluate",
    "evaluate_category": "evaluate",
    "aupr": "metrics",
    "aupro": "metrics",
    "auroc": "metrics",
    "f1_max": "metrics",
}
__all__ = [
    "CategoryResult", "Detection", "DetectionReport", "Detector", "DetectorConfig", "EvaluationResults",
    "ImageFeatureConfig", "MemoryBank", "PointFeatureConfig", "TripleADModel", "all_combinations", "aupr", "aupro",
    "auroc", "combo_name", "evaluate_category", "f1_max", "load_capture", "paper_config", "parse_modalities",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
