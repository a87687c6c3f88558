"""Health and metadata endpoints of the gateway, answered through the whole path."""

from __future__ import annotations

import httpx
import pytest

from conftest import MODEL_NAMES


def test_live_and_ready(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200


def test_server_metadata(client: httpx.Client) -> None:
    r = client.get("/v2")
    assert r.status_code == 200
    meta = r.json()
    assert meta["name"] == "tandem"
    assert isinstance(meta["version"], str)
    assert meta["version"]
    assert isinstance(meta["extensions"], list)


@pytest.mark.parametrize("model", MODEL_NAMES)
@pytest.mark.parametrize("prefix", ["/v2/models/{m}", "/v2/models/{m}/versions/1"])
def test_model_metadata(client: httpx.Client, model: str, prefix: str) -> None:
    r = client.get(prefix.format(m=model))
    assert r.status_code == 200, r.text
    meta = r.json()
    assert meta["name"] == model
    assert meta["versions"] == ["1"]
    assert meta["platform"]
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]


@pytest.mark.parametrize("model", MODEL_NAMES)
@pytest.mark.parametrize("prefix", ["/v2/models/{m}", "/v2/models/{m}/versions/1"])
def test_model_ready(client: httpx.Client, model: str, prefix: str) -> None:
    assert client.get(prefix.format(m=model) + "/ready").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/no-such-model",
        "/v2/models/no-such-model/ready",
        "/v2/models/digits/versions/7",
        "/v2/models/digits/versions/7/ready",
    ],
)
def test_unknown_model_or_version(client: httpx.Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert "no-such-model" in error or "7" in error
