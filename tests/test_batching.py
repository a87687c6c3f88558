"""The Python dynamic batcher seen from the edge: requests that arrive together run as one batch,
and a full queue is refused with 429 rather than left to wait.

The batcher is observed through the service's own batch-size metric. To make
"together" and "full" certain rather than a matter of timing, these tests serve
a copy of `digits` whose batcher waits up to 200 ms for more rows (the shipped
config waits for none) and holds at most four requests.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from tandem_stack.stack import MODELS, TRANSPORTS, Stack

from conftest import infer_body, model_runs, post_concurrently, probabilities

Digits = tuple[np.ndarray, np.ndarray]
QUEUE = 4


@pytest.fixture(scope="module")
def slow_batching_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("models")
    shutil.copytree(MODELS / "digits", repo / "digits")
    config = repo / "digits" / "config.toml"
    text = re.sub(r"max_queue_delay_us = \d+", "max_queue_delay_us = 200000", config.read_text())
    text = re.sub(r"max_queue_size = \d+", f"max_queue_size = {QUEUE}", text)
    config.write_text(text)
    return repo


@pytest.fixture(scope="module", params=TRANSPORTS)
def batching(request: pytest.FixtureRequest, slow_batching_models: Path) -> Iterator[Stack]:
    # Without edge coalescing: merged at the gateway, the requests would never fill the queue.
    s = Stack(transport=request.param, models=slow_batching_models, routing=None)
    with s:
        yield s


def fire_together(stack: Stack, rows: np.ndarray) -> list[httpx.Response]:
    return post_concurrently(stack, [("/v2/models/digits/infer", infer_body(row)) for row in rows])


def test_requests_arriving_together_run_as_one_batch(
    batching: Stack, digits: Digits, reference: np.ndarray
) -> None:
    runs, rows = model_runs(batching)
    responses = fire_together(batching, digits[0][:QUEUE])
    got = np.concatenate([probabilities(r) for r in responses])
    np.testing.assert_allclose(got, reference[:QUEUE], atol=1e-5)
    runs_after, rows_after = model_runs(batching)
    assert rows_after - rows == QUEUE
    assert runs_after - runs < QUEUE, "no two requests shared a model run"


def test_full_queue_is_429_and_the_rest_are_served(
    batching: Stack, digits: Digits, reference: np.ndarray
) -> None:
    n = 40
    responses = fire_together(batching, digits[0][:n])
    refused = [i for i, r in enumerate(responses) if r.status_code == 429]
    served = [i for i, r in enumerate(responses) if r.status_code == 200]
    assert refused, "forty requests into a queue of four: some must be refused"
    assert sorted(refused + served) == list(range(n)), [r.status_code for r in responses]
    for i in refused:
        assert "queue is full" in responses[i].json()["error"]
        assert int(responses[i].headers["retry-after"]) >= 1
    for i in served:
        np.testing.assert_allclose(probabilities(responses[i]), reference[i : i + 1], atol=1e-5)
