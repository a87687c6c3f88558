"""Spans at a price a loaded service can pay: recorded without the SDK's per-span
machinery, and encoded for OTLP in place.

telemetry.py imports this module only when tracing is on. Measured on this machine
(`time.thread_time`, one span of 3-5 attributes; inference-py/README.md, Telemetry),
the SDK spends ~70 µs to start and end a span and the OTLP exporters' encoder ~55 µs
to encode it, several times the ~400 µs of CPU a whole untraced request costs:

- `Recorder.start` makes the span of one request: the SDK's sampler decides, the
  SDK's id generator names it, and a sampled span is a `RecordedSpan`, a plain
  object that becomes one SDK `ReadableSpan` when it ends and goes to the
  provider's span processors (`on_end`, as the SDK's own spans do; their
  `on_start` is not called: the batch and simple processors do nothing there).
  It skips what costs: the attribute limits and their lock, the copy made at
  `end()`, a context-manager frame per span.
- `Recorder.record` makes a finished span after the fact (the batcher's "queue",
  "batch" and "execute", from the times it stamped): one `ReadableSpan`.
- `encode` is the OTLP exporters' `encode_spans` rebuilt on the same generated
  messages, adding each sub-message in place (`.add()`) instead of building it
  alone and handing it to its parent, which copies it again at every level of
  the request (span, scope, resource, request): the same bytes for a quarter of
  the CPU (tests/test_tracing.py compares the two). The exporters below are the
  library's with only the encoding swapped.

The attributes given are this service's own, of valid types, and few: unlike the
SDK, no count or length limit is applied to them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import SpanFlags
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

if TYPE_CHECKING:
    from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
    from opentelemetry.context import Context
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.sdk.trace import Tracer
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.util import types

log = logging.getLogger(__name__)

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_UNSET = Status(StatusCode.UNSET)


class Recorder:
    """Makes this service's spans for one SDK tracer (its sampler, ids, resource and
    span processors), in that tracer's instrumentation scope."""

    def __init__(self, tracer: Tracer, scope: InstrumentationScope) -> None:
        self.tracer = tracer
        self._sampler = tracer.sampler
        self._ids = tracer.id_generator
        self._random_ids = tracer.id_generator.is_trace_id_random()
        self.resource = tracer.resource
        self.processor = tracer.span_processor
        self.scope = scope

    def start(
        self,
        name: str,
        kind: SpanKind,
        parent: Context,
        attributes: dict[str, types.AttributeValue],
    ) -> trace.Span:
        """A span started now, as the SDK's `Tracer.start_span` would make it: a
        `RecordedSpan` if the sampler records it, else a `NonRecordingSpan` that
        still carries the new context (so that logs and the next hop see it)."""
        caller: SpanContext | None = trace.get_current_span(parent).get_span_context()
        if caller is not None and caller.is_valid:
            trace_id = caller.trace_id
            random_id = caller.trace_flags.random_trace_id
        else:
            caller, trace_id = None, self._ids.generate_trace_id()
            random_id = self._random_ids
        result = self._sampler.should_sample(parent, trace_id, name, kind, attributes)
        flags = _SAMPLED if result.decision is Decision.RECORD_AND_SAMPLE else _UNSAMPLED
        if random_id:
            flags = TraceFlags(flags | TraceFlags.RANDOM_TRACE_ID)
        context = SpanContext(
            trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=flags,
            trace_state=result.trace_state,
        )
        if result.decision is Decision.DROP:
            return NonRecordingSpan(context)
        if result.attributes:
            attributes = {**attributes, **result.attributes}
        return RecordedSpan(
            self,
            name,
            kind=kind,
            context=context,
            parent=caller,
            attributes=attributes,
            start_ns=time.time_ns(),
        )

    def record(
        self,
        name: str,
        parent: SpanContext,
        attributes: types.Attributes,
        *,
        start_ns: int,
        end_ns: int,
        links: Sequence[Link] = (),
    ) -> SpanContext:
        """A finished INTERNAL child of `parent` (a recorded span: its sampling
        decision holds), handed to the span processors; its context."""
        context = SpanContext(
            parent.trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=parent.trace_flags,
            trace_state=parent.trace_state,
        )
        self.processor.on_end(
            ReadableSpan(
                name,
                context=context,
                parent=parent,
                resource=self.resource,
                attributes=attributes,
                links=links,
                start_time=start_ns,
                end_time=end_ns,
                instrumentation_scope=self.scope,
            )
        )
        return context


