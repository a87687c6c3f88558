"""Tracing, metrics, trace ids in logs and Server-Timing, through the real front doors.

Spans go to the real OpenTelemetry SDK with an in-memory exporter; the gRPC door
runs on a real grpc.aio server, the NATS door against a real nats-server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import re
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import nats
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from tandem_inference import logs, telemetry
from tandem_inference.backends import Backend
from tandem_inference.batcher import DynamicBatcher
from tandem_inference.grpc_server import GrpcServer
from tandem_inference.metrics import OTHER_MODEL, MetricsServer
from tandem_inference.model_config import DynamicBatching, ModelConfig
from tandem_inference.nats_worker import NatsWorker
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.pb import grpc_service_pb2_grpc as pb_grpc
from tandem_inference.repository import ModelRepository
from tandem_inference.service import SERVER_TIMING, InferenceService
from tandem_inference.settings import Settings

from messages import probabilities, raw_request
from nats_server import MISSING, NATS_SERVER, NatsServer

ZEROS = np.zeros((1, 64), dtype=np.float32)
INFER_METHOD = "inference.GRPCInferenceService/ModelInfer"
INFER_SUBJECT = "oip.v2.models.digits.infer"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def traceparent(sampled: bool = True) -> str:
    return f"00-{TRACE_ID}-{PARENT_ID}-{'01' if sampled else '00'}"


@pytest.fixture(scope="session")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """Tracing on, as with an endpoint and the default sampler, into memory."""
    provider = TracerProvider()  # OTEL_TRACES_SAMPLER unset: parentbased_always_on
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    exporter.clear()
    telemetry.use(provider)
    yield exporter
    telemetry.use(None)
    exporter.clear()


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """JSON lines of tandem_inference.* at debug, formatted as they are logged."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("tandem_inference")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield buffer
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def one(found: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    named = [s for s in found if s.name == name]
    assert len(named) == 1, [s.name for s in found]
    return named[0]


def assert_batch_children(found: tuple[ReadableSpan, ...], parent: ReadableSpan) -> None:
    assert parent.context is not None
    for name in ("queue", "batch", "execute"):
        child = one(found, name)
        assert child.parent is not None
        assert child.parent.span_id == parent.context.span_id
        assert child.context is not None
        assert child.context.trace_id == parent.context.trace_id
        assert child.start_time is not None
        assert child.end_time is not None
        assert parent.start_time is not None
        assert parent.end_time is not None
        assert parent.start_time <= child.start_time <= child.end_time <= parent.end_time
    queue, batch, execute = (one(found, n) for n in ("queue", "batch", "execute"))
    # The model's attributes are on the batch span; its siblings carry none.
    attributes = batch.attributes or {}
    assert attributes["tandem.model"] == "digits"
    assert attributes["tandem.model_version"] == "1"
    assert attributes["tandem.backend"] == "onnxruntime"
    assert isinstance(attributes["tandem.batch_size"], int)
    assert attributes["tandem.batch_size"] >= 1
    assert isinstance(attributes["tandem.batch_requests"], int)
    assert not queue.attributes
    assert not execute.attributes
    assert queue.end_time == batch.start_time
    assert batch.start_time <= execute.start_time <= execute.end_time <= batch.end_time  # type: ignore[operator]


@asynccontextmanager
async def grpc_channel(service: InferenceService) -> AsyncIterator[grpc.aio.Channel]:
    server = GrpcServer(service, Settings(grpc_addr="127.0.0.1:0", shutdown_grace_s=1.0))
    port = await server.start()
    await server.set_serving(serving=True)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop()


def stub(channel: grpc.aio.Channel) -> pb_grpc.GRPCInferenceServiceStub:
    return pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]


async def test_grpc_server_span_continues_the_callers_trace(
    service: InferenceService, spans: InMemorySpanExporter
) -> None:
    async with grpc_channel(service) as channel:
        response = await stub(channel).ModelInfer(
            raw_request(ZEROS), metadata=(("traceparent", traceparent()),)
        )
    assert probabilities(response).shape == (1, 10)
    found = spans.get_finished_spans()
    server = one(found, INFER_METHOD)
    assert server.kind == SpanKind.SERVER
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == PARENT_ID
    assert server.context is not None
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.attributes == {
        "rpc.system.name": "grpc",
        "rpc.method": INFER_METHOD,
        "rpc.response.status_code": "OK",
    }
    assert_batch_children(found, server)


