"""Tracing with OpenTelemetry, configured only by the standard OTEL_* variables.

- With no OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT`),
  or with `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`, nothing is set
  up: no exporter, no span processor, and the front doors do not even read the
  trace headers (`tracer()` is None), so tracing costs one branch per request.
- Otherwise an SDK TracerProvider exports in batches (`OTEL_BSP_*`) over
  `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the specification's default, or
  `grpc`); `OTEL_TRACES_SAMPLER[_ARG]` choose the sampler (default
  `parentbased_always_on`: the gateway's decision is followed), `OTEL_SERVICE_NAME`
  and `OTEL_RESOURCE_ATTRIBUTES` the resource (service name `tandem-inference`
  unless set).
- Propagation is W3C tracecontext + baggage (the API's default, `OTEL_PROPAGATORS`).
- gRPC server spans follow the stable RPC conventions (`rpc.system.name`,
  `rpc.method`, `rpc.response.status_code`), as Go's otelgrpc does: run both sides
  with `OTEL_SEMCONV_STABILITY_OPT_IN=rpc`.

The batcher runs one model call for many requests; the call gets one set of
"queue", "batch" and "execute" spans under the first sampled request's span, the
batch span linking to the others', which link back (batch_spans). They are made
after the call is done, on the event loop, from monotonic times (`runner.Timing`).
While spans are exported the GIL switch interval is 0.2 ms (see setup()).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from tandem_inference import __version__
from tandem_inference.runner import Timing

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from opentelemetry.context import Context
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from tandem_inference.tracing import Recorder

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "tandem-inference"
INSTRUMENTATION = "tandem_inference"
# The agreed value on both sides of the hop (see the module docstring).
SEMCONV_STABILITY_OPT_IN = "rpc"

# The GIL switch interval while spans are exported (see setup()).
SWITCH_INTERVAL_S = 0.0002

_recorder: Recorder | None = None


def tracer() -> Recorder | None:
    """What makes the service's spans, or None while tracing is off (skip the work)."""
    return _recorder


def use(provider: TracerProvider | None) -> None:
    """Trace into `provider` from now on (None: stop). setup() calls it; tests too."""
    global _recorder  # noqa: PLW0603 -- one switch read on every request
    if provider is None:
        _recorder = None
        return
    from opentelemetry.sdk.trace import Tracer  # noqa: PLC0415
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope  # noqa: PLC0415

    from tandem_inference.tracing import Recorder  # noqa: PLC0415

    sdk_tracer = provider.get_tracer(INSTRUMENTATION, __version__)
    # A disabled SDK (OTEL_SDK_DISABLED) hands out no-op tracers: nothing to record.
    _recorder = (
        Recorder(sdk_tracer, InstrumentationScope(INSTRUMENTATION, __version__))
        if isinstance(sdk_tracer, Tracer)
        else None
    )


def setup() -> TracerProvider | None:
    """Configure tracing from the environment; the provider to shut down at exit,
    or None when tracing is off."""
    env = os.environ
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    off = (
        env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
        or env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none"
    )
    if not endpoint or off:
        use(None)
        return None
    # The SDK is imported only when it is used: a service without tracing never loads it.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=_hashed_once(resource), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(_exporter(env)))
    # The exporter's thread encodes spans in Python, holding the GIL for the whole
    # export; the event loop, each time it gives the GIL up (epoll, a send, the model
    # thread's hand-off), then waits up to one switch interval to get it back. At the
    # default 5 ms that stalled a lone request by up to 150 ms (README, Telemetry).
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
    trace.set_tracer_provider(provider)
    use(provider)
    log.info(
        "tracing",
        extra={
            "endpoint": endpoint,
            "service": resource.attributes.get(SERVICE_NAME),
            "sampler": provider.sampler.get_description(),
        },
    )
    return provider


def _hashed_once(resource: Resource) -> Resource:
    """`resource`, whose hash is computed once: the OTLP encoder groups the spans of
    every export by resource, and the SDK's Resource hashes its attributes as JSON
    each time, a third of the encoding's time (README, Telemetry)."""
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415

    class HashedOnce(Resource):
        def __init__(self, resource: Resource) -> None:
            super().__init__(resource.attributes, resource.schema_url)
            self._hash = super().__hash__()

        def __hash__(self) -> int:
            return self._hash

    return HashedOnce(resource)


def _exporter(env: Mapping[str, str]) -> SpanExporter:
    """The OTLP span exporter for OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL; it reads the
    endpoint, headers, timeout and compression variables itself."""
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    from tandem_inference.tracing import GrpcExporter, HttpExporter  # noqa: PLC0415

    if protocol == "grpc":
        return GrpcExporter()
    if protocol != "http/protobuf":
        log.warning("unsupported OTLP protocol; using http/protobuf", extra={"protocol": protocol})
    return HttpExporter()


def shutdown(provider: TracerProvider | None) -> None:
    """Export what is buffered, then stop."""
    use(None)
    if provider is not None:
        provider.shutdown()


