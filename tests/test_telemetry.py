"""One trace across the language hop, metrics that move, logs that carry the trace, Server-Timing.

Both processes export over real OTLP/HTTP to a receiver the test starts
(otlp.py); nothing here reads timers that bypass the spans.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from tandem_stack.otlp import CLIENT, CONSUMER, PRODUCER, SERVER, Receiver, Span, otel_env
from tandem_stack.stack import TRANSPORTS, Stack

from conftest import infer_body, metric, probabilities

ZEROS = np.zeros((1, 64), dtype=np.float32)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module", params=TRANSPORTS)
def traced(request: pytest.FixtureRequest, receiver: Receiver) -> Iterator[Stack]:
    s = Stack(
        transport=request.param,
        env=otel_env(receiver.endpoint),
        gateway_args=["--log-level", "debug"],
        python_args=["--log-level", "debug"],
    )
    with s:
        yield s


def traced_request(stack: Stack, traceparent: str | None = None) -> tuple[httpx.Response, float]:
    headers = {"traceparent": traceparent} if traceparent else {}
    with httpx.Client(base_url=stack.rest_url, timeout=30) as c:
        started = time.perf_counter()
        r = c.post("/v2/models/digits/infer", json=infer_body(ZEROS), headers=headers)
        elapsed = time.perf_counter() - started
    probabilities(r)
    return r, elapsed


def new_traceparent() -> tuple[str, str, str]:
    trace_id, span_id = np.random.bytes(16).hex(), np.random.bytes(8).hex()
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def one(spans: list[Span], **match: object) -> Span:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s.service, s.name, s.kind) for s in spans])
    return found[0]


def test_one_trace_crosses_the_hop(traced: Stack, receiver: Receiver) -> None:
    traceparent, trace_id, client_span = new_traceparent()
    traced_request(traced, traceparent)
    spans = receiver.wait_trace(trace_id, {"tandem-gateway", "tandem-inference"})

    # The client's trace is continued, not replaced: its span is the gateway server span's parent.
    edge = one(spans, service="tandem-gateway", kind=SERVER)
    assert edge.parent_id == client_span

    subject = "oip.v2.models.digits.infer"
    if traced.transport == "grpc":
        hop = one(spans, service="tandem-gateway", kind=CLIENT)
        assert hop.name == "inference.GRPCInferenceService/ModelInfer"
        py = one(spans, service="tandem-inference", kind=SERVER)
    else:
        hop = one(spans, service="tandem-gateway", kind=PRODUCER)
        assert hop.name == f"send {subject}"
        assert hop.attributes["messaging.system"] == "nats"
        assert hop.attributes["messaging.destination.name"] == subject
        py = one(spans, service="tandem-inference", kind=CONSUMER)
        assert py.name == f"process {subject}"
        assert py.attributes["messaging.system"] == "nats"
    assert hop.parent_id == edge.span_id or hop.parent_id in {s.span_id for s in spans}
    assert py.parent_id == hop.span_id

    for name in ("queue", "batch", "execute"):
        child = one(spans, service="tandem-inference", name=name)
        assert child.parent_id == py.span_id
    # The model's attributes are on the batch span (inference-py/README.md, Telemetry).
    batch = one(spans, service="tandem-inference", name="batch")
    assert batch.attributes["tandem.model"] == "digits"
    assert batch.attributes["tandem.model_version"] == "1"
    assert batch.attributes["tandem.backend"] == "onnxruntime"
    assert batch.attributes["tandem.batch_size"] >= 1


def test_health_checks_are_not_traced_in_python(traced: Stack, receiver: Receiver) -> None:
    traceparent, trace_id, _ = new_traceparent()
    with httpx.Client(base_url=traced.rest_url, timeout=10) as c:
        assert c.get("/v2/health/ready", headers={"traceparent": traceparent}).status_code == 200
    receiver.wait_trace(trace_id, {"tandem-gateway"})
    time.sleep(0.5)
    assert not [s for s in receiver.trace(trace_id) if s.service == "tandem-inference"]


def test_logs_carry_the_trace_id(traced: Stack, receiver: Receiver) -> None:
    traceparent, trace_id, _ = new_traceparent()
    traced_request(traced, traceparent)
    receiver.wait_trace(trace_id, {"tandem-gateway", "tandem-inference"})
    for name in ("gateway", "inference-py"):
        lines = [
            json.loads(line)
            for line in traced.process(name).log_path.read_text().splitlines()
            if line.startswith("{")
        ]
        assert any(line.get("trace_id") == trace_id and line.get("span_id") for line in lines), name


def test_server_timing(traced: Stack) -> None:
    r, elapsed = traced_request(traced)
    header = r.headers["server-timing"]
    parts = dict(re.findall(r"(\w+);dur=([0-9.]+)", header))
    assert set(parts) >= {"edge", "hop", "python", "queue", "model"}, header
    durations = {k: float(v) for k, v in parts.items()}
    assert all(v >= 0 for v in durations.values()), header
    assert sum(durations.values()) <= elapsed * 1000, (header, elapsed)
    assert "server_timing" not in r.text


def test_metrics_move(traced: Stack) -> None:
    """Both sides' series move with a good request, and a bad one counts under its status."""
    with httpx.Client(timeout=10) as c:
        urls = (
            f"http://{traced.admin_addr}/metrics",
            f"http://{traced.python_metrics_addr}/metrics",
        )
        before = [c.get(u).text for u in urls]
        traced_request(traced)
        bad = c.post(f"{traced.rest_url}/v2/models/digits/infer", json={"inputs": []})
        assert bad.status_code == 400
        after = [c.get(u).text for u in urls]

    def delta(side: int, name: str, **labels: str) -> float:
        return metric(after[side], name, **labels) - metric(before[side], name, **labels)

    gateway, python = 0, 1
    ok = {"model": "digits", "transport": traced.transport}
    assert delta(gateway, "tandem_gateway_requests_total", code="200", **ok) >= 1
    assert delta(gateway, "tandem_gateway_requests_total", code="400", **ok) == 1
    assert delta(gateway, "tandem_gateway_request_duration_seconds_count", model="digits") >= 2
    assert "tandem_gateway_in_flight_requests" in after[gateway]

    assert delta(python, "tandem_inference_requests_total", model="digits", code="OK") >= 1
    bad_status = {"model": "digits", "code": "INVALID_ARGUMENT"}
    assert delta(python, "tandem_inference_requests_total", **bad_status) == 1
    for name in ("batch_size", "queue_seconds", "execute_seconds"):
        assert delta(python, f"tandem_inference_{name}_count", model="digits") >= 1, name
    assert "tandem_inference_queue_depth" in after[python]


def test_sampler_ratio_zero_exports_nothing() -> None:
    with Receiver() as quiet:
        s = Stack(transport="grpc", env=otel_env(quiet.endpoint, ratio="0"))
        try:
            s.start()
            for _ in range(5):
                traced_request(s)
            time.sleep(1.0)
        finally:
            s.stop()
        assert quiet.spans == []