async def test_grpc_error_status_is_on_the_span(
    service: InferenceService, spans: InMemorySpanExporter
) -> None:
    async with grpc_channel(service) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await stub(channel).ModelInfer(raw_request(ZEROS, model="nope"))
    server = one(spans.get_finished_spans(), INFER_METHOD)
    assert (server.attributes or {})["rpc.response.status_code"] == "NOT_FOUND"
    assert server.parent is None  # no traceparent: a new trace


async def test_health_rpcs_are_not_traced(
    service: InferenceService, spans: InMemorySpanExporter
) -> None:
    metadata = (("traceparent", traceparent()),)
    async with grpc_channel(service) as channel:
        oip = stub(channel)
        await oip.ServerLive(pb.ServerLiveRequest(), metadata=metadata)
        await oip.ServerReady(pb.ServerReadyRequest(), metadata=metadata)
        await oip.ModelReady(pb.ModelReadyRequest(name="digits"), metadata=metadata)
        health = health_pb2_grpc.HealthStub(channel)
        await health.Check(health_pb2.HealthCheckRequest(), metadata=metadata)
        assert spans.get_finished_spans() == ()
        await oip.ServerMetadata(pb.ServerMetadataRequest(), metadata=metadata)
    assert [s.name for s in spans.get_finished_spans()] == [
        "inference.GRPCInferenceService/ServerMetadata"
    ]


async def test_an_unsampled_parent_records_nothing(
    service: InferenceService, spans: InMemorySpanExporter
) -> None:
    async with grpc_channel(service) as channel:
        response = await stub(channel).ModelInfer(
            raw_request(ZEROS), metadata=(("traceparent", traceparent(sampled=False)),)
        )
    assert probabilities(response).shape == (1, 10)
    assert spans.get_finished_spans() == ()


