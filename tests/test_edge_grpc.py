"""The gateway's edge gRPC listener, called with the generated stubs as Triton's clients do."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.pb import grpc_service_pb2_grpc as pb_grpc
from tandem_stack.stack import Stack

from conftest import infer_body, probabilities

Digits = tuple[np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def stub(stack: Stack) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(stack.edge_grpc_addr) as channel:
        # grpcio-tools writes the stub without type hints.
        yield pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]


def infer_request(model: str, pixels: np.ndarray) -> pb.ModelInferRequest:
    batch = np.ascontiguousarray(np.atleast_2d(pixels), dtype=np.float32)
    req = pb.ModelInferRequest(model_name=model, id="edge-1")
    req.inputs.add(name="pixels", datatype="FP32", shape=list(batch.shape))
    req.raw_input_contents.append(batch.tobytes())
    return req


def test_health_and_metadata(stub: pb_grpc.GRPCInferenceServiceStub, client: httpx.Client) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="digits"), timeout=10).ready
    meta = stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=10)
    assert meta.name
    model = stub.ModelMetadata(pb.ModelMetadataRequest(name="digits-torch"), timeout=10)
    rest = client.get("/v2/models/digits-torch").json()
    assert model.name == rest["name"]
    assert list(model.versions) == rest["versions"]
    assert model.platform == rest["platform"]
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [
        (t["name"], t["datatype"], t["shape"]) for t in rest["inputs"]
    ]


@pytest.mark.parametrize("model", ["digits", "digits-torch"])
def test_infer_matches_rest(
    stub: pb_grpc.GRPCInferenceServiceStub,
    client: httpx.Client,
    model: str,
    digits: Digits,
    reference: np.ndarray,
) -> None:
    pixels = digits[0][:8]
    resp = stub.ModelInfer(infer_request(model, pixels), timeout=10)
    assert resp.id == "edge-1"
    (out,) = resp.outputs
    assert out.name == "probabilities"
    got = np.frombuffer(resp.raw_output_contents[0], dtype="<f4").reshape(list(out.shape))
    np.testing.assert_allclose(got, reference[:8], atol=1e-5)
    rest = probabilities(client.post(f"/v2/models/{model}/infer", json=infer_body(pixels)))
    np.testing.assert_allclose(got, rest, atol=1e-6)


@pytest.mark.parametrize(
    ("model", "code"),
    [("no-such-model", grpc.StatusCode.NOT_FOUND), ("digits", grpc.StatusCode.INVALID_ARGUMENT)],
)
def test_errors_keep_their_codes(
    stub: pb_grpc.GRPCInferenceServiceStub, model: str, code: grpc.StatusCode
) -> None:
    req = infer_request(model, np.zeros((1, 64)))
    if model == "digits":
        req.raw_input_contents[0] = b"\0" * 10  # 10 bytes for 64 FP32 values
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(req, timeout=10)
    assert err.value.code() == code
    assert err.value.details()
