"""Several Python workers behind the gateway over gRPC, balanced round robin.

Each worker listens on its own port and the gateway is given every address;
which worker served what is read from each worker's own /metrics. A worker
stopped under load leaves the rotation once its connection is gone (or its
health check says NOT_SERVING, as it does while draining), and comes back when
started again on the same port.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
from tandem_stack.stack import Stack

from conftest import infer_body, metric, post_concurrently

WORKERS = ("inference-py", "inference-py-2")
# In flight at once while a worker stops: the most requests that may fail.
CONCURRENCY = 8


def served(stack: Stack, name: str) -> float:
    """Digits requests the worker `name` answered OK, from its /metrics."""
    text = httpx.get(f"http://{stack.metrics_addrs[name]}/metrics", timeout=10).text
    return metric(text, "tandem_inference_requests_total", model="digits", code="OK")


def fire(
    stack: Stack, pixels: np.ndarray, midway: Callable[[], object] | None = None
) -> dict[int, int]:
    """The status codes of one request per row, CONCURRENCY in flight."""
    requests = [("/v2/models/digits/infer", infer_body(row)) for row in pixels]
    responses = post_concurrently(stack, requests, CONCURRENCY, midway)
    codes: dict[int, int] = {}
    for r in responses:
        codes[r.status_code] = codes.get(r.status_code, 0) + 1
    return codes


def wait_share(stack: Stack, name: str, pixels: np.ndarray, timeout: float = 30.0) -> None:
    """Send batches until worker `name` has served some of them."""
    deadline = time.monotonic() + timeout
    before = served(stack, name)
    while served(stack, name) <= before:
        assert time.monotonic() < deadline, f"{name} got no requests:\n{stack.logs()}"
        assert fire(stack, pixels[:20]) == {200: 20}


@pytest.fixture
def pair() -> Iterator[Stack]:
    # One hop call per request (no edge coalescing), so that there are
    # hundreds to spread over the workers.
    s = Stack(transport="grpc", workers=2, routing=None, gateway_args=["--timeout", "3s"])
    try:
        s.start()
        yield s
    finally:
        s.stop()


def test_each_worker_has_its_own_address(pair: Stack) -> None:
    addrs = [pair.grpc_addrs[name] for name in WORKERS]
    assert len(set(addrs)) == 2, addrs
    assert addrs[0] == pair.python_grpc_addr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill"])
def test_both_serve_one_stops_and_comes_back(
    pair: Stack, digits: tuple[np.ndarray, np.ndarray], sig: int
) -> None:
    pixels = np.concatenate([digits[0]] * (200 // len(digits[0]) + 1))[:200]
    assert fire(pair, pixels) == {200: 200}
    shares = {name: served(pair, name) for name in WORKERS}
    print(f"200 requests served by worker: {shares}")
    assert all(n > 0 for n in shares.values()), shares
    assert sum(shares.values()) >= 200

    doomed = WORKERS[1]
    codes = fire(pair, pixels, midway=lambda: pair.process(doomed).stop(sig))
    errors = {code: n for code, n in codes.items() if code != 200}
    print(f"with {doomed} stopped midway: {codes}")
    assert sum(codes.values()) == 200
    assert sum(errors.values()) <= CONCURRENCY, codes
    assert not pair.process(doomed).running
    # The balancer has dropped it: everything now succeeds on the other.
    assert fire(pair, pixels[:64]) == {200: 64}

    pair.start_python(doomed)
    pair.wait_grpc_serving(doomed)
    wait_share(pair, doomed, pixels)
    assert all(pair.process(name).running for name in ("gateway", *WORKERS))
