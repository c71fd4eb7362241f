"""MulSen toolkit: multi-sensor industrial anomaly detection from the lab bench to a trained detector."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mulsen-toolkit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
