"""Fixtures for the cross-language tests: the real processes, started on free ports."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from tandem_inference.train import heldout
from tandem_stack import stack as stack_module
from tandem_stack.stack import MODELS, TRANSPORTS, Stack, model_subset

MODEL_NAMES = ("digits", "digits-torch")


@pytest.fixture(scope="session", autouse=True)
def digits_repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """What every stack serves unless a test gives it a repository: the digits models
    alone (links to models/). Loading MiniLM's two 90 MB models would add seconds to
    every stack's start; test_minilm.py serves them."""
    root = model_subset(MODEL_NAMES, tmp_path_factory.mktemp("digits-models"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stack_module, "DEFAULT_MODELS", root)
        yield root


@pytest.fixture(scope="module", params=TRANSPORTS)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """One stack per test module and transport; the same suite runs over each."""
    with Stack(transport=request.param) as s:
        yield s
    # Every process must have survived the module's bad inputs and exited cleanly.
    for proc in s.processes:
        assert proc.popen is not None
        assert proc.popen.returncode == 0, f"{proc.name} exited {proc.popen.returncode}\n{s.logs()}"


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.rest_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The held-out digits (pixels FP32 [n, 64], labels) the model never trained on."""
    x, y = heldout()
    return np.ascontiguousarray(x, dtype=np.float32), np.asarray(y)


@pytest.fixture(scope="session")
def reference(digits: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Probabilities from a local ONNX Runtime session: what the stack must reproduce."""
    session = ort.InferenceSession(
        str(MODELS / "digits" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (probabilities,) = session.run(["probabilities"], {"pixels": digits[0]})
    return np.asarray(probabilities)


def infer_body(pixels: np.ndarray, **extra: object) -> dict[str, object]:
    """An OIP v2 JSON infer request for a [n, 64] batch of digits."""
    batch = np.atleast_2d(pixels)
    body: dict[str, object] = {
        "inputs": [
            {
                "name": "pixels",
                "datatype": "FP32",
                "shape": list(batch.shape),
                "data": batch.ravel().tolist(),
            }
        ]
    }
    body.update(extra)
    return body


def binary_request(header: dict[str, object], blob: bytes) -> tuple[bytes, dict[str, str]]:
    """A body of the binary tensor extension (the JSON header, then the tensors' bytes)
    and its headers."""
    head = json.dumps(header).encode()
    return head + blob, {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }


def probabilities(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    assert out["name"] == "probabilities"
    assert out["datatype"] == "FP32"
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus series' samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*?)\}})? ([0-9.e+-]+|NaN)", line)
        if not m:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def infer_counts(stack: Stack, model: str = "digits") -> dict[str, int]:
    """Requests each live NATS worker has taken on a model's infer subject, by service id
    (the NATS services API's $SRV.STATS)."""
    subject = f"oip.v2.models.{model}.infer"
    return {
        stats["id"]: ep["num_requests"]
        for stats in stack.service_replies("STATS")
        for ep in stats["endpoints"]
        if ep["subject"] == subject
    }


def model_runs(stack: Stack, model: str = "digits") -> tuple[float, float]:
    """(model runs, rows) of a model so far, from the Python service's batch-size histogram."""
    text = httpx.get(f"http://{stack.python_metrics_addr}/metrics", timeout=10).text
    return (
        metric(text, "tandem_inference_batch_size_count", model=model),
        metric(text, "tandem_inference_batch_size_sum", model=model),
    )


def post_concurrently(
    stack: Stack,
    requests: Sequence[tuple[str, dict[str, object]]],
    concurrency: int | None = None,
    midway: Callable[[], object] | None = None,
) -> list[httpx.Response]:
    """POST each (path, JSON body) to the gateway, at most `concurrency` in flight (default:
    all at once), answers in request order; `midway` runs once a third are answered."""
    limit = concurrency or len(requests)

    async def go() -> list[httpx.Response]:
        sem = asyncio.Semaphore(limit)
        done = 0
        limits = httpx.Limits(max_connections=limit)
        async with httpx.AsyncClient(base_url=stack.rest_url, limits=limits, timeout=60) as c:

            async def one(path: str, body: dict[str, object]) -> httpx.Response:
                nonlocal done
                async with sem:
                    r = await c.post(path, json=body)
                done += 1
                if midway is not None and done == len(requests) // 3:
                    await asyncio.to_thread(midway)
                return r

            return await asyncio.gather(*(one(path, body) for path, body in requests))

    return asyncio.run(go())
