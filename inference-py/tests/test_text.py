"""Text models: the [tokenizer] table, the per-request text checks, and MiniLM on both
backends (the artifacts `make models` exports into models/minilm*)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Self

import numpy as np
import pytest

from tandem_inference import codec
from tandem_inference.backends import backend_class
from tandem_inference.backends.base import Backend
from tandem_inference.errors import InvalidArgument, ModelConfigError
from tandem_inference.model_config import ModelConfig, Tokenizer, read_config
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.repository import ModelRepository
from tandem_inference.text import TextBackend, buckets, graph_config, load_tokenizer, tokenize
from tandem_inference.validation import check_texts, decode_inputs

MINILM = ("minilm", "minilm-torch")
ARTIFACTS = {"minilm": "1/model.onnx", "minilm-torch": "1/model.pt2"}

TEXT_CONFIG = """
name = "m"
backend = "onnxruntime"
platform = "onnxruntime_onnx"
max_batch_size = 8

[[inputs]]
name = "text"
datatype = "BYTES"
shape = [-1]

[[outputs]]
name = "embedding"
datatype = "FP32"
shape = [-1, 384]

[tokenizer]
max_text_bytes = 10
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.toml").write_text(text)
    return tmp_path / "m"


def test_a_tokenizer_table_with_defaults(tmp_path: Path) -> None:
    config = read_config(write(tmp_path, TEXT_CONFIG))
    assert config.tokenizer == Tokenizer(file="tokenizer.json", max_tokens=256, max_text_bytes=10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("max_text_bytes = 10", "max_text_bytes = 0"), "tokenizer.max_text_bytes must be an"),
        (("max_text_bytes = 10", "max_tokens = true"), "tokenizer.max_tokens must be an integer"),
        (("max_text_bytes = 10", "vocab = 1"), "tokenizer: unknown keys ['vocab']"),
        (("max_text_bytes = 10", 'file = "../t.json"'), "tokenizer.file must be a file name"),
        (('datatype = "BYTES"', 'datatype = "INT64"'), "take one input, BYTES with shape [-1]"),
        (("shape = [-1]\n", "shape = [-1, 2]\n"), "take one input, BYTES with shape [-1]"),
    ],
)
def test_a_bad_tokenizer_table(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    assert change[0] in TEXT_CONFIG
    with pytest.raises(ModelConfigError) as err:
        read_config(write(tmp_path, TEXT_CONFIG.replace(*change, 1)))
    assert message in err.value.message


@pytest.mark.parametrize("model", MINILM)
def test_the_committed_minilm_configs(committed_models: Path, model: str) -> None:
    config = read_config(committed_models / model)
    assert config.inputs[0].datatype == "BYTES"
    assert config.outputs[0].shape == (-1, 384)
    assert config.tokenizer == Tokenizer(max_tokens=256, max_text_bytes=16384)


def test_check_texts_names_the_element() -> None:
    texts = np.array([b"fine", "caf\u00e9 \u2615".encode(), b"a\x00b", b""], dtype=object)
    check_texts('input "text"', texts, 100)
    with pytest.raises(InvalidArgument) as err:
        check_texts('input "text"', np.array([b"ok", b"ok", b"\xff\xfe"], dtype=object), 100)
    assert err.value.message == (
        'input "text": element 2 is not valid UTF-8 (invalid start byte at byte 0)'
    )
    with pytest.raises(InvalidArgument) as err:
        check_texts('input "text"', np.array([b"ok", b"x" * 101], dtype=object), 100)
    assert err.value.message == (
        'input "text": element 1 is 101 bytes, over the model\'s max_text_bytes 100'
    )


def test_decode_inputs_checks_text_before_the_batcher(tmp_path: Path) -> None:
    config: ModelConfig = read_config(write(tmp_path, TEXT_CONFIG))
    texts = np.array([b"short", b"much too long"], dtype=object)
    request = pb.ModelInferRequest(
        model_name="m",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[2])],
        raw_input_contents=[codec.encode_raw(texts)],
    )
    with pytest.raises(InvalidArgument, match='input "text": element 1 is 13 bytes'):
        decode_inputs(config, request)


@pytest.mark.parametrize(("backend", "refused"), [("onnxruntime", True), ("pytorch", False)])
def test_bytes_for_onnx_runtime_must_be_utf8(tmp_path: Path, backend: str, refused: bool) -> None:
    """ONNX Runtime's string tensors are text: its BYTES inputs are checked as UTF-8
    even without a tokenizer; other backends take any bytes."""
    text = TEXT_CONFIG.split("[tokenizer]", maxsplit=1)[0].replace(
        '"onnxruntime"', f'"{backend}"', 1
    )
    config = read_config(write(tmp_path, text))
    request = pb.ModelInferRequest(
        model_name="m",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[1])],
        raw_input_contents=[codec.encode_raw(np.array([b"\xff" * 20], dtype=object))],
    )
    if refused:
        with pytest.raises(InvalidArgument, match='input "text": element 0 is not valid UTF-8'):
            decode_inputs(config, request)
    else:
        assert decode_inputs(config, request)["text"][0] == b"\xff" * 20


@pytest.fixture(scope="module")
def backends(committed_models: Path) -> dict[str, TextBackend]:
    loaded = {}
    for model in MINILM:
        artifact = committed_models / model / ARTIFACTS[model]
        assert artifact.is_file(), f"{artifact} is missing: run `make models`"
        loaded[model] = TextBackend.load(artifact, read_config(committed_models / model))
    return loaded


SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays an instrument on stage.",
    "The stock market fell sharply today.",
    "Der Hund schläft im Garten.",
    "犬が庭で寝ている。",
    "",
    "word " * 400,  # past 256 tokens: truncated
]


def embed(backend: TextBackend, texts: list[str]) -> np.ndarray:
    batch = np.array([t.encode() for t in texts], dtype=object)
    return backend.run({"text": batch})["embedding"]


@pytest.mark.parametrize("model", MINILM)
def test_embeddings_are_unit_vectors(backends: dict[str, TextBackend], model: str) -> None:
    got = embed(backends[model], SENTENCES)
    assert got.shape == (len(SENTENCES), 384)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # Paraphrases closer than unrelated sentences.
    assert got[0] @ got[1] > got[0] @ got[2] + 0.2


def test_backends_agree(backends: dict[str, TextBackend]) -> None:
    onnx, torch = (embed(backends[m], SENTENCES) for m in MINILM)
    np.testing.assert_allclose(onnx, torch, atol=1e-4)


@pytest.mark.parametrize("model", MINILM)
def test_a_text_in_a_mixed_batch_gets_what_it_gets_alone(
    backends: dict[str, TextBackend], model: str
) -> None:
    batch = embed(backends[model], SENTENCES)
    for i, text in enumerate(SENTENCES):
        np.testing.assert_allclose(batch[i], embed(backends[model], [text])[0], atol=1e-6)


def test_each_batch_is_padded_to_its_own_longest(committed_models: Path) -> None:
    tokenizer = load_tokenizer(committed_models / "minilm" / "1" / "tokenizer.json", 256)
    short = tokenize(tokenizer, np.array([b"hi", b"hello there"], dtype=object))
    # [CLS] hello there [SEP]: 4 tokens, "hi" padded to them, not to a fixed length.
    assert short["input_ids"].shape == (2, 4)
    np.testing.assert_array_equal(short["attention_mask"], [[1, 1, 1, 0], [1, 1, 1, 1]])
    long = tokenize(tokenizer, np.array([b"word " * 400], dtype=object))
    assert long["input_ids"].shape == (1, 256)


def test_padding_is_what_the_tokenizer_itself_pads(committed_models: Path) -> None:
    """pack's padding against the tokenizers library's own (pad to the longest)."""
    path = committed_models / "minilm" / "1" / "tokenizer.json"
    own = load_tokenizer(path, 256)
    own.enable_padding()
    texts = [t.encode() for t in SENTENCES]
    encodings = own.encode_batch(SENTENCES)
    got = tokenize(load_tokenizer(path, 256), np.array(texts, dtype=object))
    np.testing.assert_array_equal(got["input_ids"], [e.ids for e in encodings])
    np.testing.assert_array_equal(got["attention_mask"], [e.attention_mask for e in encodings])


@pytest.mark.parametrize(
    ("lengths", "groups"),
    [
        ([], []),
        ([7], [[0]]),
        ([4, 4, 4], [[0, 1, 2]]),
        ([200, 2], [[1], [0]]),  # a long one never pads a short one
        ([10, 100, 11, 101, 12], [[0, 2, 4], [1, 3]]),  # by length, rows named as given
        ([8, 9, 10], [[0, 1, 2]]),  # 30 tokens for 27: within 25%
        ([8, 8, 12], [[0, 1], [2]]),  # 36 tokens for 28: past it
    ],
)
def test_buckets(lengths: list[int], groups: list[list[int]]) -> None:
    assert buckets(lengths) == groups


class Recording(Backend):
    """The real graph backend, noting the shape of every batch it is given."""

    def __init__(self, graph: Backend) -> None:
        self.graph = graph
        self.shapes: list[tuple[int, ...]] = []

    @classmethod
    def load(cls, artifact: Path, config: ModelConfig) -> Self:
        return cls(backend_class(config.backend).load(artifact, graph_config(config)))

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.shapes.append(inputs["input_ids"].shape)
        return self.graph.run(inputs)


@pytest.mark.parametrize("model", MINILM)
def test_a_mixed_batch_runs_in_buckets(
    backends: dict[str, TextBackend], committed_models: Path, model: str
) -> None:
    """Short texts are not padded to a long one's length: each bucket is its own run,
    and the rows come back in the batch's order."""
    texts = ["a cat", "word " * 400, "a dog", "hello there"]
    alone = np.stack([embed(backends[model], [t])[0] for t in texts])
    config = read_config(committed_models / model)
    recording = Recording.load(committed_models / model / ARTIFACTS[model], config)
    tokenizer = load_tokenizer(committed_models / model / "1" / "tokenizer.json", 256)
    got = embed(TextBackend(recording, tokenizer, "text"), texts)
    assert sorted(recording.shapes) == [(1, 256), (3, 4)]
    np.testing.assert_allclose(got, alone, atol=1e-6)


def test_a_repository_serves_a_text_model(committed_models: Path, tmp_path: Path) -> None:
    """Through the repository: the warm-up's empty text, and the graph's own inputs hidden."""
    (tmp_path / "minilm").symlink_to(committed_models / "minilm")
    repo = ModelRepository(tmp_path)
    repo.load()
    try:
        model = repo.resolve("minilm")
        assert [t.name for t in model.config.inputs] == ["text"]
    finally:
        repo.close()
