"""A NATS cluster as the hop: three real nats-servers routed on loopback.

The gateway and the workers sit on different nodes, so every request crosses a
route; then the node the gateway is connected to is stopped under load, and the
gateway and the workers must carry on through the nodes that are left. Which
process is on which node is read from each node's /connz (the gateway's client
name is "tandem-gateway", a worker's ends in its pid); which worker served what
from the NATS services API ($SRV.STATS), as an operator would.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import nats
import numpy as np
import pytest
from tandem_stack.stack import NatsNode, Stack, default_workers

from conftest import infer_body, infer_counts, post_concurrently

Digits = tuple[np.ndarray, np.ndarray]
GATEWAY_NAME = "tandem-gateway"
# In flight at once while a node stops: the most requests that may fail (below).
CONCURRENCY = 16


def cluster() -> Stack:
    # One NATS message per request (no edge coalescing), so that the queue group has
    # hundreds to share and a stopped node has some in flight; a short hop timeout,
    # so that a reply lost with the node costs seconds, not the default ten.
    return Stack(
        transport="nats", nats_servers=3, workers=0, routing=None, gateway_args=["--timeout", "3s"]
    )


def placement(stack: Stack) -> dict[str, list[str]]:
    """The client names on each running node."""
    return {
        node.name: sorted(str(c.get("name", "")) for c in stack.nats_clients(node))
        for node in stack.nats_nodes
        if stack.process(node.name).running
    }


def node_of(stack: Stack, name_suffix: str) -> NatsNode:
    """The running node a client whose name ends in `name_suffix` is connected to."""
    for node in stack.nats_nodes:
        names = placement(stack).get(node.name, [])
        if any(n.endswith(name_suffix) for n in names):
            return node
    raise AssertionError(f"no node has a client {name_suffix!r}: {placement(stack)}")


def wait_client(stack: Stack, name_suffix: str, timeout: float = 30.0) -> NatsNode:
    """Wait until a client whose name ends in `name_suffix` is on a running node."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return node_of(stack, name_suffix)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def worker_pid(stack: Stack, name: str) -> str:
    popen = stack.process(name).popen
    assert popen is not None
    return f"pid {popen.pid}"


def fire(
    stack: Stack, pixels: np.ndarray, midway: Callable[[], object] | None = None
) -> list[httpx.Response]:
    requests = [("/v2/models/digits/infer", infer_body(row)) for row in pixels]
    return post_concurrently(stack, requests, CONCURRENCY, midway)


def own_answers(responses: list[httpx.Response], expected: np.ndarray) -> Counter[int]:
    """Status codes counted; every 200 must hold the probabilities of its own row,
    so that an answer delivered to the wrong caller after a reconnect fails."""
    codes: Counter[int] = Counter()
    for i, r in enumerate(responses):
        codes[r.status_code] += 1
        if r.status_code == 200:
            (out,) = r.json()["outputs"]
            got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
            np.testing.assert_allclose(got, expected[i : i + 1], atol=1e-5, err_msg=f"row {i}")
    return codes


@pytest.fixture
def spread() -> Iterator[Stack]:
    """The gateway on node 1 only, one worker on node 2 and one on node 3."""
    s = cluster()
    try:
        s.start_nats()
        first, second, third = s.nats_nodes
        s.start_gateway(nats_url=first.url)
        s.start_python("inference-py", nats_url=second.url)
        s.start_python("inference-py-2", nats_url=third.url)
        s.wait_ready()
        s.wait_workers(2)
        yield s
    finally:
        s.stop()


def test_requests_cross_the_cluster(spread: Stack, digits: Digits, reference: np.ndarray) -> None:
    first, second, third = spread.nats_nodes
    where = placement(spread)
    # Nothing on node 1 but the gateway: every request and reply goes over a route.
    assert GATEWAY_NAME in where[first.name], where
    assert not any(n.endswith(worker_pid(spread, "inference-py")) for n in where[first.name])
    assert node_of(spread, worker_pid(spread, "inference-py")) == second
    assert node_of(spread, worker_pid(spread, "inference-py-2")) == third

    responses = fire(spread, digits[0])
    codes = own_answers(responses, reference)
    assert codes == {200: len(digits[0])}, codes

    counts = infer_counts(spread)
    assert len(counts) == 2, counts
    assert all(c > 0 for c in counts.values()), counts
    assert sum(counts.values()) >= len(digits[0])