async def test_without_an_endpoint_no_span_is_started(
    service: InferenceService,
    exporter: InMemorySpanExporter,
    json_logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert telemetry.setup() is None
    assert telemetry.tracer() is None
    async with grpc_channel(service) as channel:
        await stub(channel).ModelInfer(
            raw_request(ZEROS), metadata=(("traceparent", traceparent()),)
        )
    assert exporter.get_finished_spans() == ()
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    assert any(line["msg"] == "infer" for line in lines)
    assert all("trace_id" not in line for line in lines)


def test_setup_with_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    provider = telemetry.setup()
    try:
        assert provider is not None
        assert telemetry.tracer() is not None
        assert provider.resource.attributes["service.name"] == "tandem-inference"
        assert "0.25" in provider.sampler.get_description()
    finally:
        telemetry.shutdown(provider)
    assert telemetry.tracer() is None

    monkeypatch.setenv("OTEL_SERVICE_NAME", "worker-7")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    provider = telemetry.setup()
    try:
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "worker-7"
    finally:
        telemetry.shutdown(provider)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert telemetry.setup() is None


@pytest.mark.skipif(NATS_SERVER is None, reason=MISSING)
async def test_nats_consumer_span_continues_the_trace_in_the_headers(
    service: InferenceService, spans: InMemorySpanExporter
) -> None:
    server = NatsServer()
    server.start()
    worker = NatsWorker(service, Settings(nats_url=server.url, shutdown_grace_s=5))
    try:
        await worker.start()
        await worker.set_serving(serving=True)
        nc = await nats.connect(server.url)
        try:
            headers = {"traceparent": traceparent(), "tracestate": "vendor=1"}
            msg = await nc.request(
                INFER_SUBJECT, raw_request(ZEROS).SerializeToString(), timeout=10, headers=headers
            )
            await nc.request("oip.v2.server.ready", b"", timeout=10, headers=headers)
        finally:
            await nc.close()
    finally:
        await worker.stop()
        server.stop()
    assert probabilities(pb.ModelInferResponse.FromString(msg.data)).shape == (1, 10)
    found = spans.get_finished_spans()
    consumer = one(found, f"process {INFER_SUBJECT}")
    assert consumer.kind == SpanKind.CONSUMER
    assert consumer.parent is not None
    assert format(consumer.parent.span_id, "016x") == PARENT_ID
    assert consumer.context is not None
    assert format(consumer.context.trace_id, "032x") == TRACE_ID
    assert consumer.context.trace_state.get("vendor") == "1"
    attributes = consumer.attributes or {}
    assert attributes["messaging.system"] == "nats"
    assert attributes["messaging.operation.name"] == "process"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.destination.name"] == INFER_SUBJECT
    assert_batch_children(found, consumer)
    # The readiness check is not traced.
    assert {s.name for s in found} == {f"process {INFER_SUBJECT}", "queue", "batch", "execute"}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_move(service: InferenceService, spans: InMemorySpanExporter) -> None:
    ok = {"model": "digits", "transport": "grpc", "code": "OK"}
    bad = {"model": "digits", "transport": "grpc", "code": "INVALID_ARGUMENT"}
    assert OTHER_MODEL == "_other"
    unknown = {"model": OTHER_MODEL, "transport": "grpc", "code": "NOT_FOUND"}
    per_model = {"model": "digits", "backend": "onnxruntime"}
    names = ("batch_size_count", "batch_size_sum", "queue_seconds_count", "execute_seconds_count")
    before = {n: sample(f"tandem_inference_{n}", **per_model) for n in names}
    before_ok, before_bad, before_unknown = (
        sample("tandem_inference_requests_total", **labels) for labels in (ok, bad, unknown)
    )
    async with grpc_channel(service) as channel:
        oip = stub(channel)
        await oip.ModelInfer(raw_request(np.zeros((3, 64), dtype=np.float32)))
        for request in (
            raw_request(np.zeros((1, 63), dtype=np.float32)),
            raw_request(ZEROS, model="x"),
        ):
            with pytest.raises(grpc.aio.AioRpcError):
                await oip.ModelInfer(request)
    assert sample("tandem_inference_requests_total", **ok) == before_ok + 1
    assert sample("tandem_inference_requests_total", **bad) == before_bad + 1
    assert sample("tandem_inference_requests_total", **unknown) == before_unknown + 1
    after = {n: sample(f"tandem_inference_{n}", **per_model) for n in names}
    # One model call of 3 rows: the histogram observes the batch, not the request count.
    assert after["batch_size_count"] == before["batch_size_count"] + 1
    assert after["batch_size_sum"] == before["batch_size_sum"] + 3
    assert after["queue_seconds_count"] == before["queue_seconds_count"] + 1
    assert after["execute_seconds_count"] == before["execute_seconds_count"] + 1


async def test_batch_size_histogram_sees_the_batches(model_repository: Path) -> None:
    """Concurrent requests batch; the histogram's sum and count are the batcher's own."""
    repo = ModelRepository(model_repository)
    repo.load()
    try:
        batcher = repo.resolve("digits").runner
        assert isinstance(batcher, DynamicBatcher)
        stats = batcher.stats
        labels = {"model": "digits", "backend": "onnxruntime"}
        count = sample("tandem_inference_batch_size_count", **labels)
        total = sample("tandem_inference_batch_size_sum", **labels)
        runs, requests = stats.runs, stats.requests
        service = InferenceService(repo)
        await asyncio.gather(*(service.model_infer(raw_request(ZEROS)) for _ in range(64)))
        assert stats.requests == requests + 64
        assert stats.runs - runs < 64  # some batched
        assert sample("tandem_inference_batch_size_count", **labels) == count + (stats.runs - runs)
        assert sample("tandem_inference_batch_size_sum", **labels) == total + 64
        bucket = sample("tandem_inference_batch_size_bucket", le="1.0", **labels)
        assert bucket < sample("tandem_inference_batch_size_count", **labels)
    finally:
        repo.close()


async def test_metrics_endpoint_serves_the_series_with_exemplars(
    service: InferenceService, spans: InMemorySpanExporter
) -> None:
    server = MetricsServer("127.0.0.1:0")
    port = server.start()
    try:
        async with grpc_channel(service) as channel:
            await stub(channel).ModelInfer(
                raw_request(ZEROS), metadata=(("traceparent", traceparent()),)
            )
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=5).read())
    finally:
        server.stop()
    body = text.decode()
    for name in (
        "tandem_inference_requests_total",
        "tandem_inference_queue_depth",
        "tandem_inference_batch_size_bucket",
        "tandem_inference_queue_seconds_bucket",
        "tandem_inference_execute_seconds_bucket",
    ):
        assert name in body, name
    assert f'trace_id="{TRACE_ID}"' in body
    assert re.search(r'tandem_inference_queue_depth\{model="digits"\} 0', body)


