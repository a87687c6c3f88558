"""Per model version inference statistics, as Triton's statistics extension reports them.

Recorded by the service from what each request's Timing says (runner.py: when it
queued, and its batch's BatchRun), so the batcher needs no counters of its own:

- success / fail: requests answered or failed after their model was found, and the
  time from arrival to answer (or failure);
- queue: time from joining the batcher's queue to leaving it;
- compute_input: leaving the queue to the model call starting (merge, thread hand-off);
- compute_infer: the model call of the request's batch;
- compute_output: the call's end to the response encoded (split, hand-back, encoding);
- inference_count: rows answered; execution_count and batch_stats: model calls.

A model call serves every request of its batch; it is counted once, by the first of
its requests to finish. The batcher answers all requests of a batch in one callback,
and they resume before the next batch's answers can, so "not the run seen last" is
a new run (a batch whose every caller went away is not counted).

Statistics are this process's: over NATS each worker reports what it served.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tandem_inference.pb import grpc_service_pb2 as pb

if TYPE_CHECKING:
    from tandem_inference.runner import BatchRun, Timing


@dataclass(slots=True)
class Duration:
    """A cumulative count and time (Triton's StatisticDuration)."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += max(0, ns)

    def message(self) -> pb.StatisticDuration:
        return pb.StatisticDuration(count=self.count, ns=self.ns)


@dataclass(slots=True)
class _BatchSize:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class VersionStats:
    """One model version's statistics."""

    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: defaultdict[int, _BatchSize] = field(default_factory=lambda: defaultdict(_BatchSize))
    last_run: BatchRun | None = None

    def succeeded(self, rows: int, received_ns: int, timing: Timing) -> None:
        now = time.monotonic_ns()
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.inference_count += rows
        self.success.add(now - received_ns)
        run = timing.batch
        if run is None:
            return
        self.queue.add(run.taken_ns - timing.queued_ns)
        self.compute_input.add(run.started_ns - run.taken_ns)
        self.compute_infer.add(run.ended_ns - run.started_ns)
        self.compute_output.add(now - run.ended_ns)
        if run is not self.last_run:
            self.last_run = run
            self.execution_count += 1
            size = self.batches[run.rows]
            size.compute_input.add(run.started_ns - run.taken_ns)
            size.compute_infer.add(run.ended_ns - run.started_ns)
            size.compute_output.add(run.done_ns - run.ended_ns)

    def failed(self, received_ns: int) -> None:
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.fail.add(time.monotonic_ns() - received_ns)

    def message(self, name: str, version: str) -> pb.ModelStatistics:
        return pb.ModelStatistics(
            name=name,
            version=version,
            last_inference=self.last_inference_ms,
            inference_count=self.inference_count,
            execution_count=self.execution_count,
            inference_stats=pb.InferStatistics(
                success=self.success.message(),
                fail=self.fail.message(),
                queue=self.queue.message(),
                compute_input=self.compute_input.message(),
                compute_infer=self.compute_infer.message(),
                compute_output=self.compute_output.message(),
                cache_hit=pb.StatisticDuration(),
                cache_miss=pb.StatisticDuration(),
            ),
            batch_stats=[
                pb.InferBatchStatistics(
                    batch_size=rows,
                    compute_input=b.compute_input.message(),
                    compute_infer=b.compute_infer.message(),
                    compute_output=b.compute_output.message(),
                )
                for rows, b in sorted(self.batches.items())
            ],
        )


class Statistics:
    """Every model version's statistics, kept while the version is loaded."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], VersionStats] = {}

    def of(self, name: str, version: str) -> VersionStats:
        return self._versions.setdefault((name, version), VersionStats())

    def forget(self, name: str) -> None:
        """Drop an unloaded model's statistics (Triton reports only loaded models)."""
        for key in [k for k in self._versions if k[0] == name]:
            del self._versions[key]
