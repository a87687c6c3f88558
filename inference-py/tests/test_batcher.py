"""The dynamic batcher over the real ONNX Runtime digits model.

Batching is observed through `BatchStats` (the rows of every model call), never
through timing: a test only says what ran together, not how fast.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from tandem_inference.backends import Backend, backend_class
from tandem_inference.batcher import DynamicBatcher
from tandem_inference.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from tandem_inference.model_config import DynamicBatching, ModelConfig, read_config
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.repository import ModelRepository
from tandem_inference.service import InferenceService

from doubles import Gated
from messages import probabilities, raw_request

Digits = tuple[np.ndarray, np.ndarray]


def load_onnx(model_repository: Path) -> tuple[Backend, ModelConfig]:
    config = read_config(model_repository / "digits")
    artifact = model_repository / "digits" / "1" / "model.onnx"
    return backend_class(config.backend).load(artifact, config), config


@pytest.fixture(scope="module")
def onnx(model_repository: Path) -> tuple[Backend, ModelConfig]:
    return load_onnx(model_repository)


def with_policy(config: ModelConfig, **policy: Any) -> ModelConfig:
    return dataclasses.replace(config, dynamic_batching=DynamicBatching(**policy))


@pytest.fixture
def batcher(onnx: tuple[Backend, ModelConfig]) -> Iterator[DynamicBatcher]:
    b = DynamicBatcher(*onnx)
    yield b
    b.close()


def rows_of(pixels: np.ndarray, *sizes: int) -> list[np.ndarray]:
    bounds = np.cumsum(sizes)
    return [pixels[a - n : a] for a, n in zip(bounds, sizes, strict=True)]


async def test_requests_that_arrive_together_run_as_one_batch(
    onnx: tuple[Backend, ModelConfig], digits: Digits
) -> None:
    # A long delay: the batch runs when it is full (32 rows), not when the delay ends.
    backend, config = onnx
    config = dataclasses.replace(config, max_batch_size=32)
    b = DynamicBatcher(backend, with_policy(config, max_queue_delay_us=10_000_000))
    try:
        rows = rows_of(digits[0], *([1] * 32))
        results = await asyncio.gather(*(b.infer({"pixels": r}) for r in rows))
    finally:
        b.close()
    assert b.stats.sizes == {32: 1}
    assert b.stats.requests == 32
    expected = backend.run({"pixels": digits[0][:32]})["probabilities"]
    np.testing.assert_allclose(
        np.concatenate([r["probabilities"] for r in results]), expected, atol=1e-6
    )


async def test_under_load_batches_grow_by_themselves(
    batcher: DynamicBatcher, digits: Digits
) -> None:
    """Default policy: the first request runs alone at once; the rest queue behind it and
    become the next batch, with no delay configured."""
    rows = rows_of(digits[0], *([1] * 64))
    await asyncio.gather(*(batcher.infer({"pixels": r}) for r in rows))
    assert batcher.stats.sizes == {1: 1, 63: 1}


async def test_each_caller_gets_exactly_its_own_rows(
    batcher: DynamicBatcher, onnx: tuple[Backend, ModelConfig], digits: Digits
) -> None:
    sizes = (3, 1, 7, 2, 5, 1, 4, 9, 2, 6)
    requests = rows_of(digits[0], *sizes)
    results = await asyncio.gather(*(batcher.infer({"pixels": r}) for r in requests))
    assert max(batcher.stats.sizes) > max(sizes), "nothing was batched"
    backend, _ = onnx
    for pixels, result in zip(requests, results, strict=True):
        alone = backend.run({"pixels": pixels})["probabilities"]
        assert result["probabilities"].shape == (len(pixels), 10)
        np.testing.assert_allclose(result["probabilities"], alone, atol=1e-6)


async def test_a_batch_never_exceeds_max_batch_size(
    batcher: DynamicBatcher, digits: Digits
) -> None:
    rows = rows_of(np.resize(digits[0], (600, 64)), *([50] * 12))
    await asyncio.gather(*(batcher.infer({"pixels": r}) for r in rows))
    assert max(batcher.stats.sizes) <= 128
    assert batcher.stats.sizes.total() < 12


async def test_preferred_batch_size_cuts_the_batch(
    onnx: tuple[Backend, ModelConfig], digits: Digits
) -> None:
    backend, config = onnx
    policy = {"max_queue_delay_us": 20_000, "preferred_batch_size": (16,)}
    b = DynamicBatcher(backend, with_policy(config, **policy))
    try:
        rows = rows_of(digits[0], *([1] * 20))
        await asyncio.gather(*(b.infer({"pixels": r}) for r in rows))
    finally:
        b.close()
    # 16 rows form a preferred batch and run at once; the other 4 run when the delay ends.
    assert b.stats.sizes == {16: 1, 4: 1}


async def test_one_request_alone_runs_at_once(
    onnx: tuple[Backend, ModelConfig], digits: Digits
) -> None:
    """With the default policy, a request that finds the model idle is taken by the model
    in the same loop step; with a delay configured, it would still be queued."""
    backend, config = onnx
    eager = DynamicBatcher(backend, config)
    patient = DynamicBatcher(backend, with_policy(config, max_queue_delay_us=10_000_000))
    try:
        tasks = [asyncio.create_task(b.infer({"pixels": digits[0][:1]})) for b in (eager, patient)]
        await asyncio.sleep(0)
        assert (eager.queued, patient.queued) == (0, 1)
        await tasks[0]
        assert eager.stats.sizes == {1: 1}
        tasks[1].cancel()
    finally:
        eager.close()
        patient.close()


@pytest_asyncio.fixture
async def gated(onnx: tuple[Backend, ModelConfig]) -> AsyncIterator[tuple[DynamicBatcher, Gated]]:
    backend, config = onnx
    gate = Gated(backend)
    b = DynamicBatcher(gate, with_policy(config, max_queue_size=2))
    yield b, gate
    gate.gate.set()
    b.close()


async def test_a_full_queue_refuses_at_once(
    gated: tuple[DynamicBatcher, Gated], digits: Digits
) -> None:
    b, gate = gated
    one = {"pixels": digits[0][:1]}
    running = asyncio.create_task(b.infer(one))
    assert await asyncio.to_thread(gate.started.wait, 10)
    waiting = [asyncio.create_task(b.infer(one)) for _ in range(2)]
    await asyncio.sleep(0)
    assert b.queued == 2
    with pytest.raises(
        ResourceExhausted,
        match=r'model "digits" is overloaded: its queue is full \(max_queue_size 2\); '
        "retry later",
    ):
        await b.infer(one)
    gate.gate.set()
    await asyncio.gather(running, *waiting)
    assert b.stats.requests == 3


async def test_a_request_whose_deadline_passed_in_the_queue_is_not_run(
    gated: tuple[DynamicBatcher, Gated], digits: Digits
) -> None:
    b, gate = gated
    loop = asyncio.get_running_loop()
    running = asyncio.create_task(b.infer({"pixels": digits[0][:1]}))
    assert await asyncio.to_thread(gate.started.wait, 10)
    late = asyncio.create_task(b.infer({"pixels": digits[0][1:2]}, deadline=loop.time() + 0.01))
    on_time = asyncio.create_task(b.infer({"pixels": digits[0][2:3]}, deadline=loop.time() + 60))
    await asyncio.sleep(0.05)
    gate.gate.set()
    await running
    with pytest.raises(DeadlineExceeded, match=r"deadline passed after .* ms in the queue"):
        await late
    assert (await on_time)["probabilities"].shape == (1, 10)
    # The late request never reached the model: two calls, one row each.
    assert b.stats.sizes == {1: 2}


async def test_a_request_whose_caller_went_away_is_not_run(
    gated: tuple[DynamicBatcher, Gated], digits: Digits
) -> None:
    b, gate = gated
    running = asyncio.create_task(b.infer({"pixels": digits[0][:1]}))
    assert await asyncio.to_thread(gate.started.wait, 10)
    gone = asyncio.create_task(b.infer({"pixels": digits[0][1:3]}))
    await asyncio.sleep(0)
    gone.cancel()
    stays = asyncio.create_task(b.infer({"pixels": digits[0][3:4]}))
    gate.gate.set()
    await asyncio.gather(running, stays)
    assert gone.cancelled()
    assert b.stats.sizes == {1: 2}


async def test_what_waits_when_the_batcher_closes_is_refused(
    onnx: tuple[Backend, ModelConfig], digits: Digits
) -> None:
    backend, config = onnx
    gate = Gated(backend)
    b = DynamicBatcher(gate, config)
    running = asyncio.create_task(b.infer({"pixels": digits[0][:1]}))
    assert await asyncio.to_thread(gate.started.wait, 10)
    waiting = asyncio.create_task(b.infer({"pixels": digits[0][1:2]}))
    await asyncio.sleep(0)
    # close() blocks until the running call ends, so the gate opens from another thread.
    threading.Timer(0.05, gate.gate.set).start()
    b.close()
    assert (await running)["probabilities"].shape == (1, 10)
    with pytest.raises(Unavailable, match='model "digits" is shutting down'):
        await waiting
    with pytest.raises(Unavailable, match='model "digits" is shutting down'):
        await b.infer({"pixels": digits[0][:1]})


async def test_a_bad_request_does_not_fail_its_neighbours(
    model_repository: Path, digits: Digits
) -> None:
    batchers: dict[str, DynamicBatcher] = {}

    def factory(backend: Backend, config: ModelConfig) -> DynamicBatcher:
        # Wait long enough for all of them, so that the good ones share a batch.
        policy = with_policy(config, max_queue_delay_us=50_000)
        batchers[config.name] = DynamicBatcher(backend, policy)
        return batchers[config.name]

    repo = ModelRepository(model_repository, runner_factory=factory)
    repo.load()
    service = InferenceService(repo)
    pixels = digits[0]
    bad = raw_request(pixels[:2, :63])
    good = [raw_request(pixels[i : i + 2]) for i in range(0, 8, 2)]
    try:
        results = await asyncio.gather(
            *(service.model_infer(r) for r in [good[0], good[1], bad, good[2], good[3]]),
            return_exceptions=True,
        )
    finally:
        repo.close()
    assert isinstance(results[2], InvalidArgument)
    answers = [r for i, r in enumerate(results) if i != 2]
    assert all(isinstance(a, pb.ModelInferResponse) for a in answers), answers
    got = np.concatenate(
        [probabilities(a) for a in answers if isinstance(a, pb.ModelInferResponse)]
    )
    expected = reference(model_repository, pixels[:8])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert batchers["digits"].stats.sizes == {8: 1}


def reference(model_repository: Path, pixels: np.ndarray) -> np.ndarray:
    backend, _ = load_onnx(model_repository)
    return backend.run({"pixels": pixels})["probabilities"]


async def test_a_failing_model_fails_only_its_batch(
    onnx: tuple[Backend, ModelConfig], digits: Digits
) -> None:
    backend, config = onnx

    class Flaky(Gated):
        calls = 0

        def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("the first call fails")
            return self.inner.run(inputs)

    b = DynamicBatcher(Flaky(backend), config)
    try:
        first, *rest = await asyncio.gather(
            *(b.infer({"pixels": digits[0][i : i + 1]}) for i in range(5)),
            return_exceptions=True,
        )
    finally:
        b.close()
    assert isinstance(first, RuntimeError)
    assert all(isinstance(r, dict) for r in rest)


class Recording(Backend):
    """The real backend, noting on which thread each call ran; it fails while `fail`."""

    platforms = ("onnxruntime_onnx",)
    default_filename = "model.onnx"

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.threads: list[int] = []
        self.fail = False

    @classmethod
    def load(cls, artifact: Path, config: ModelConfig) -> Recording:
        raise NotImplementedError("wrap a loaded backend instead")

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.threads.append(threading.get_ident())
        if self.fail:
            raise InvalidArgument("the model failed")
        return self.inner.run(inputs)


# So large that any call of the digits model is "cheap": no test depends on a time.
CHEAP_US = 10_000_000


async def test_an_idle_cheap_model_runs_on_the_event_loop(
    onnx: tuple[Backend, ModelConfig], digits: Digits
) -> None:
    backend, config = onnx
    recording = Recording(backend)
    b = DynamicBatcher(recording, with_policy(config, inline_execute_us=CHEAP_US))
    try:
        results = [await b.infer({"pixels": digits[0][i : i + 1]}) for i in range(4)]
    finally:
        b.close()
    loop_thread = threading.get_ident()
    # The first call is measured on the model's thread; then the loop runs them.
    assert recording.threads[0] != loop_thread
    assert recording.threads[1:] == [loop_thread] * 3
    expected = backend.run({"pixels": digits[0][:4]})["probabilities"]
    got = np.concatenate([r["probabilities"] for r in results])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


async def test_requests_that_arrive_together_batch_on_the_thread(
    onnx: tuple[Backend, ModelConfig], digits: Digits
) -> None:
    backend, config = onnx
    recording = Recording(backend)
    config = dataclasses.replace(config, max_batch_size=4)
    b = DynamicBatcher(recording, with_policy(config, inline_execute_us=CHEAP_US))
    try:
        await b.infer({"pixels": digits[0][:1]})  # measured on the thread
        await b.infer({"pixels": digits[0][:1]})  # alone: on the loop
        rows = rows_of(digits[0], *([1] * 10))
        await asyncio.gather(*(b.infer({"pixels": r}) for r in rows))
    finally:
        b.close()
    assert b.stats.sizes == {1: 2, 4: 2, 2: 1}
    loop_thread = threading.get_ident()
    assert recording.threads[1] == loop_thread
    assert loop_thread not in recording.threads[2:]


async def test_a_slow_model_and_a_busy_one_stay_on_the_thread(
    onnx: tuple[Backend, ModelConfig], digits: Digits
) -> None:
    backend, config = onnx
    gated = Gated(backend)
    # Every call of a gated model takes longer than 1 µs: it waits for the test.
    b = DynamicBatcher(gated, with_policy(config, inline_execute_us=1))
    try:
        first = asyncio.ensure_future(b.infer({"pixels": digits[0][:1]}))
        await asyncio.to_thread(gated.started.wait, 10)
        # Busy: arrivals queue for the thread's next batch.
        later = [asyncio.ensure_future(b.infer({"pixels": digits[0][:1]})) for _ in range(3)]
        await asyncio.sleep(0)
        assert b.queued == 3
        gated.gate.set()
        await asyncio.gather(first, *later)
        await b.infer({"pixels": digits[0][:1]})
    finally:
        b.close()
    assert b.stats.sizes == {1: 2, 3: 1}


async def test_never_inline_when_inline_execute_us_is_0(
    onnx: tuple[Backend, ModelConfig], digits: Digits
) -> None:
    backend, config = onnx
    recording = Recording(backend)
    b = DynamicBatcher(recording, with_policy(config, inline_execute_us=0))
    try:
        for i in range(3):
            await b.infer({"pixels": digits[0][i : i + 1]})
    finally:
        b.close()
    assert threading.get_ident() not in recording.threads


async def test_an_inline_failure_reaches_its_callers_and_the_next_one_runs(
    onnx: tuple[Backend, ModelConfig], digits: Digits
) -> None:
    backend, config = onnx
    recording = Recording(backend)
    b = DynamicBatcher(recording, with_policy(config, inline_execute_us=CHEAP_US))
    try:
        await b.infer({"pixels": digits[0][:1]})
        recording.fail = True
        with pytest.raises(InvalidArgument, match="the model failed"):
            await b.infer({"pixels": digits[0][:1]})
        recording.fail = False
        result = await b.infer({"pixels": digits[0][:1]})
    finally:
        b.close()
    assert recording.threads[1:] == [threading.get_ident()] * 2
    assert result["probabilities"].shape == (1, 10)
