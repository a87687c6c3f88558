"""NATS as the hop: queue-group scaling, a worker killed under load, no worker, a server restart.

All against a real `nats-server`, the real gateway and real Python workers.
Which worker served what is read from the NATS services API (`$SRV.STATS`),
the same discovery an operator would use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
from tandem_stack.stack import Stack, wait_healthy

from conftest import infer_body, infer_counts, post_concurrently, probabilities

Digits = tuple[np.ndarray, np.ndarray]


def fire(
    stack: Stack, pixels: np.ndarray, concurrency: int, midway: Callable[[], object] | None = None
) -> list[httpx.Response]:
    """One digits request per row, `concurrency` in flight."""
    requests = [("/v2/models/digits/infer", infer_body(row)) for row in pixels]
    return post_concurrently(stack, requests, concurrency, midway)


@pytest.fixture
def two_workers() -> Iterator[Stack]:
    # One NATS message per request, not merged at the edge: the queue group then has
    # hundreds of messages to share, and a killed worker holds some of them.
    s = Stack(transport="nats", workers=2, routing=None)
    with s:
        yield s


def test_two_workers_share_the_load(
    two_workers: Stack, digits: Digits, reference: np.ndarray
) -> None:
    n = 500
    rows = np.resize(digits[0], (n, 64))
    expected = np.resize(reference, (n, 10))
    responses = fire(two_workers, rows, concurrency=n)
    got = np.concatenate([probabilities(r) for r in responses])
    np.testing.assert_allclose(got, expected, atol=1e-5)

    counts = infer_counts(two_workers)
    assert len(counts) == 2, counts
    assert all(c > 0 for c in counts.values()), counts
    assert sum(counts.values()) >= n


def test_no_worker_is_503_at_once() -> None:
    """With nobody subscribed, NATS says so at once: 503, not a wait for the 30 s hop timeout."""
    s = Stack(
        transport="nats", workers=0, gateway_args=["--timeout", "30s", "--write-timeout", "60s"]
    )
    try:
        s.start_nats()
        # Live, not ready: with no worker the gateway is up but cannot serve.
        wait_healthy(f"{s.rest_url}/v2/health/live", s.start_gateway(), s)
        # A client that gives up long before the hop timeout: only an immediate answer passes.
        with httpx.Client(base_url=s.rest_url, timeout=3) as c:
            r = c.post("/v2/models/digits/infer", json=infer_body(np.zeros(64)))
            assert r.status_code == 503, r.text
            assert "digits" in r.json()["error"]
            assert c.get("/v2/health/ready").status_code == 503
    finally:
        s.stop()


def test_nats_server_restart(digits: Digits, reference: np.ndarray) -> None:
    """The NATS server goes away and comes back; gateway and worker reconnect on their own."""
    s = Stack(transport="nats")
    try:
        s.start()
        with httpx.Client(base_url=s.rest_url, timeout=10) as c:
            ok = c.post("/v2/models/digits/infer", json=infer_body(digits[0][0]))
            np.testing.assert_allclose(probabilities(ok), reference[:1], atol=1e-5)

            s.restart_nats()
            s.wait_ready(timeout=30)

            again = c.post("/v2/models/digits/infer", json=infer_body(digits[0][1]))
            np.testing.assert_allclose(probabilities(again), reference[1:2], atol=1e-5)
        assert s.process("gateway").running
        assert s.process("inference-py").running
    finally:
        s.stop()