class _MetadataGetter(Getter["Iterable[tuple[str, str | bytes]]"]):
    """Reads trace headers from gRPC invocation metadata (a sequence of pairs)."""

    def get(self, carrier: Iterable[tuple[str, str | bytes]], key: str) -> list[str] | None:
        found = [v for k, v in carrier if k == key and isinstance(v, str)]
        return found or None

    def keys(self, carrier: Iterable[tuple[str, str | bytes]]) -> list[str]:
        return [k for k, _ in carrier]


_METADATA = _MetadataGetter()


@contextmanager
def _current(
    recorder: Recorder,
    name: str,
    kind: SpanKind,
    parent: Context,
    attributes: dict[str, AttributeValue],
) -> Iterator[Span]:
    """A span started from `parent`, current while the block runs, ended after it
    (an exception goes on, unrecorded: rpcs.py reports the outcome)."""
    span = recorder.start(name, kind, parent, attributes)
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    try:
        yield span
    finally:
        otel_context.detach(token)
        span.end()


def grpc_server_span(
    recorder: Recorder, method: str, metadata: Iterable[tuple[str, str | bytes]] | None
) -> AbstractContextManager[Span]:
    """The SERVER span of one RPC (`method`: `package.Service/Method`), continuing the
    caller's trace from the metadata; current while the block runs."""
    return _current(
        recorder,
        method,
        SpanKind.SERVER,
        propagate.extract(metadata or (), getter=_METADATA),
        {"rpc.system.name": "grpc", "rpc.method": method},
    )


def nats_consumer_span(
    recorder: Recorder, subject: str, headers: Mapping[str, str] | None, queue_group: str
) -> AbstractContextManager[Span]:
    """The CONSUMER span `process <subject>` of one NATS request, continuing the trace
    of its lowercase `traceparent`/`tracestate` headers; current while the block runs."""
    return _current(
        recorder,
        f"process {subject}",
        SpanKind.CONSUMER,
        propagate.extract(headers or {}),
        {
            "messaging.system": "nats",
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": subject,
            "messaging.consumer.group.name": queue_group,
        },
    )


def set_outcome(span: Span, transport: str, status: str, *, server_fault: bool) -> None:
    """How the call ended (`status`: the gRPC code's name), in its span's conventions:
    a gRPC SERVER span always carries `rpc.response.status_code`, and `error.type`
    for the server's faults; a NATS CONSUMER span carries `error.type` on any
    failure. Either is ERROR only for the server's faults (errors.SERVER_FAULTS)."""
    if not span.is_recording():
        return
    if transport == "grpc":
        span.set_attribute("rpc.response.status_code", status)
    if server_fault or (transport != "grpc" and status != "OK"):
        span.set_attribute("error.type", status)
    if server_fault:
        span.set_status(Status(StatusCode.ERROR))


def trace_id(span: Span) -> str:
    """The span's trace id in hex, for exemplars; empty when it is not recorded."""
    return format(span.get_span_context().trace_id, "032x") if span.is_recording() else ""


def timing(span: Span) -> Timing:
    """A request's `runner.Timing`, knowing its span when that is recorded."""
    if not span.is_recording():
        return Timing()
    context = span.get_span_context()
    return Timing(trace_id=format(context.trace_id, "032x"), context=context)


def batch_spans(
    recorder: Recorder, timing: Timing, *, model: str, version: str, backend: str
) -> None:
    """The batcher's part of one request's trace, from the times it recorded (queued →
    left the queue → model call → results handed back), made after the fact.

    The first recorded request of a model call gets "queue", "batch" and "execute"
    children of its (current) span; the batch span carries the model's attributes,
    links to every other recorded request of the call and counts them in
    `messaging.batch.message_count`. Each other
    request's span only links to that batch span: one model call, one set of spans.
    """
    run = timing.batch
    if run is None:
        return
    current = trace.get_current_span()
    if run.span is not None:
        current.add_link(run.span, _BATCH_LINK)
        return
    # Monotonic times to wall-clock nanoseconds, from one reading of each clock.
    shift = time.time_ns() - time.monotonic_ns()
    attributes: dict[str, AttributeValue] = {
        "tandem.model": model,
        "tandem.model_version": version,
        "tandem.backend": backend,
        "tandem.batch_size": run.rows,
        "tandem.batch_requests": run.requests,
    }
    own = current.get_span_context()
    batch_attributes = attributes
    if run.requests > 1:
        batch_attributes = {**attributes, "messaging.batch.message_count": run.requests}
    # The model's attributes go on the batch span only: its siblings "queue" and
    # "execute" have the same parent, and every attribute costs encoding CPU.
    recorder.record(
        "queue", own, None, start_ns=timing.queued_ns + shift, end_ns=run.taken_ns + shift
    )
    run.span = recorder.record(
        "batch",
        own,
        batch_attributes,
        start_ns=run.taken_ns + shift,
        end_ns=max(run.taken_ns, run.done_ns) + shift,
        links=[Link(c, _REQUEST_LINK) for c in run.contexts if c != own],
    )
    if run.ended_ns:
        recorder.record(
            "execute", own, None, start_ns=run.started_ns + shift, end_ns=run.ended_ns + shift
        )


_BATCH_LINK: dict[str, AttributeValue] = {"tandem.link": "batch"}
_REQUEST_LINK: dict[str, AttributeValue] = {"tandem.link": "request"}
