"""Every bad input gets the right status and a message that names the problem.

Bad inputs are checked at two places, the gateway's JSON codec and the Python
service's validation; the client sees one behaviour either way, and both
processes keep serving afterwards (the `stack` fixture checks that they exit
cleanly at the end of the module).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest

from conftest import infer_body, probabilities

ZEROS = np.zeros((1, 64), dtype=np.float32)


def with_input(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = infer_body(ZEROS)
    body["inputs"][0].update(changes)
    return body


CASES: list[tuple[str, str, Any, int, list[str]]] = [
    # id, model, body (dict, or str sent as-is), status, words the error must contain
    ("malformed-json", "digits", '{"inputs": [', 400, ["json"]),
    ("not-an-object", "digits", "[1, 2, 3]", 400, ["json"]),
    ("no-inputs", "digits", {"inputs": []}, 400, ["pixels"]),
    ("unknown-input", "digits", with_input(name="pixel"), 400, ["pixel"]),
    (
        "wrong-datatype",
        "digits",
        with_input(datatype="INT64", data=[0] * 64),
        400,
        ["pixels", "FP32"],
    ),
    ("unknown-datatype", "digits", with_input(datatype="FP128"), 400, ["FP128"]),
    ("wrong-shape", "digits", with_input(shape=[1, 63], data=[0.0] * 63), 400, ["pixels", "64"]),
    ("data-shorter-than-shape", "digits", with_input(data=[0.0] * 10), 400, ["pixels"]),
    ("string-in-data", "digits", with_input(data=["a"] + [0.0] * 63), 400, ["pixels"]),
    ("negative-dimension", "digits", with_input(shape=[-1, 64]), 400, ["pixels"]),
    ("huge-claimed-shape", "digits", with_input(shape=[1_000_000_000_000, 64]), 400, ["pixels"]),
    (
        "batch-too-large",
        "digits",
        with_input(shape=[129, 64], data=[0.0] * (129 * 64)),
        400,
        ["pixels", "128"],
    ),
    (
        "unknown-output",
        "digits",
        dict(infer_body(ZEROS), outputs=[{"name": "logits"}]),
        400,
        ["logits"],
    ),
    ("unknown-model", "no-such-model", infer_body(ZEROS), 404, ["no-such-model"]),
    ("unknown-model-torch-typo", "digits-torchh", infer_body(ZEROS), 404, ["digits-torchh"]),
]


@pytest.mark.parametrize(
    ("model", "body", "status", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input(
    client: httpx.Client, model: str, body: Any, status: int, words: list[str]
) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    r = client.post(
        f"/v2/models/{model}/infer", content=content, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    for word in words:
        assert word.lower() in error.lower(), f"{word!r} not in {error!r}"


def test_unknown_version(client: httpx.Client) -> None:
    r = client.post("/v2/models/digits/versions/9/infer", json=infer_body(ZEROS))
    assert r.status_code == 404, r.text
    assert "9" in r.json()["error"]


def test_body_too_large(client: httpx.Client) -> None:
    big = b'{"inputs": [' + b" " * (9 << 20) + b"]}"
    r = client.post(
        "/v2/models/digits/infer", content=big, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413, r.text
    assert "large" in r.json()["error"].lower()


def test_still_serving_after_bad_inputs(client: httpx.Client) -> None:
    for model in ("digits", "digits-torch"):
        got = probabilities(client.post(f"/v2/models/{model}/infer", json=infer_body(ZEROS)))
        assert got.shape == (1, 10)