class RecordedSpan(trace.Span):
    """A sampled span that is exported once, when it ends; what it holds is plain."""

    def __init__(
        self,
        recorder: Recorder,
        name: str,
        *,
        kind: SpanKind,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, types.AttributeValue],
        start_ns: int,
    ) -> None:
        self._recorder = recorder
        self.name = name
        self.kind = kind
        self.context = context
        self.parent = parent
        self.attributes = attributes
        self.start_ns = start_ns
        self.events: list[Event] = []
        self.links: list[Link] = []
        self.status = _UNSET
        self._ended = False

    def get_span_context(self) -> SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return not self._ended

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if not self._ended:
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if not self._ended:
            self.attributes.update(attributes)

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        if not self._ended:
            self.events.append(Event(name, attributes, timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not self._ended and context.is_valid:
            self.links.append(Link(context, attributes))

    def update_name(self, name: str) -> None:
        if not self._ended:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # As the SDK: an OK status is final, and a description goes with ERROR only.
        if self._ended or self.status.status_code is StatusCode.OK:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        self.status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self.add_event(
            "exception",
            {
                "exception.type": type(exception).__qualname__,
                "exception.message": str(exception),
                **(attributes or {}),
            },
            timestamp,
        )

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        recorder = self._recorder
        recorder.processor.on_end(
            ReadableSpan(
                self.name,
                context=self.context,
                parent=self.parent,
                resource=recorder.resource,
                attributes=self.attributes,
                events=self.events,
                links=self.links,
                kind=self.kind,
                status=self.status,
                start_time=self.start_ns,
                end_time=end_time or time.time_ns(),
                instrumentation_scope=recorder.scope,
            )
        )


def encode(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """`spans` as one OTLP export request, field for field what the exporters'
    `encode_spans` makes, grouped by resource, then instrumentation scope."""
    request = ExportTraceServiceRequest()
    resources: dict[Any, tuple[Any, dict[Any, Any]]] = {}
    for span in spans:
        resource = span.resource
        found = resources.get(resource)
        if found is None:
            resource_spans = request.resource_spans.add(schema_url=resource.schema_url)
            _attributes(resource_spans.resource.attributes, resource.attributes)
            found = resources[resource] = (resource_spans, {})
        resource_spans, scopes = found
        scope = span.instrumentation_scope or None
        scope_spans = scopes.get(scope)
        if scope_spans is None:
            scope_spans = scopes[scope] = resource_spans.scope_spans.add()
            scope_spans.scope.SetInParent()
            if scope is not None:
                scope_spans.scope.name = scope.name
                scope_spans.scope.version = scope.version or ""
                scope_spans.schema_url = scope.schema_url or ""
                _attributes(scope_spans.scope.attributes, scope.attributes)
        _span(scope_spans.spans.add(), span)
    return request


_KINDS = {
    SpanKind.INTERNAL: PbSpan.SPAN_KIND_INTERNAL,
    SpanKind.SERVER: PbSpan.SPAN_KIND_SERVER,
    SpanKind.CLIENT: PbSpan.SPAN_KIND_CLIENT,
    SpanKind.PRODUCER: PbSpan.SPAN_KIND_PRODUCER,
    SpanKind.CONSUMER: PbSpan.SPAN_KIND_CONSUMER,
}
_HAS_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = _HAS_IS_REMOTE | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


def _span(message: PbSpan, span: ReadableSpan) -> None:
    context = span.context
    parent = span.parent
    message.trace_id = context.trace_id.to_bytes(16, "big")
    message.span_id = context.span_id.to_bytes(8, "big")
    if context.trace_state:
        message.trace_state = ",".join(f"{k}={v}" for k, v in context.trace_state.items())
    if parent is not None:
        message.parent_span_id = parent.span_id.to_bytes(8, "big")
        message.flags = _IS_REMOTE if parent.is_remote else _HAS_IS_REMOTE
    else:
        message.flags = _HAS_IS_REMOTE
    message.name = span.name
    message.kind = _KINDS[span.kind]
    message.start_time_unix_nano = span.start_time or 0
    message.end_time_unix_nano = span.end_time or 0
    _attributes(message.attributes, span.attributes)
    for event in span.events:
        encoded = message.events.add(name=event.name, time_unix_nano=event.timestamp)
        _attributes(encoded.attributes, event.attributes)
        encoded.dropped_attributes_count = event.dropped_attributes
    for link in span.links:
        linked = link.context
        encoded_link = message.links.add(
            trace_id=linked.trace_id.to_bytes(16, "big"),
            span_id=linked.span_id.to_bytes(8, "big"),
            flags=_IS_REMOTE if linked.is_remote else _HAS_IS_REMOTE,
        )
        _attributes(encoded_link.attributes, link.attributes)
        encoded_link.dropped_attributes_count = link.dropped_attributes
    status = span.status
    message.status.SetInParent()
    message.status.code = status.status_code.value  # type: ignore[assignment]
    if status.description:
        message.status.message = status.description
    message.dropped_attributes_count = span.dropped_attributes
    message.dropped_events_count = span.dropped_events
    message.dropped_links_count = span.dropped_links


def _attributes(
    target: RepeatedCompositeFieldContainer[KeyValue], attributes: types.Attributes
) -> None:
    if not attributes:
        return
    for key, value in attributes.items():
        try:
            _value(target.add(key=key).value, value)
        except TypeError:
            # As encode_spans: an attribute that cannot be encoded is logged and left out.
            del target[-1]
            log.exception("span attribute not encoded", extra={"key": key})


def _value(target: AnyValue, value: object) -> None:
    # bool before int: a bool is an int.
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif value is None:
        target.SetInParent()
    elif isinstance(value, Sequence):
        target.array_value.SetInParent()
        for item in value:
            _value(target.array_value.values.add(), item)
    elif isinstance(value, Mapping):
        target.kvlist_value.SetInParent()
        for key, item in value.items():
            _value(target.kvlist_value.values.add(key=str(key)).value, item)
    else:
        raise TypeError(f"attribute value of type {type(value).__name__}")


class GrpcExporter(GrpcSpanExporter):
    """The OTLP/gRPC span exporter, encoding with `encode`."""

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return encode(data)


class HttpExporter(HttpSpanExporter):
    """The OTLP/HTTP (protobuf) span exporter, encoding with `encode`; the rest is the
    library's `export` as it stands in the pinned version (1.45.2)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            log.warning("exporter already shut down; spans dropped")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            data = encode(spans).SerializePartialToString()
            if 0 < self._max_request_size < len(data):
                log.warning(
                    "span export dropped: the request exceeds max_request_size",
                    extra={"bytes": len(data), "max_request_size": self._max_request_size},
                )
                return SpanExportResult.FAILURE
            outcome = self._client.export(data)
            if not outcome.success:
                result.error = outcome.error
                if outcome.status_code is not None:
                    result.error_attrs = {HTTP_RESPONSE_STATUS_CODE: outcome.status_code}
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
