"""A model's configuration: `<repository>/<model>/config.toml`, read with tomllib.

The format follows Triton's model configuration, in TOML::

    name = "digits"               # must equal the folder's name
    backend = "onnxruntime"       # onnxruntime | pytorch
    platform = "onnxruntime_onnx" # reported by ModelMetadata; must suit the backend
    max_batch_size = 128          # > 0: the first dimension of every tensor is the batch

    [[inputs]]
    name = "pixels"
    datatype = "FP32"
    shape = [-1, 64]              # -1: any size (the batch, when batching)

    [[outputs]]
    name = "probabilities"
    datatype = "FP32"
    shape = [-1, 10]

    [options]                     # backend-specific, checked by the backend
    intra_op_num_threads = 1

Optional: `default_model_filename` (else the backend's default, e.g. model.onnx).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem_inference import codec
from tandem_inference.backends import BACKEND_NAMES
from tandem_inference.errors import InvalidArgument, ModelConfigError

CONFIG_FILENAME = "config.toml"
_KEYS = {
    "name",
    "backend",
    "platform",
    "max_batch_size",
    "inputs",
    "outputs",
    "options",
    "default_model_filename",
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output as the model declares it."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One model's config.toml, checked."""

    name: str
    backend: str
    platform: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    default_model_filename: str | None = None

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.name == name), None)


def read_config(model_dir: Path) -> ModelConfig:
    """The config of the model in `model_dir`; ModelConfigError says what is wrong and where."""
    path = model_dir / CONFIG_FILENAME
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ModelConfigError(f"{path}: {err}") from err
    try:
        return _parse(raw, model_dir.name)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelConfigError(f"{path}: {err}") from err


def _parse(raw: dict[str, Any], folder: str) -> ModelConfig:
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    name = _str(raw, "name")
    if name != folder:
        raise ValueError(f'name "{name}" differs from the folder\'s name "{folder}"')
    backend = _str(raw, "backend")
    if backend not in BACKEND_NAMES:
        raise ValueError(f'backend "{backend}" is not one of {", ".join(BACKEND_NAMES)}')
    max_batch_size = raw.get("max_batch_size", 0)
    if not isinstance(max_batch_size, int) or max_batch_size < 0:
        raise ValueError("max_batch_size must be an integer >= 0")
    inputs = _tensors(raw, "inputs", max_batch_size)
    outputs = _tensors(raw, "outputs", max_batch_size)
    options = raw.get("options", {})
    if not isinstance(options, dict):
        raise TypeError("options must be a table")
    filename = raw.get("default_model_filename")
    if filename is not None and (not isinstance(filename, str) or "/" in filename):
        raise ValueError("default_model_filename must be a file name")
    return ModelConfig(
        name=name,
        backend=backend,
        platform=_str(raw, "platform"),
        max_batch_size=max_batch_size,
        inputs=inputs,
        outputs=outputs,
        options=options,
        default_model_filename=filename,
    )


def _str(table: Mapping[str, Any], key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


def _tensors(raw: Mapping[str, Any], key: str, max_batch_size: int) -> tuple[TensorSpec, ...]:
    entries = raw.get(key)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"at least one [[{key}]] is required")
    specs = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise TypeError(f"each [[{key}]] must be a table")
        name = _str(entry, "name")
        unknown = set(entry) - {"name", "datatype", "shape"}
        if unknown:
            raise ValueError(f'{key} "{name}": unknown keys {sorted(unknown)}')
        datatype = _str(entry, "datatype")
        try:
            codec.lookup(datatype)
        except InvalidArgument as err:
            raise ValueError(f'{key} "{name}": {err.message}') from None
        shape = entry.get("shape")
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(d, int) and (d == -1 or d > 0) for d in shape)
        ):
            raise ValueError(f'{key} "{name}": shape must list dimensions > 0 or -1')
        if max_batch_size > 0 and shape[0] != -1:
            raise ValueError(
                f'{key} "{name}": with max_batch_size > 0 the first dimension is the batch '
                "and must be -1"
            )
        specs.append(TensorSpec(name, datatype, tuple(shape)))
    if len({s.name for s in specs}) != len(specs):
        raise ValueError(f"{key} names must be unique")
    return tuple(specs)
