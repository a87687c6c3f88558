"""Edge coalescing with the shipped routing config (the harness's default): merged calls, each
caller its own answer."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from tandem_stack.stack import ROUTING, TRANSPORTS, Stack

from conftest import infer_body, model_runs, post_concurrently, probabilities

Digits = tuple[np.ndarray, np.ndarray]


@pytest.fixture(scope="module", params=TRANSPORTS)
def coalescing(request: pytest.FixtureRequest) -> Iterator[Stack]:
    s = Stack(transport=request.param, routing=ROUTING)
    with s:
        yield s


def test_thousand_concurrent_requests_get_their_own_answers(
    coalescing: Stack, digits: Digits, reference: np.ndarray
) -> None:
    n = 1000
    rows = np.resize(digits[0], (n, 64))
    expected = np.resize(reference, (n, 10))
    ids = [f"caller-{i}" for i in range(n)]

    requests = [
        ("/v2/models/digits/infer", infer_body(row, id=rid))
        for row, rid in zip(rows, ids, strict=True)
    ]
    runs, _ = model_runs(coalescing)
    responses = post_concurrently(coalescing, requests)
    got = np.concatenate([probabilities(r) for r in responses])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [r.json()["id"] for r in responses] == ids
    runs_after, _ = model_runs(coalescing)
    assert runs_after - runs < n, "a thousand requests in flight and none shared a model run"


def test_one_at_a_time_is_never_merged(
    coalescing: Stack, digits: Digits, reference: np.ndarray
) -> None:
    with httpx.Client(base_url=coalescing.rest_url, timeout=10) as c:
        runs, rows = model_runs(coalescing)
        for i in range(20):
            got = probabilities(c.post("/v2/models/digits/infer", json=infer_body(digits[0][i])))
            np.testing.assert_allclose(got, reference[i : i + 1], atol=1e-5)
        runs_after, rows_after = model_runs(coalescing)
    assert (runs_after - runs, rows_after - rows) == (20, 20)