def test_a_port_in_use_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    first = MetricsServer("127.0.0.1:0")
    port = first.start()
    try:
        assert MetricsServer(f"127.0.0.1:{port}").start() is None
    finally:
        first.stop()
    assert any("metrics not served" in r.getMessage() for r in caplog.records)


async def test_logs_carry_the_trace_id(
    service: InferenceService, spans: InMemorySpanExporter, json_logs: io.StringIO
) -> None:
    async with grpc_channel(service) as channel:
        await stub(channel).ModelInfer(
            raw_request(ZEROS), metadata=(("traceparent", traceparent()),)
        )
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    (infer,) = [line for line in lines if line["msg"] == "infer"]
    server = one(spans.get_finished_spans(), INFER_METHOD)
    assert server.context is not None
    assert infer["trace_id"] == TRACE_ID
    assert infer["span_id"] == format(server.context.span_id, "016x")
    assert (infer["level"], infer["model"], infer["batch_size"]) == ("debug", "digits", 1)


async def test_server_timing(service: InferenceService) -> None:
    response = await service.model_infer(raw_request(ZEROS))
    header = response.parameters[SERVER_TIMING].string_param
    parts = {k: float(v) for k, v in re.findall(r"(\w+);dur=([0-9.]+)", header)}
    assert list(parts) == ["queue", "model", "service"], header
    assert all(v >= 0 for v in parts.values()), header
    assert parts["queue"] + parts["model"] <= parts["service"], header
    assert re.fullmatch(r"queue;dur=[0-9.]+, model;dur=[0-9.]+, service;dur=[0-9.]+", header)


async def test_a_batch_of_requests_gets_one_set_of_spans_linked_to_each(
    model_repository: Path, spans: InMemorySpanExporter
) -> None:
    """Three requests in one model call: the first has queue/batch/execute children,
    its batch span links to the other two, and they link back to it."""

    def factory(backend: Backend, config: ModelConfig) -> DynamicBatcher:
        # A long delay cut short at 3 rows: the three requests run as one batch.
        policy = DynamicBatching(max_queue_delay_us=10_000_000, preferred_batch_size=(3,))
        return DynamicBatcher(backend, dataclasses.replace(config, dynamic_batching=policy))

    repo = ModelRepository(model_repository, runner_factory=factory)
    repo.load()
    service = InferenceService(repo)
    recorder = telemetry.tracer()
    assert recorder is not None
    # The SDK's own spans stand for the requests: the batcher's spans link to any span.
    tracer = recorder.tracer

    async def call(i: int) -> None:
        with tracer.start_as_current_span(f"request {i}", kind=SpanKind.SERVER):
            await service.model_infer(raw_request(ZEROS))

    try:
        await asyncio.gather(*(call(i) for i in range(3)))
    finally:
        repo.close()
    found = spans.get_finished_spans()
    requests = {s.name: s for s in found if s.name.startswith("request ")}
    assert len(requests) == 3
    batch = one(found, "batch")
    assert batch.parent is not None
    (lead,) = (s for s in requests.values() if s.context.span_id == batch.parent.span_id)
    assert_batch_children(found, lead)
    attributes = batch.attributes or {}
    assert attributes["messaging.batch.message_count"] == 3
    assert attributes["tandem.batch_requests"] == 3
    assert attributes["tandem.batch_size"] == 3
    others = [s for s in requests.values() if s is not lead]
    assert {link.context.span_id for link in batch.links} == {s.context.span_id for s in others}
    for span in others:
        assert [link.context.span_id for link in span.links] == [batch.context.span_id]
    assert not lead.links


async def test_a_lone_request_has_no_links(
    service: InferenceService, spans: InMemorySpanExporter
) -> None:
    recorder = telemetry.tracer()
    assert recorder is not None
    with recorder.tracer.start_as_current_span("request", kind=SpanKind.SERVER):
        await service.model_infer(raw_request(ZEROS))
    found = spans.get_finished_spans()
    assert_batch_children(found, one(found, "request"))
    batch = one(found, "batch")
    assert not batch.links
    assert "messaging.batch.message_count" not in (batch.attributes or {})
