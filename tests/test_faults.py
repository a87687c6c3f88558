"""Faults with real processes, each one counted: every request sent gets exactly one
answer, its own or an error status; none runs twice; overload is refused, not queued.

A stalled worker is a real one stopped with SIGSTOP (and resumed with SIGCONT),
so that work piles up exactly where it would behind a slow model. No test
asserts a time: "at once" is shown causally, by answers that arrive while the
worker is still stopped.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
from tandem_stack.stack import TRANSPORTS, Stack

from conftest import infer_body, metric, model_runs, post_concurrently, probabilities

Digits = tuple[np.ndarray, np.ndarray]
INFER = "/v2/models/digits/infer"


@contextmanager
def stalled(stack: Stack, name: str = "inference-py") -> Iterator[None]:
    """The worker stopped (SIGSTOP) for the block, and always resumed after it."""
    popen = stack.process(name).popen
    assert popen is not None
    os.kill(popen.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(popen.pid, signal.SIGCONT)


def settle(stack: Stack, client: httpx.Client, digits: Digits) -> None:
    """One fresh request answered: whatever the worker held before it has been run or
    dropped by now, because the worker takes its queue in order."""
    r = client.post(INFER, json=infer_body(digits[0][0]))
    assert r.status_code == 200, r.text


# --- overload ---


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_overload_is_refused_at_once(transport: str, digits: Digits) -> None:
    """Ten times more callers than the limit while the only worker is stalled: the excess
    gets 429 with Retry-After while the worker is still stopped (not a wait for the
    timeout), the admitted ones are served once it resumes, and nothing gets 504."""
    limit, n = 32, 320
    s = Stack(transport=transport, gateway_args=["--max-in-flight", str(limit), "--timeout", "60s"])
    with s, httpx.Client(base_url=s.rest_url, timeout=60) as client:
        body = infer_body(digits[0][0])

        async def go() -> tuple[list[httpx.Response], list[httpx.Response]]:
            limits = httpx.Limits(max_connections=n)
            async with httpx.AsyncClient(base_url=s.rest_url, limits=limits, timeout=90) as c:
                with stalled(s):
                    tasks = [asyncio.create_task(c.post(INFER, json=body)) for _ in range(n)]
                    for _ in range(600):  # bounded: 30 s at most
                        if sum(t.done() for t in tasks) >= n - limit:
                            break
                        await asyncio.sleep(0.05)
                    early = [t.result() for t in tasks if t.done()]
                rest = [r for r in await asyncio.gather(*tasks) if r not in early]
                return early, rest

        early, rest = asyncio.run(go())
        print(
            f"overload ({transport}): sent {n}, while stalled "
            f"{dict(Counter(r.status_code for r in early))}, "
            f"after {dict(Counter(r.status_code for r in rest))}"
        )
        assert len(early) == n - limit, Counter(r.status_code for r in early)
        assert all(r.status_code == 429 for r in early), Counter(r.status_code for r in early)
        assert all(int(r.headers["retry-after"]) >= 1 for r in early)
        assert "digits" in early[0].json()["error"]
        assert Counter(r.status_code for r in rest) == {200: limit}

        text = httpx.get(f"http://{s.admin_addr}/metrics", timeout=10).text
        refused = metric(text, "tandem_gateway_refused_total", model="digits", reason="overloaded")
        assert refused == n - limit
        settle(s, client, digits)


# --- deadlines and disconnects stop work ---


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_deadlines_stop_work(transport: str, digits: Digits) -> None:
    """A client's budget (Request-Timeout, or the OIP `timeout` parameter in µs) shorter
    than the wait: 504 while the worker is stopped, and the expired work never runs."""
    with (
        Stack(transport=transport, routing=None) as s,
        httpx.Client(base_url=s.rest_url, timeout=30) as c,
    ):
        settle(s, c, digits)
        runs, _ = model_runs(s)
        body = infer_body(digits[0][1])
        with stalled(s):
            by_header = c.post(INFER, json=body, headers={"Request-Timeout": "0.3"})
            by_parameter = c.post(INFER, json={**body, "parameters": {"timeout": 300_000}})
        for r in (by_header, by_parameter):
            assert r.status_code == 504, r.text
            assert r.json()["error"]
        settle(s, c, digits)
        assert model_runs(s)[0] == runs + 1  # only the settling request ran

        bad = c.post(INFER, json=body, headers={"Request-Timeout": "soon"})
        assert bad.status_code == 400
        assert "Request-Timeout" in bad.json()["error"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_that_disconnects_cancels_its_call(transport: str, digits: Digits) -> None:
    """A client gives up mid-request: its pending call is cancelled over the hop and the
    model never runs it."""
    with (
        Stack(transport=transport, routing=None) as s,
        httpx.Client(base_url=s.rest_url, timeout=30) as c,
    ):
        settle(s, c, digits)
        runs, _ = model_runs(s)
        with stalled(s), httpx.Client(base_url=s.rest_url, timeout=0.5) as impatient:
            for row in digits[0][1:4]:
                with pytest.raises(httpx.ReadTimeout):
                    impatient.post(INFER, json=infer_body(row))
            # Let the gateway see the disconnects and send the cancels before resuming.
            time.sleep(0.5)
        settle(s, c, digits)
        assert model_runs(s)[0] == runs + 1


# --- no request runs twice ---


def test_stalled_worker_runs_each_request_once(digits: Digits, reference: np.ndarray) -> None:
    """A worker paused for 3 s with 20 requests in flight (once, each was sent again at the
    attempt timeout and ran twice): every caller gets its own answer, and the model runs
    20 rows, not 40."""
    n = 20
    with (
        Stack(transport="nats", routing=None) as s,
        httpx.Client(base_url=s.rest_url, timeout=30) as c,
    ):
        settle(s, c, digits)
        _, rows_before = model_runs(s)
        results: dict[int, httpx.Response] = {}

        async def go() -> None:
            async with httpx.AsyncClient(base_url=s.rest_url, timeout=30) as ac:
                with stalled(s):
                    tasks = {
                        i: asyncio.create_task(ac.post(INFER, json=infer_body(digits[0][i])))
                        for i in range(n)
                    }
                    await asyncio.sleep(3)
                for i, t in tasks.items():
                    results[i] = await t

        asyncio.run(go())
        for i, r in results.items():
            np.testing.assert_allclose(probabilities(r), reference[i : i + 1], atol=1e-5)
        executed = model_runs(s)[1] - rows_before
        print(f"stalled worker: sent {n}, answered {len(results)}, rows executed {executed}")
        assert executed == n


def test_worker_killed_under_load(digits: Digits, reference: np.ndarray) -> None:
    """SIGKILL one worker of two mid-load. Every request gets one answer: its own, or 504
    for those the dead worker held (nobody can know whether it ran them, so they are not
    sent again); the survivor serves everything after."""
    n, concurrency = 600, 16
    s = Stack(transport="nats", workers=2, routing=None, gateway_args=["--timeout", "3s"])
    with s:
        victim = s.process("inference-py-2")
        rows = np.resize(digits[0], (n, 64))
        expected = np.resize(reference, (n, 10))
        requests = [(INFER, infer_body(row)) for row in rows]
        responses = post_concurrently(
            s, requests, concurrency, midway=lambda: victim.stop(signal.SIGKILL)
        )
        assert not victim.running
        codes = Counter(r.status_code for r in responses)
        print(f"worker killed: sent {n}, answered {dict(codes)}")
        assert set(codes) <= {200, 504}, codes
        assert codes[504] <= concurrency, codes
        for i, r in enumerate(responses):
            if r.status_code == 200:
                np.testing.assert_allclose(probabilities(r), expected[i : i + 1], atol=1e-5)
        after = post_concurrently(s, requests[:50], 4)
        assert Counter(r.status_code for r in after) == {200: 50}


# --- drains ---


def test_gateway_sigterm_drains(digits: Digits) -> None:
    """SIGTERM on the gateway under steady load: readiness turns 503 while requests are
    still served, then the listener closes; every request that was accepted got 200,
    and the only failures are connections refused after the close."""
    s = Stack(gateway_args=["--drain-delay", "1s"])
    outcomes: list[str] = []
    ready_after_term: list[int] = []
    with s:
        stop = threading.Event()
        termed = threading.Event()
        body = infer_body(digits[0][0])

        def load() -> None:
            with httpx.Client(base_url=s.rest_url, timeout=30) as c:
                for _ in range(3000):  # bounded
                    if stop.is_set():
                        return
                    try:
                        r = c.post(INFER, json=body)
                        outcomes.append(str(r.status_code))
                    except httpx.ConnectError:
                        outcomes.append("refused")
                    except (httpx.RemoteProtocolError, httpx.ReadError):
                        # Closed (or reset, when unread bytes were in its buffer) with no
                        # answer and never read: an idle connection the drain closed as
                        # this request went out, or one still queued when the listener
                        # closed. As good as refused, but only after SIGTERM.
                        outcomes.append("refused" if termed.is_set() else "dropped")
                    except httpx.HTTPError as err:
                        outcomes.append(type(err).__name__)
                    if termed.is_set():
                        try:
                            ready = c.get("/v2/health/ready").status_code
                            ready_after_term.append(ready)
                        except httpx.HTTPError:
                            pass
                    if outcomes.count("refused") >= 5:
                        return

        thread = threading.Thread(target=load)
        thread.start()
        for _ in range(200):
            if len(outcomes) >= 50:
                break
            time.sleep(0.05)
        gateway = s.process("gateway").popen
        assert gateway is not None
        gateway.send_signal(signal.SIGTERM)
        termed.set()
        assert gateway.wait(30) == 0
        thread.join(30)
        stop.set()
    counts = Counter(outcomes)
    print(f"gateway SIGTERM: sent {len(outcomes)}, outcomes {dict(counts)}")
    assert set(counts) <= {"200", "refused"}, counts
    assert counts["200"] >= 50
    assert 503 in ready_after_term, ready_after_term
    first_refused = outcomes.index("refused") if "refused" in outcomes else len(outcomes)
    assert all(o == "200" for o in outcomes[:first_refused])


def test_worker_sigterm_drains(digits: Digits, reference: np.ndarray) -> None:
    """SIGTERM one of two NATS workers mid-load: it answers what it took, the other takes
    the rest, and no request fails."""
    n = 400
    with Stack(transport="nats", workers=2, routing=None) as s:
        rows = np.resize(digits[0], (n, 64))
        expected = np.resize(reference, (n, 10))
        leaving = s.process("inference-py-2")
        responses = post_concurrently(
            s,
            [(INFER, infer_body(row)) for row in rows],
            16,
            midway=lambda: leaving.stop(signal.SIGTERM),
        )
        assert leaving.popen is not None
        assert leaving.popen.returncode == 0
        got = np.concatenate([probabilities(r) for r in responses])
        np.testing.assert_allclose(got, expected, atol=1e-5)
