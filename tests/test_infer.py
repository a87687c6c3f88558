"""Real digits through the gateway to both backends, checked against a local ONNX Runtime run."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tandem_stack.stack import Stack

from conftest import MODEL_NAMES, infer_body, post_concurrently, probabilities

Digits = tuple[np.ndarray, np.ndarray]


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_hundred_digits_match_local_onnxruntime(
    client: httpx.Client, model: str, digits: Digits, reference: np.ndarray
) -> None:
    pixels, labels = digits
    got = np.concatenate(
        [
            probabilities(client.post(f"/v2/models/{model}/infer", json=infer_body(pixels[i])))
            for i in range(100)
        ]
    )
    np.testing.assert_allclose(got, reference[:100], atol=1e-5)
    assert (got.argmax(axis=1) == labels[:100]).mean() >= 0.95


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_batch_request(
    client: httpx.Client, model: str, digits: Digits, reference: np.ndarray
) -> None:
    got = probabilities(client.post(f"/v2/models/{model}/infer", json=infer_body(digits[0][:32])))
    assert got.shape == (32, 10)
    np.testing.assert_allclose(got, reference[:32], atol=1e-5)


def test_nested_data_and_request_id(
    client: httpx.Client, digits: Digits, reference: np.ndarray
) -> None:
    body = infer_body(digits[0][:3], id="req-42")
    body["inputs"][0]["data"] = digits[0][:3].tolist()  # type: ignore[index]
    r = client.post("/v2/models/digits/versions/1/infer", json=body)
    np.testing.assert_allclose(probabilities(r), reference[:3], atol=1e-5)
    assert r.json()["id"] == "req-42"
    assert r.json()["model_name"] == "digits"
    assert r.json()["model_version"] == "1"


def test_concurrent_requests_get_their_own_answers(
    stack: Stack, digits: Digits, reference: np.ndarray
) -> None:
    """200 requests in flight at once, each with a distinct digit, each answered with its own."""
    n = 200
    assert len(digits[0]) >= n

    requests = [
        (f"/v2/models/{MODEL_NAMES[i % 2]}/infer", infer_body(digits[0][i])) for i in range(n)
    ]
    got = np.concatenate([probabilities(r) for r in post_concurrently(stack, requests)])
    np.testing.assert_allclose(got, reference[:n], atol=1e-5)


def test_triton_http_client_works_unchanged(
    stack: Stack, digits: Digits, reference: np.ndarray
) -> None:
    """Triton's own client, pointed at the gateway, with JSON tensors."""
    c = triton.InferenceServerClient(url=stack.rest_url.removeprefix("http://"))
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready("digits")
    assert c.get_model_metadata("digits")["inputs"][0]["name"] == "pixels"
    inp = triton.InferInput("pixels", [4, 64], "FP32")
    inp.set_data_from_numpy(digits[0][:4], binary_data=False)
    out = triton.InferRequestedOutput("probabilities", binary_data=False)
    result = c.infer("digits", [inp], outputs=[out])
    np.testing.assert_allclose(result.as_numpy("probabilities"), reference[:4], atol=1e-5)
