"""A model's configuration: `<repository>/<model>/config.toml`, read with tomllib.

A leaf of the package (it imports only the codec and the errors): the backends,
the batcher and the validation all read a ModelConfig.

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

    [dynamic_batching]            # optional; these are the defaults
    max_queue_delay_us = 0        # how long a request may wait for others to join it
    preferred_batch_size = []     # batch sizes to cut at, when the queue holds more
    max_queue_size = 1024         # requests waiting beyond this are refused (429)
    inline_execute_us = 200       # run on the event loop if idle and this cheap (0: never)

    [tokenizer]                   # optional: the one BYTES input is text, tokenized here
    file = "tokenizer.json"       # in each version folder, beside the artifact
    max_tokens = 256              # longer texts are truncated
    max_text_bytes = 16384        # a longer element is refused (400) before the batcher

Optional: `default_model_filename` (else the backend's default, e.g. model.onnx).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem_inference import codec
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
    "dynamic_batching",
    "tokenizer",
}
# No delay by default: a request that finds the model idle runs at once, and under
# load batches grow by themselves while the previous batch runs (batcher.py).
DEFAULT_MAX_QUEUE_DELAY_US = 0
# A model whose calls take less than this (a moving average) runs on the event loop
# when nothing else waits: cheaper than the hand-off to its thread (batcher.py).
DEFAULT_INLINE_EXECUTE_US = 200
# Enough for 8 full batches of the digits model waiting; beyond it a caller is told
# to back off (429) rather than wait behind work that outlives its deadline.
DEFAULT_MAX_QUEUE_SIZE = 1024
# A sentence is tens of bytes; 16 KiB is pages of text, far past what 256 tokens keep,
# so a longer element is a mistake (or an attack) and costs a 400, not tokenizer time.
DEFAULT_MAX_TEXT_BYTES = 16384
DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output as the model declares it."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DynamicBatching:
    """The [dynamic_batching] table: how the batcher merges requests (batcher.py)."""

    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US
    preferred_batch_size: tuple[int, ...] = ()
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    inline_execute_us: int = DEFAULT_INLINE_EXECUTE_US


@dataclass(frozen=True, slots=True)
class Tokenizer:
    """The [tokenizer] table: the model's one BYTES input is UTF-8 text, which the
    service tokenizes (text.py) into the graph's input_ids and attention_mask."""

    file: str = "tokenizer.json"
    max_tokens: int = DEFAULT_MAX_TOKENS
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES


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
    dynamic_batching: DynamicBatching = field(default_factory=DynamicBatching)
    tokenizer: Tokenizer | None = None

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.name == name), None)


def read_config(model_dir: Path) -> ModelConfig:
    """The config of the model in `model_dir`; ModelConfigError says what is wrong and where."""
    return parse_config(read_raw(model_dir), model_dir)


def read_raw(model_dir: Path) -> dict[str, Any]:
    """`model_dir`'s config.toml as a table, unchecked; empty when there is none (a
    model whose config the repository completes from its artifact)."""
    path = model_dir / CONFIG_FILENAME
    if not path.exists():
        return {}
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ModelConfigError(f"{path}: {err}") from err


def parse_config(raw: dict[str, Any], model_dir: Path) -> ModelConfig:
    """`raw` (a config.toml's table, perhaps completed) checked as the config of the
    model in `model_dir`."""
    try:
        return _parse(raw, model_dir.name)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelConfigError(f"{model_dir / CONFIG_FILENAME}: {err}") from err


