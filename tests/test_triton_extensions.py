"""Triton's extensions (model_configuration, model_repository, statistics) through the
gateway, called with Triton's own clients, tritonclient.http on the REST edge and
tritonclient.grpc on the edge gRPC listener, over each transport."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tandem_stack.stack import MODELS, TRANSPORTS, Stack

Digits = tuple[np.ndarray, np.ndarray]


@pytest.fixture(scope="module", params=TRANSPORTS)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A stack whose Python workers let clients load and unload models."""
    with Stack(transport=request.param, python_args=["--model-control", "explicit"]) as s:
        yield s
    for proc in s.processes:
        assert proc.popen is not None
        assert proc.popen.returncode == 0, f"{proc.name} exited {proc.popen.returncode}\n{s.logs()}"


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpclient.InferenceServerClient]:
    c = httpclient.InferenceServerClient(stack.rest_url.removeprefix("http://"))
    yield c
    c.close()


@pytest.fixture(scope="module")
def grpc(stack: Stack) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(stack.edge_grpc_addr)
    yield c
    c.close()


def config_toml(model: str) -> dict[str, Any]:
    with (MODELS / model / "config.toml").open("rb") as f:
        return tomllib.load(f)


def test_server_metadata_extensions(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    want = {"binary_tensor_data", "model_configuration", "model_repository", "statistics"}
    assert want <= set(http.get_server_metadata()["extensions"])
    assert want <= set(grpc.get_server_metadata(as_json=True)["extensions"])


def test_model_config(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    toml = config_toml("digits")
    rest = http.get_model_config("digits")
    assert rest["name"] == "digits"
    assert rest["max_batch_size"] == toml["max_batch_size"]
    # Without the batch dimension, and numbers (not protojson's int64 strings).
    assert [(i["name"], i["data_type"], i["dims"]) for i in rest["input"]] == [
        (i["name"], "TYPE_" + i["datatype"], i["shape"][1:]) for i in toml["inputs"]
    ]
    assert [o["dims"] for o in rest["output"]] == [o["shape"][1:] for o in toml["outputs"]]
    g = grpc.get_model_config("digits", as_json=True)["config"]
    assert int(g["max_batch_size"]) == toml["max_batch_size"]
    assert [[int(d) for d in i["dims"]] for i in g["input"]] == [i["dims"] for i in rest["input"]]


def test_repository_index(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    rest = {(m["name"], m["state"]) for m in http.get_model_repository_index()}
    assert {("digits", "READY"), ("digits-torch", "READY")} <= rest
    g = grpc.get_model_repository_index(as_json=True)["models"]
    assert {("digits", "READY"), ("digits-torch", "READY")} <= {(m["name"], m["state"]) for m in g}


def infer(client: httpclient.InferenceServerClient, pixels: np.ndarray) -> None:
    batch = np.ascontiguousarray(np.atleast_2d(pixels), dtype=np.float32)
    inp = httpclient.InferInput("pixels", list(batch.shape), "FP32")
    inp.set_data_from_numpy(batch)
    result = client.infer("digits", [inp])
    assert result.as_numpy("probabilities").shape == (batch.shape[0], 10)


def inference_count(stats: dict[str, Any], model: str) -> int:
    return sum(int(s["inference_count"]) for s in stats["model_stats"] if s["name"] == model)


def test_statistics(
    http: httpclient.InferenceServerClient,
    grpc: grpcclient.InferenceServerClient,
    digits: Digits,
) -> None:
    before = inference_count(http.get_inference_statistics("digits"), "digits")
    for i in range(3):
        infer(http, digits[0][i : i + 2])
    after = http.get_inference_statistics("digits")
    assert inference_count(after, "digits") == before + 6
    assert isinstance(after["model_stats"][0]["inference_count"], int)
    every = http.get_inference_statistics()
    assert {"digits", "digits-torch"} <= {s["name"] for s in every["model_stats"]}
    assert inference_count(every, "digits") == before + 6
    g = grpc.get_inference_statistics("digits", as_json=True)
    assert inference_count(g, "digits") == before + 6


@pytest.mark.parametrize("which", ["http", "grpc"])
def test_unload_then_load(
    which: str,
    http: httpclient.InferenceServerClient,
    grpc: grpcclient.InferenceServerClient,
    digits: Digits,
) -> None:
    client: httpclient.InferenceServerClient | grpcclient.InferenceServerClient = (
        http if which == "http" else grpc
    )
    client.unload_model("digits-torch")
    assert not client.is_model_ready("digits-torch")
    assert not http.is_model_ready("digits-torch")
    assert client.is_model_ready("digits")
    client.load_model("digits-torch")
    assert client.is_model_ready("digits-torch")
    assert http.is_model_ready("digits-torch")


def test_load_parameters_refused(http: httpclient.InferenceServerClient) -> None:
    with pytest.raises(Exception, match=r"(?i)parameter|config"):
        http.load_model("digits", config='{"max_batch_size": 4}')
    assert http.is_model_ready("digits")
