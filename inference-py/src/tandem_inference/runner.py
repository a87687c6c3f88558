"""The seam between the service and a model: every inference goes through a Runner.

One runner per loaded model version. The service hands it one request's decoded
inputs and awaits that request's outputs; how the call reaches the backend (on
which thread, merged with which other requests) is the runner's business. The
repository makes a `DynamicBatcher` (batcher.py) for every version unless told
otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    from opentelemetry.trace import SpanContext

    from tandem_inference.backends import Backend
    from tandem_inference.model_config import ModelConfig


@dataclass(slots=True, eq=False)
class BatchRun:
    """One model call and when it happened (`time.monotonic_ns()`), shared by the
    requests it ran: telemetry reads it for spans, metrics and Server-Timing."""

    rows: int
    requests: int
    taken_ns: int  # left the queue
    started_ns: int = 0  # the model call began (on the model's thread)
    ended_ns: int = 0  # the model call returned
    done_ns: int = 0  # the results were split and handed back (on the loop)
    # The recorded spans of the requests it ran (their Timing.context): the batch
    # span links to each; and that span, once the first of them has made it.
    contexts: list[SpanContext] = field(default_factory=list)
    span: SpanContext | None = None


@dataclass(slots=True, eq=False)
class Timing:
    """How one request went through its runner; the runner fills it in.

    `trace_id` is the caller's, when its span is recorded: the runner may use it
    as an exemplar on the metrics it observes for that request; `context` is that
    span's, for the batch span's links (`telemetry.timing` fills both).
    """

    trace_id: str = ""
    context: SpanContext | None = None
    queued_ns: int = 0
    batch: BatchRun | None = None


class Runner(Protocol):
    """Runs one request's inputs through a model version."""

    async def infer(
        self,
        inputs: Mapping[str, np.ndarray],
        deadline: float | None = None,
        timing: Timing | None = None,
    ) -> dict[str, np.ndarray]:
        """The outputs for `inputs`, every output the model declares.

        `deadline` is the event loop's clock (`loop.time()`) by which the caller
        must have its answer; work not started by then is not run (DeadlineExceeded).
        `timing`, when given, is filled in with when the request queued and ran.
        """
        ...

    def close(self) -> None:
        """Release threads; called once no more requests come."""
        ...


class RunnerFactory(Protocol):
    def __call__(self, backend: Backend, config: ModelConfig) -> Runner: ...
