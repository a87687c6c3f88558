"""tracing.py: spans recorded without the SDK's per-span machinery, encoded in place.

The encoder is checked against the library's own (`encode_spans`) on spans the real
SDK made; the recorder against the SDK's sampler and processors; both exporters by
sending to a real OTLP receiver (HTTP and gRPC) started here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from tandem_inference.tracing import GrpcExporter, HttpExporter, RecordedSpan, Recorder, encode

SCOPE = InstrumentationScope("tandem_inference", "0.1.0")
REMOTE = SpanContext(
    0x4BF92F3577B34DA6A3CE929D0E0E4736,
    0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "1")]),
)


def recorder_of(provider: TracerProvider) -> Recorder:
    tracer = provider.get_tracer(SCOPE.name, SCOPE.version)
    assert isinstance(tracer, Tracer)
    return Recorder(tracer, SCOPE)


@pytest.fixture
def memory() -> Iterator[tuple[Recorder, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield recorder_of(provider), exporter
    provider.shutdown()


def sdk_spans() -> list[ReadableSpan]:
    """Spans of every shape the encoder meets, made by the real SDK: kinds, a remote
    parent with a trace state, events, links, statuses, attribute types, two scopes
    and two resources."""
    spans: list[ReadableSpan] = []
    for service in ("one", "two"):
        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource({"service.name": service, "n": 1}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        parent = trace.set_span_in_context(NonRecordingSpan(REMOTE))
        for scope in ("a", "b"):
            tracer = provider.get_tracer(scope, "1.0", schema_url="https://example.com/s")
            with tracer.start_as_current_span(
                "server",
                context=parent,
                kind=SpanKind.SERVER,
                attributes={
                    "s": "x",
                    "b": True,
                    "i": 7,
                    "f": 0.5,
                    "strings": ("p", "q"),
                    "ints": [1, 2],
                },
                links=[Link(REMOTE, {"why": "test"})],
            ) as span:
                span.add_event("event", {"k": "v"}, timestamp=123)
                span.set_status(Status(StatusCode.ERROR, "it broke"))
                for kind in (SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER):
                    tracer.start_span(f"child {kind.name}", kind=kind).end()
        spans += exporter.get_finished_spans()
        provider.shutdown()
    return spans


def test_encode_makes_what_the_library_makes() -> None:
    spans = sdk_spans()
    assert len(spans) == 16  # 2 resources x 2 scopes x 4 spans
    ours, theirs = encode(spans), encode_spans(spans)
    assert ours == theirs
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
        deterministic=True
    )
    assert len(ours.resource_spans) == 2
    assert [len(r.scope_spans) for r in ours.resource_spans] == [2, 2]


def test_encode_makes_what_the_library_makes_of_the_recorders_spans(
    memory: tuple[Recorder, InMemorySpanExporter],
) -> None:
    recorder, exporter = memory
    span = recorder.start("request", SpanKind.SERVER, Context(), {"a": "b"})
    assert isinstance(span, RecordedSpan)
    recorder.record("queue", span.context, {"n": 1}, start_ns=10, end_ns=20)
    recorder.record(
        "batch", span.context, None, start_ns=20, end_ns=30, links=[Link(REMOTE, {"l": 1})]
    )
    span.add_link(REMOTE)
    span.end()
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["queue", "batch", "request"]
    assert encode(spans) == encode_spans(spans)


def test_an_attribute_that_cannot_be_encoded_is_left_out() -> None:
    span = ReadableSpan(
        "odd",
        context=REMOTE,
        resource=Resource({}),
        attributes={"good": 1, "bad": object()},  # type: ignore[dict-item]
        start_time=1,
        end_time=2,
    )
    (encoded,) = encode([span]).resource_spans[0].scope_spans[0].spans
    assert [a.key for a in encoded.attributes] == ["good"]


def test_a_recorded_span_continues_its_parent_and_ends_once(
    memory: tuple[Recorder, InMemorySpanExporter],
) -> None:
    recorder, exporter = memory
    parent = trace.set_span_in_context(NonRecordingSpan(REMOTE))
    span = recorder.start("request", SpanKind.CONSUMER, parent, {"a": "b"})
    assert isinstance(span, RecordedSpan)
    assert span.is_recording()
    context = span.get_span_context()
    assert context.trace_id == REMOTE.trace_id
    assert context.span_id != REMOTE.span_id
    assert context.trace_flags.sampled
    assert not context.is_remote
    assert context.trace_state.get("vendor") == "1"
    span.set_attribute("c", 1)
    span.set_attributes({"d": 2})
    span.update_name("renamed")
    span.add_link(SpanContext(0, 0, is_remote=False))  # invalid: ignored
    span.add_link(REMOTE, {"l": "x"})
    span.record_exception(ValueError("nope"))
    span.set_status(StatusCode.ERROR, "failed")
    span.end(end_time=span.start_ns + 5)
    span.end()
    span.set_attribute("late", True)
    assert not span.is_recording()
    (finished,) = exporter.get_finished_spans()
    assert finished.name == "renamed"
    assert finished.kind == SpanKind.CONSUMER
    assert finished.parent == REMOTE
    assert finished.context == context
    assert dict(finished.attributes or {}) == {"a": "b", "c": 1, "d": 2}
    assert [(lk.context, dict(lk.attributes or {})) for lk in finished.links] == [
        (REMOTE, {"l": "x"})
    ]
    (event,) = finished.events
    assert event.name == "exception"
    assert dict(event.attributes or {}) == {
        "exception.type": "ValueError",
        "exception.message": "nope",
    }
    assert finished.status.status_code == StatusCode.ERROR
    assert finished.status.description == "failed"
    assert finished.end_time == finished.start_time + 5  # type: ignore[operator]
    assert finished.instrumentation_scope == SCOPE
    assert finished.resource.attributes["service.name"] == "test"


def test_a_root_span_gets_a_new_trace(memory: tuple[Recorder, InMemorySpanExporter]) -> None:
    recorder, exporter = memory
    first = recorder.start("a", SpanKind.SERVER, Context(), {})
    second = recorder.start("b", SpanKind.SERVER, Context(), {})
    assert first.get_span_context().trace_id != second.get_span_context().trace_id
    first.end()
    second.end()
    assert [s.parent for s in exporter.get_finished_spans()] == [None, None]


def test_an_ok_status_is_final(memory: tuple[Recorder, InMemorySpanExporter]) -> None:
    recorder, exporter = memory
    span = recorder.start("a", SpanKind.SERVER, Context(), {})
    span.set_status(Status(StatusCode.OK))
    span.set_status(Status(StatusCode.ERROR, "later"))
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code == StatusCode.OK


@pytest.mark.parametrize(
    ("sampler", "parent"),
    [
        (ALWAYS_OFF, None),
        (TraceIdRatioBased(0.0), None),
        # The default: an unsampled caller is followed.
        (ParentBased(TraceIdRatioBased(1.0)), TraceFlags(TraceFlags.DEFAULT)),
    ],
)
def test_the_sampler_decides(sampler: Any, parent: TraceFlags | None) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder = recorder_of(provider)
    context = Context()
    if parent is not None:
        caller = SpanContext(REMOTE.trace_id, REMOTE.span_id, is_remote=True, trace_flags=parent)
        context = trace.set_span_in_context(NonRecordingSpan(caller))
    span = recorder.start("request", SpanKind.SERVER, context, {})
    assert not span.is_recording()
    assert span.get_span_context().is_valid  # logs and the next hop still see it
    assert not span.get_span_context().trace_flags.sampled
    if parent is not None:
        assert span.get_span_context().trace_id == REMOTE.trace_id
    span.end()
    assert exporter.get_finished_spans() == ()


def test_sampler_attributes_are_kept() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=TraceIdRatioBased(1.0))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = recorder_of(provider).start("request", SpanKind.SERVER, Context(), {"a": "b"})
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert finished.attributes == {"a": "b"}
    assert finished.context is not None
    assert finished.context.trace_flags.sampled


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _Receiver(_Quiet):
    received: list[otlp.ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.path == "/v1/traces"
        assert self.headers["Content-Type"] == "application/x-protobuf"
        self.received.append(otlp.ExportTraceServiceRequest.FromString(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        payload = otlp.ExportTraceServiceResponse().SerializeToString()
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def test_the_http_exporter_sends_what_encode_makes() -> None:
    received: list[otlp.ExportTraceServiceRequest] = []
    handler = type("Handler", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    spans = sdk_spans()
    try:
        exporter = HttpExporter(endpoint=f"http://127.0.0.1:{server.server_port}/v1/traces")
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        exporter.shutdown()  # type: ignore[no-untyped-call]
        assert exporter.export(spans) == SpanExportResult.FAILURE
    finally:
        server.shutdown()
        server.server_close()
    assert received == [encode_spans(spans)]


def test_the_http_exporter_reports_a_refused_export() -> None:
    class Refuse(_Quiet):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        exporter = HttpExporter(endpoint=f"http://127.0.0.1:{server.server_port}/v1/traces")
        assert exporter.export(sdk_spans()) == SpanExportResult.FAILURE
        exporter.shutdown()  # type: ignore[no-untyped-call]
    finally:
        server.shutdown()
        server.server_close()


def test_the_http_exporter_drops_a_request_over_its_size_limit() -> None:
    exporter = HttpExporter(endpoint="http://127.0.0.1:9/v1/traces", max_request_size=10)
    try:
        assert exporter.export(sdk_spans()) == SpanExportResult.FAILURE
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]


class _TraceService(otlp_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.received: list[otlp.ExportTraceServiceRequest] = []

    def Export(  # noqa: N802 -- the generated servicer's name
        self, request: otlp.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> otlp.ExportTraceServiceResponse:
        self.received.append(request)
        return otlp.ExportTraceServiceResponse()


def test_the_grpc_exporter_sends_what_encode_makes() -> None:
    service = _TraceService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    otlp_grpc.add_TraceServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    spans = sdk_spans()
    try:
        exporter = GrpcExporter(endpoint=f"127.0.0.1:{port}", insecure=True)
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        exporter.shutdown()
    finally:
        server.stop(grace=None)
    assert service.received == [encode_spans(spans)]
