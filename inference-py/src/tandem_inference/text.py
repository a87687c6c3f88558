"""Text models: a model whose one BYTES input is UTF-8 text, tokenized in the service.

A config.toml with a [tokenizer] table (model_config.py) declares the input the
client sends, `text` BYTES [-1]; the graph behind it takes the token ids instead.
`TextBackend` wraps the graph's own backend (ONNX Runtime or PyTorch) and, inside
each model call, tokenizes the whole batch with the `tokenizers` library
(`encode_batch`, in Rust, on the model's thread), so:

- truncation is at `max_tokens`, and each batch is padded to its own longest
  sequence (`enable_padding()` without a length), so a batch of short texts never
  pays for a long one that is not in it;
- tokenization is per batch, not per request: one call for the batch's texts
  (inference-py/scripts/measure_text.py measures the placements).

The texts were checked before the batcher (validation.check_texts): valid UTF-8 and
at most `max_text_bytes` each, so a bad element costs its caller a 400 and never
fails a batch.

The graph's inputs are `input_ids` and `attention_mask`, INT64 [batch, sequence],
in that order (the PyTorch backend passes them positionally).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Self

import numpy as np
from tokenizers import Tokenizer

from tandem_inference.backends import backend_class
from tandem_inference.backends.base import Backend
from tandem_inference.errors import ModelConfigError
from tandem_inference.model_config import TensorSpec

if TYPE_CHECKING:
    from pathlib import Path

    from tandem_inference.model_config import ModelConfig

GRAPH_INPUTS = (
    TensorSpec("input_ids", "INT64", (-1, -1)),
    TensorSpec("attention_mask", "INT64", (-1, -1)),
)


def graph_config(config: ModelConfig) -> ModelConfig:
    """`config` as the graph sees it: the token inputs in place of the text."""
    return dataclasses.replace(config, inputs=GRAPH_INPUTS, tokenizer=None)


def load_tokenizer(path: Path, max_tokens: int) -> Tokenizer:
    """A tokenizer.json that truncates at `max_tokens` and pads each batch to its longest."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception for a bad file
        raise ModelConfigError(f"{path}: {err}") from err
    tokenizer.enable_truncation(max_length=max_tokens)
    # No length: pad to the batch's longest sequence (tokenizers' BatchLongest).
    tokenizer.enable_padding()
    return tokenizer


def tokenize(tokenizer: Tokenizer, texts: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's inputs for a batch of texts (bytes, already checked as UTF-8)."""
    encodings = tokenizer.encode_batch([bytes(t).decode() for t in texts])
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }


class TextBackend(Backend):
    """The graph's backend, fed by the tokenizer; the platform is the graph's."""

    platforms = ("onnxruntime_onnx", "pytorch_export")
    default_filename = "model.onnx"

    def __init__(self, graph: Backend, tokenizer: Tokenizer, text_input: str) -> None:
        self._graph = graph
        self._tokenizer = tokenizer
        self._text_input = text_input

    @classmethod
    def load(cls, artifact: Path, config: ModelConfig) -> Self:
        if config.tokenizer is None:
            raise ModelConfigError(f'model "{config.name}": no [tokenizer] table')
        path = artifact.parent / config.tokenizer.file
        if not path.is_file():
            raise ModelConfigError(f'model "{config.name}": tokenizer {path} is missing')
        graph = backend_class(config.backend).load(artifact, graph_config(config))
        tokenizer = load_tokenizer(path, config.tokenizer.max_tokens)
        return cls(graph, tokenizer, config.inputs[0].name)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._graph.run(tokenize(self._tokenizer, inputs[self._text_input]))
