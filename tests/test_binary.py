"""The OIP binary tensor extension, through Triton's own HTTP client and by hand."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tandem_stack.stack import Stack

from conftest import binary_request, probabilities

Digits = tuple[np.ndarray, np.ndarray]


@pytest.mark.parametrize(("binary_in", "binary_out"), [(True, True), (True, False), (False, True)])
def test_triton_client_binary_matches_json(
    stack: Stack, digits: Digits, reference: np.ndarray, binary_in: bool, binary_out: bool
) -> None:
    c = triton.InferenceServerClient(url=stack.rest_url.removeprefix("http://"))
    assert "binary_tensor_data" in c.get_server_metadata()["extensions"]
    inp = triton.InferInput("pixels", [16, 64], "FP32")
    inp.set_data_from_numpy(digits[0][:16], binary_data=binary_in)
    out = triton.InferRequestedOutput("probabilities", binary_data=binary_out)
    for model in ("digits", "digits-torch"):
        result = c.infer(model, [inp], outputs=[out])
        np.testing.assert_allclose(result.as_numpy("probabilities"), reference[:16], atol=1e-5)


def test_binary_request_by_hand(
    client: httpx.Client, digits: Digits, reference: np.ndarray
) -> None:
    blob = digits[0][:2].astype("<f4").tobytes()
    tensor = {
        "name": "pixels",
        "datatype": "FP32",
        "shape": [2, 64],
        "parameters": {"binary_data_size": len(blob)},
    }
    body, headers = binary_request({"inputs": [tensor]}, blob)
    r = client.post("/v2/models/digits/infer", content=body, headers=headers)
    np.testing.assert_allclose(probabilities(r), reference[:2], atol=1e-5)


BAD = [
    ("size-not-shape", {"binary_data_size": 100}, 2 * 64 * 4, None),
    ("body-shorter-than-size", {"binary_data_size": 2 * 64 * 4}, 2 * 64 * 4 - 8, None),
    ("extra-bytes", {"binary_data_size": 2 * 64 * 4}, 2 * 64 * 4 + 8, None),
    ("header-longer-than-body", {"binary_data_size": 2 * 64 * 4}, 2 * 64 * 4, 10**6),
]


@pytest.mark.parametrize(
    ("params", "blob_len", "header_len"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_inconsistent_lengths_are_400(
    client: httpx.Client, params: dict[str, int], blob_len: int, header_len: int | None
) -> None:
    tensor = {"name": "pixels", "datatype": "FP32", "shape": [2, 64], "parameters": params}
    body, headers = binary_request({"inputs": [tensor]}, b"\0" * blob_len)
    if header_len is not None:
        headers["Inference-Header-Content-Length"] = str(header_len)
    r = client.post("/v2/models/digits/infer", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]