def to_toml(config: ModelConfig) -> str:
    """`config` as a complete config.toml (what `init-model` writes for review)."""
    lines = [
        f"name = {_toml_str(config.name)}",
        f"backend = {_toml_str(config.backend)}",
        f"platform = {_toml_str(config.platform)}",
        f"max_batch_size = {config.max_batch_size}",
    ]
    if config.default_model_filename:
        lines.append(f"default_model_filename = {_toml_str(config.default_model_filename)}")
    for key, specs in (("inputs", config.inputs), ("outputs", config.outputs)):
        for spec in specs:
            shape = ", ".join(str(d) for d in spec.shape)
            lines += [
                "",
                f"[[{key}]]",
                f"name = {_toml_str(spec.name)}",
                f"datatype = {_toml_str(spec.datatype)}",
                f"shape = [{shape}]",
            ]
    if config.options:
        lines += ["", "[options]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in sorted(config.options.items())]
    policy = config.dynamic_batching
    preferred = ", ".join(str(n) for n in policy.preferred_batch_size)
    lines += [
        "",
        "[dynamic_batching]",
        f"max_queue_delay_us = {policy.max_queue_delay_us}",
        f"preferred_batch_size = [{preferred}]",
        f"max_queue_size = {policy.max_queue_size}",
    ]
    return "\n".join(lines) + "\n"


def _toml_str(text: str) -> str:
    # A TOML basic string is a JSON string for the characters that matter here.
    return json.dumps(text, ensure_ascii=False)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return _toml_str(str(value))


def _parse(raw: dict[str, Any], folder: str) -> ModelConfig:
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    name = _str(raw, "name")
    if name != folder:
        raise ValueError(f'name "{name}" differs from the folder\'s name "{folder}"')
    # Which backends exist is the backends package's business; the repository checks
    # the name against it (so this module, which the backends import, imports none).
    backend = _str(raw, "backend")
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
        dynamic_batching=_dynamic_batching(raw.get("dynamic_batching", {}), max_batch_size),
        tokenizer=_tokenizer(raw.get("tokenizer"), inputs, max_batch_size),
    )


def _tokenizer(
    table: object, inputs: tuple[TensorSpec, ...], max_batch_size: int
) -> Tokenizer | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise TypeError("tokenizer must be a table")
    unknown = set(table) - {"file", "max_tokens", "max_text_bytes"}
    if unknown:
        raise ValueError(f"tokenizer: unknown keys {sorted(unknown)}")
    if max_batch_size == 0 or [(t.datatype, t.shape) for t in inputs] != [("BYTES", (-1,))]:
        raise ValueError(
            "tokenizer: the model must batch and take one input, BYTES with shape [-1] "
            "(one text per row)"
        )
    file = table.get("file", "tokenizer.json")
    if not isinstance(file, str) or not file or "/" in file:
        raise ValueError("tokenizer.file must be a file name")
    max_tokens = _positive(table, "max_tokens", DEFAULT_MAX_TOKENS)
    max_text_bytes = _positive(table, "max_text_bytes", DEFAULT_MAX_TEXT_BYTES)
    return Tokenizer(file=file, max_tokens=max_tokens, max_text_bytes=max_text_bytes)


def _positive(table: Mapping[str, Any], key: str, default: int) -> int:
    value = table.get(key, default)
    if not _is_int(value) or value <= 0:
        raise ValueError(f"tokenizer.{key} must be an integer > 0")
    return int(value)


def _dynamic_batching(table: object, max_batch_size: int) -> DynamicBatching:
    if not isinstance(table, dict):
        raise TypeError("dynamic_batching must be a table")
    unknown = set(table) - {
        "max_queue_delay_us",
        "preferred_batch_size",
        "max_queue_size",
        "inline_execute_us",
    }
    if unknown:
        raise ValueError(f"dynamic_batching: unknown keys {sorted(unknown)}")
    delay = table.get("max_queue_delay_us", DEFAULT_MAX_QUEUE_DELAY_US)
    if not _is_int(delay) or delay < 0:
        raise ValueError("dynamic_batching.max_queue_delay_us must be an integer >= 0")
    queue_size = table.get("max_queue_size", DEFAULT_MAX_QUEUE_SIZE)
    if not _is_int(queue_size) or queue_size <= 0:
        raise ValueError("dynamic_batching.max_queue_size must be an integer > 0")
    inline = table.get("inline_execute_us", DEFAULT_INLINE_EXECUTE_US)
    if not _is_int(inline) or inline < 0:
        raise ValueError("dynamic_batching.inline_execute_us must be an integer >= 0")
    preferred = table.get("preferred_batch_size", [])
    if not isinstance(preferred, list) or not all(
        _is_int(n) and 0 < n <= max(max_batch_size, 1) for n in preferred
    ):
        raise ValueError(
            "dynamic_batching.preferred_batch_size must list batch sizes from 1 to "
            f"max_batch_size ({max_batch_size})"
        )
    return DynamicBatching(
        max_queue_delay_us=delay,
        preferred_batch_size=tuple(sorted(set(preferred))),
        max_queue_size=queue_size,
        inline_execute_us=inline,
    )


def _is_int(value: object) -> bool:
    # TOML booleans are Python bools, which are ints too.
    return isinstance(value, int) and not isinstance(value, bool)


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
