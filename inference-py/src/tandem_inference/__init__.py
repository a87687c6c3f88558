"""Tandem's Python inference service: the Open Inference Protocol (v2) in front of
ONNX Runtime and PyTorch models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tandem-inference")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
