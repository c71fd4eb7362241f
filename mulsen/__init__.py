"""MulSen toolkit: multi-sensor industrial anomaly detection from the lab bench to a trained detector."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mulsen-toolkit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

from typing import TYPE_CHECKING

from mulsen.core.lazy import lazy_exports

if TYPE_CHECKING:
    from mulsen.dataset.reader import MulsenDataset
    from mulsen.detection.config import DetectorConfig
    from mulsen.detection.inspector import Detector

# the inspector's front door (``from mulsen import Detector``), imported only when used
_EXPORTS = {"Detector": "detection.inspector", "DetectorConfig": "detection.config",
            "MulsenDataset": "dataset.reader"}
__all__ = ["Detector", "DetectorConfig", "MulsenDataset", "__version__"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
