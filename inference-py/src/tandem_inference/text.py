"""Text models: a model whose one BYTES input is UTF-8 text, tokenized in the service.

A config.toml with a [tokenizer] table (model_config.py) declares the input the
client sends, `text` BYTES [-1]; the graph behind it takes the token ids instead.
`TextBackend` wraps the graph's own backend (ONNX Runtime or PyTorch) and, inside
each model call, tokenizes the whole batch with the `tokenizers` library
(`encode_batch`, in Rust, on the model's thread), so:

- truncation is at `max_tokens`;
- tokenization is per batch, not per request: one call for the batch's texts
  (inference-py/scripts/measure_text.py measures the placements);
- the batch is cut into buckets of similar length (`buckets`), and each bucket is
  padded to its own longest and run on its own. On CPU the encoder's cost grows
  with the padded tokens and batching saves almost nothing, so one long text in a
  dynamic batch of short ones would make all of them pay for its length: measured
  with measure_text.py on texts of mixed lengths, batches of 32 padded to their
  longest carried 3.4 padding tokens per real one (112.5 ms of model per text);
  bucketed, 0.1 (21.4 ms per text, 5.2 times less).

The texts were checked before the batcher (validation.check_texts): valid UTF-8 and
at most `max_text_bytes` each, so a bad element costs its caller a 400 and never
fails a batch.

The graph's inputs are `input_ids` and `attention_mask`, INT64 [batch, sequence],
in that order (the PyTorch backend passes them positionally).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Self

import numpy as np
from tokenizers import Encoding, Tokenizer

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


# The padding a bucket may carry, as a share of its real tokens, before the next
# longer text starts a bucket of its own. Each bucket is one more graph call, which
# costs microseconds against the milliseconds that padding tokens cost.
MAX_PADDING = 0.25


def load_tokenizer(path: Path, max_tokens: int) -> Tokenizer:
    """A tokenizer.json that truncates at `max_tokens` and does not pad (`pack` does)."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception for a bad file
        raise ModelConfigError(f"{path}: {err}") from err
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.no_padding()
    return tokenizer


def encode(tokenizer: Tokenizer, texts: np.ndarray) -> list[Encoding]:
    """A batch of texts (bytes, already checked as UTF-8) as unpadded token ids."""
    return tokenizer.encode_batch([bytes(t).decode() for t in texts])


def pack(encodings: Sequence[Encoding]) -> dict[str, np.ndarray]:
    """The graph's inputs for `encodings`, padded to the longest of them (the mask
    hides the padding, so its id does not matter: 0, BERT's [PAD])."""
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, e in enumerate(encodings):
        ids[row, : len(e.ids)] = e.ids
        mask[row, : len(e.ids)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def tokenize(tokenizer: Tokenizer, texts: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's inputs for a batch of texts, padded to its longest: one bucket."""
    return pack(encode(tokenizer, texts))


def buckets(lengths: Sequence[int], max_padding: float = MAX_PADDING) -> list[list[int]]:
    """Row indices grouped by length: in order of length, a bucket takes the next
    (longer) row while padding all of it to that row's length stays within
    `max_padding` of its real tokens."""
    groups: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        n = lengths[i]
        if current and n * (len(current) + 1) > (1 + max_padding) * (real + n):
            groups.append(current)
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        groups.append(current)
    return groups


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
        encodings = encode(self._tokenizer, inputs[self._text_input])
        groups = buckets([len(e.ids) for e in encodings])
        if len(groups) == 1:
            return self._graph.run(pack(encodings))
        # Each bucket on its own, then every output's rows back in the batch's order.
        results = [self._graph.run(pack([encodings[i] for i in g])) for g in groups]
        outputs: dict[str, np.ndarray] = {}
        for name, first in results[0].items():
            rows = np.empty((len(encodings), *first.shape[1:]), dtype=first.dtype)
            for group, result in zip(groups, results, strict=True):
                rows[group] = result[name]
            outputs[name] = rows
        return outputs
