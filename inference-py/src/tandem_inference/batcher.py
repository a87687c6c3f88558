"""The dynamic batcher: the Runner that merges concurrent requests into one model call.

In the spirit of Triton's dynamic batcher. Each model version gets one queue and
one executor thread (its "instance"); the event loop runs only a cheap model's
lone requests (below).

- A request joins the queue only after the service has validated it, so a bad
  request never fails a batch.
- When the model is idle and requests wait, the next batch starts at once (with
  the default `max_queue_delay_us = 0`); while it runs, new requests queue up and
  become the next batch, so under load batches grow by themselves and at low load
  nothing waits. A positive delay lets a request wait up to that long for others,
  unless the queue already holds a full batch.
- A batch is the oldest live request and, in arrival order, the requests with the
  same input signature (names, datatypes and shapes apart from the batch
  dimension) that still fit under max_batch_size. If `preferred_batch_size` lists
  sizes and the batch can be cut at one of them on a request boundary, it is cut
  at the largest; the rest waits for the next run.
- Inputs are concatenated along the batch dimension, run once, and the outputs are
  split back, so each caller gets exactly its own rows. The backend always computes
  every output the model declares; the service picks the requested ones, so the
  requested outputs do not make requests incompatible.
- The queue is bounded (`max_queue_size` requests): beyond it a request is refused
  at once with ResourceExhausted. A request whose deadline passed while it waited
  is not run (DeadlineExceeded); one whose caller went away (its future
  cancelled) leaves the queue at once and is never run.

- A lone request for a cheap model runs on the event loop instead: when the model
  is idle, nothing else waits, and a moving average of its calls' time is under
  `inline_execute_us` (default 200 µs), the hand-off to the model's thread and back
  (tens of µs) costs more than the call. The first call always runs on the thread,
  so a model is measured before it is trusted; a batch of several requests, a busy
  model and a slow one always use the thread.

Models run with one intra-op thread (the backends' defaults), so the process uses
one thread per model version for models plus the event loop: throughput comes from
batch size, not from thread pools competing for the cores. ONNX Runtime and PyTorch
release the GIL while they compute, so the loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter, deque
from collections.abc import Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tandem_inference import metrics
from tandem_inference.errors import DeadlineExceeded, Internal, ResourceExhausted, Unavailable
from tandem_inference.runner import BatchRun, Timing

if TYPE_CHECKING:
    from tandem_inference.backends import Backend
    from tandem_inference.model_config import ModelConfig

Outputs = dict[str, np.ndarray]
# The weight of the latest model call in the moving average of its time.
EWMA_WEIGHT = 0.2


class BatchStats:
    """What the batcher ran: the batch size (rows) of every model call.

    The tests read it to see batching happen; the `tandem_inference_batch_size`
    histogram and the `tandem.batch_size` span attribute report the same to operators.
    """

    def __init__(self) -> None:
        # batch size in rows -> number of model calls of that size
        self.sizes: Counter[int] = Counter()
        self.requests = 0

    @property
    def runs(self) -> int:
        return self.sizes.total()

    def record(self, rows: int, requests: int) -> None:
        self.sizes[rows] += 1
        self.requests += requests


@dataclass(slots=True, eq=False)
class _Queued:
    inputs: Mapping[str, np.ndarray]
    rows: int
    signature: Hashable
    future: asyncio.Future[Outputs]
    deadline: float | None
    queued_at: float  # loop time, for the deadline and the delay
    queued_ns: int  # time.monotonic_ns(), the clock of BatchRun
    timing: Timing | None


class DynamicBatcher:
    """Queues requests for one model version and runs them in batches on its own thread."""

    def __init__(self, backend: Backend, config: ModelConfig) -> None:
        self._backend = backend
        self._name = config.name
        labels = (config.name, config.backend)
        self._batch_size = metrics.BATCH_SIZE.labels(*labels)
        self._queue_seconds = metrics.QUEUE_SECONDS.labels(*labels)
        self._execute_seconds = metrics.EXECUTE_SECONDS.labels(*labels)
        self._batched = config.batched
        # A model without a batch dimension takes one request per call.
        self._max_rows = config.max_batch_size if config.batched else 1
        policy = config.dynamic_batching
        self._delay = policy.max_queue_delay_us / 1e6
        self._preferred = frozenset(policy.preferred_batch_size)
        self._full = max(policy.preferred_batch_size, default=self._max_rows)
        self._max_queue = policy.max_queue_size
        self._inline_ns = policy.inline_execute_us * 1000
        # A moving average of the model call's time, once one was measured.
        self._execute_ns: float | None = None
        self._queue: deque[_Queued] = deque()
        self._queued_rows = 0
        self._busy = False
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._soon = False
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"tandem-model-{config.name}"
        )
        self.stats = BatchStats()
        metrics.QUEUE_DEPTH.watch(self)

    @property
    def model(self) -> str:
        return self._name

    @property
    def closed(self) -> bool:
        return self._closed

    async def infer(
        self,
        inputs: Mapping[str, np.ndarray],
        deadline: float | None = None,
        timing: Timing | None = None,
    ) -> Outputs:
        if self._closed:
            raise Unavailable(f'model "{self._name}" is shutting down')
        if len(self._queue) >= self._max_queue:
            raise ResourceExhausted(
                f'model "{self._name}" is overloaded: its queue is full '
                f"(max_queue_size {self._max_queue}); retry later"
            )
        loop = asyncio.get_running_loop()
        rows = len(next(iter(inputs.values()))) if self._batched else 1
        signature = tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(inputs.items()))
        queued = _Queued(
            inputs,
            rows,
            signature,
            loop.create_future(),
            deadline,
            loop.time(),
            time.monotonic_ns(),
            timing,
        )
        self._queue.append(queued)
        self._queued_rows += rows
        # A caller that goes away (gRPC cancellation, a NATS cancel) cancels the
        # future: its request leaves the queue at once and is never run.
        queued.future.add_done_callback(functools.partial(self._forget, queued))
        if self._busy or self._delay > 0 or not self._cheap():
            self._dispatch()
        elif not self._soon:
            # Dispatch after the callbacks ready now: requests that arrive in this
            # turn of the loop join the batch (then it goes to the thread).
            self._soon = True
            loop.call_soon(self._dispatch_soon)
        return await queued.future

    @property
    def queued(self) -> int:
        """Requests waiting for the model (the ones it is running are not counted)."""
        return len(self._queue)

    def _forget(self, queued: _Queued, future: asyncio.Future[Outputs]) -> None:
        if future.cancelled() and queued in self._queue:
            self._queue.remove(queued)
            self._queued_rows -= queued.rows

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=True)

    def _dispatch(self) -> None:
        """Start the next batch if the model is idle and the policy says go."""
        if self._busy or not self._queue:
            return
        if self._closed:
            while self._queue:
                queued = self._queue.popleft()
                if not queued.future.done():
                    queued.future.set_exception(
                        Unavailable(f'model "{self._name}" is shutting down')
                    )
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._delay > 0 and self._queued_rows < self._full:
            due = self._queue[0].queued_at + self._delay
            if now < due:
                if self._timer is None:
                    self._timer = loop.call_at(due, self._on_timer)
                return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = self._take(now)
        if not batch:
            return
        self._busy = True
        run = BatchRun(
            rows=sum(q.rows for q in batch), requests=len(batch), taken_ns=time.monotonic_ns()
        )
        inputs = [q.inputs for q in batch]
        if len(batch) == 1 and not self._queue and self._cheap():
            # A lone request for a cheap model: run it here, no hand-off. (Batches
            # of several go to the thread: inline they measured slower under load.)
            try:
                outputs = self._run(run, inputs)
            except Exception as err:  # to the callers, as from the thread
                self._complete(run, batch, err, [])
            else:
                self._complete(run, batch, None, outputs)
            return
        running = loop.run_in_executor(self._executor, self._run, run, inputs)
        running.add_done_callback(functools.partial(self._finish, run, batch))

    def _cheap(self) -> bool:
        """Whether the model's calls have been taking under `inline_execute_us`."""
        return self._execute_ns is not None and self._execute_ns < self._inline_ns

    def _dispatch_soon(self) -> None:
        self._soon = False
        self._dispatch()

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take(self, now: float) -> list[_Queued]:
        batch: list[_Queued] = []
        others: list[_Queued] = []
        rows = 0
        while self._queue:
            queued = self._queue.popleft()
            if queued.future.done():  # the caller went away
                self._queued_rows -= queued.rows
                continue
            if queued.deadline is not None and queued.deadline <= now:
                self._queued_rows -= queued.rows
                waited_ms = (now - queued.queued_at) * 1e3
                queued.future.set_exception(
                    DeadlineExceeded(
                        f'model "{self._name}": the deadline passed after {waited_ms:.1f} ms '
                        "in the queue; the request was not run"
                    )
                )
                continue
            if batch and queued.signature != batch[0].signature:
                others.append(queued)
                continue
            if batch and rows + queued.rows > self._max_rows:
                self._queue.appendleft(queued)
                break
            batch.append(queued)
            rows += queued.rows
        batch = self._cut_at_preferred(batch)
        # What was passed over keeps its place at the head of the queue.
        self._queue.extendleft(reversed(others))
        self._queued_rows -= sum(q.rows for q in batch)
        return batch

    def _cut_at_preferred(self, batch: list[_Queued]) -> list[_Queued]:
        cut, rows = 0, 0
        for i, queued in enumerate(batch, start=1):
            rows += queued.rows
            if rows in self._preferred:
                cut = i
        if 0 < cut < len(batch):
            self._queue.extendleft(reversed(batch[cut:]))
            return batch[:cut]
        return batch

    def _run(self, run: BatchRun, inputs: list[Mapping[str, np.ndarray]]) -> list[Outputs]:
        """On the model's thread: merge, run once, split back."""
        if len(inputs) == 1:
            run.started_ns = time.monotonic_ns()
            outputs = self._backend.run(inputs[0])
            run.ended_ns = time.monotonic_ns()
            return [outputs]
        merged = {name: np.concatenate([i[name] for i in inputs]) for name in inputs[0]}
        run.started_ns = time.monotonic_ns()
        outputs = self._backend.run(merged)
        run.ended_ns = time.monotonic_ns()
        sizes = [len(next(iter(i.values()))) for i in inputs]
        total = sum(sizes)
        for name, array in outputs.items():
            if array.ndim == 0 or len(array) != total:
                raise Internal(
                    f'model "{self._name}": a batch of {total} rows gave output "{name}" of '
                    f"shape {list(array.shape)}"
                )
        bounds = np.cumsum(sizes[:-1])
        parts = {name: np.split(array, bounds) for name, array in outputs.items()}
        return [{name: split[k] for name, split in parts.items()} for k in range(len(inputs))]

    def _finish(
        self, run: BatchRun, batch: list[_Queued], running: asyncio.Future[list[Outputs]]
    ) -> None:
        """On the loop, when the model's thread is done with the batch."""
        error = (
            Unavailable(f'model "{self._name}" is shutting down')
            if running.cancelled()
            else running.exception()
        )
        self._complete(run, batch, error, [] if error is not None else running.result())

    def _complete(
        self,
        run: BatchRun,
        batch: list[_Queued],
        error: BaseException | None,
        results: list[Outputs],
    ) -> None:
        """On the loop, when the model's call is done: answer the batch, start the next."""
        self._busy = False
        run.done_ns = time.monotonic_ns()
        if run.ended_ns:
            took = run.ended_ns - run.started_ns
            self._execute_ns = (
                took
                if self._execute_ns is None
                else self._execute_ns + EWMA_WEIGHT * (took - self._execute_ns)
            )
        self.stats.record(run.rows, run.requests)
        self._observe(run, batch)
        if error is not None:
            for queued in batch:
                if not queued.future.done():
                    queued.future.set_exception(error)
        else:
            for queued, outputs in zip(batch, results, strict=True):
                if not queued.future.done():
                    queued.future.set_result(outputs)
        self._dispatch()

    def _observe(self, run: BatchRun, batch: list[_Queued]) -> None:
        """Metrics for the batch, and its times for each request that asked for them;
        the first sampled request's trace is the batch's exemplar."""
        batch_exemplar = None
        for queued in batch:
            queued_ns = queued.queued_ns
            exemplar = None
            timing = queued.timing
            if timing is not None:
                timing.queued_ns, timing.batch = queued_ns, run
                if timing.context is not None:
                    run.contexts.append(timing.context)
                if timing.trace_id:
                    exemplar = {"trace_id": timing.trace_id}
                    batch_exemplar = batch_exemplar or exemplar
            self._queue_seconds.observe(max(0, run.taken_ns - queued_ns) / 1e9, exemplar)
        self._batch_size.observe(run.rows, batch_exemplar)
        if run.ended_ns:
            self._execute_seconds.observe((run.ended_ns - run.started_ns) / 1e9, batch_exemplar)