def test_gateway_node_stops_under_load(digits: Digits, reference: np.ndarray) -> None:
    """The node the gateway is on goes away mid-load; the others carry on.

    Errors are allowed only for requests in flight when the node stopped: one sent
    but unanswered may have reached a worker, so it is not sent again (at most
    once); one that cannot have reached a worker is retried. So at most
    CONCURRENCY fail, and every 200 is its caller's own answer.
    """
    s = cluster()
    try:
        s.start_nats()
        # All three URLs, as production gives it; the client picks one of them.
        s.start_gateway()
        doomed = wait_client(s, GATEWAY_NAME)
        other = next(n for n in s.nats_nodes if n != doomed)
        # One worker with the doomed node alone (it must find the others from the
        # cluster's gossip), one on another node (it keeps its connection).
        s.start_python("inference-py", nats_url=doomed.url)
        s.start_python("inference-py-2", nats_url=other.url)
        s.wait_ready()
        s.wait_workers(2)

        responses = fire(s, digits[0], midway=lambda: s.stop_nats_node(doomed))
        codes = own_answers(responses, reference)
        errors = {code: n for code, n in codes.items() if code != 200}
        print(f"sent {len(responses)}, answered 200: {codes[200]}, errors by code: {errors}")
        assert sum(codes.values()) == len(digits[0])
        assert sum(errors.values()) <= CONCURRENCY, codes
        assert not s.process(doomed.name).running

        # Both sides reconnected to the nodes that are left, and serve again.
        left = wait_client(s, GATEWAY_NAME)
        assert left != doomed
        for name in ("inference-py", "inference-py-2"):
            assert wait_client(s, worker_pid(s, name)) != doomed
        s.wait_ready(timeout=30)
        s.wait_workers(2, timeout=30)
        after = fire(s, digits[0][:64])
        assert own_answers(after, reference) == {200: 64}
        assert all(s.process(p).running for p in ("gateway", "inference-py", "inference-py-2"))
    finally:
        s.stop()


def refused(url: str) -> bool:
    """Whether a NATS server turns away a client that brings no credentials."""

    async def attempt() -> bool:
        try:
            nc = await nats.connect(url, max_reconnect_attempts=0, allow_reconnect=False)
        except (nats.errors.Error, OSError):
            return True
        await nc.close()
        return False

    return asyncio.run(attempt())


def test_cluster_has_the_single_servers_users() -> None:
    """Every node runs the auth config of a single server: a worker logged in on one
    node answers the observer through another, and an anonymous client is refused on
    each. (The gateway takes no NATS credentials yet: it joins this test when it does.)"""
    s = Stack(transport="nats", nats_servers=3, workers=0, nats_auth=True)
    try:
        s.start_nats()
        first, second, _ = s.nats_nodes
        s.start_python("inference-py", nats_url=second.url)
        s.wait_workers(1)
        # The observer on node 1 alone: the worker's answer crossed a route.
        alone = Stack(transport="nats", nats_auth=True, nats_passwords=s.nats_passwords)
        alone.ports.nats = first.client
        assert len(alone.service_replies("PING")) == 1
        assert [refused(n.url) for n in s.nats_nodes] == [True, True, True]
    finally:
        s.stop()


@pytest.mark.parametrize(
    ("transport", "cores", "workers"),
    [("nats", 1, 1), ("nats", 2, 1), ("nats", 8, 7), ("grpc", 8, 7), ("grpc", 1, 1)],
)
def test_default_workers(transport: str, cores: int, workers: int) -> None:
    """make run's default: a core each, less one for the gateway (and
    nats-server); over gRPC the gateway balances the workers' addresses."""
    assert default_workers(transport, cores) == workers
