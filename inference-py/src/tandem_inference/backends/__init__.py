"""Model backends: one interface, one implementation per runtime.

The runtimes are imported only when a model needs them, so a repository of ONNX
models is served without torch installed.
"""

from __future__ import annotations

import importlib

from tandem_inference.backends.base import Backend
from tandem_inference.errors import ModelConfigError

__all__ = ["BACKEND_NAMES", "Backend", "backend_class"]

# backend name in config.toml -> "module:class"
_BACKENDS = {
    "onnxruntime": "tandem_inference.backends.onnxruntime:OnnxRuntimeBackend",
    "pytorch": "tandem_inference.backends.pytorch:PyTorchBackend",
}
BACKEND_NAMES = tuple(_BACKENDS)


def backend_class(name: str) -> type[Backend]:
    """The class implementing backend `name`, imported on first use."""
    try:
        module_name, class_name = _BACKENDS[name].split(":")
    except KeyError:
        raise ModelConfigError(f'unknown backend "{name}"') from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ModelConfigError(
            f'backend "{name}" needs a package that is not installed: {err}'
        ) from err
    cls: type[Backend] = getattr(module, class_name)
    return cls
