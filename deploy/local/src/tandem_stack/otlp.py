"""A local OTLP/HTTP trace receiver, and a waterfall printed from what it received.

The gateway and the Python service export their spans over real OTLP, exactly as
they would to a collector; this receiver keeps them in memory so that the trace
tests and `make demo` read back the spans that were actually exported.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2


@dataclass(frozen=True)
class Span:
    """One exported span, flattened to what the tests and the waterfall need."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


def _value(v: common_pb2.AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@dataclass
class Receiver:
    """OTLP/HTTP on 127.0.0.1, protobuf, optionally gzip.

    Point both processes' OTEL_EXPORTER_OTLP_ENDPOINT at `endpoint`.
    """

    spans: list[Span] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    receiver._add(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
                # Metrics and logs are welcome and ignored: the tests read them elsewhere.
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _add(self, req: trace_service_pb2.ExportTraceServiceRequest) -> None:
        got = [
            Span(
                service=str(_attrs(rs.resource.attributes).get("service.name", "?")),
                name=s.name,
                kind=s.kind,
                trace_id=s.trace_id.hex(),
                span_id=s.span_id.hex(),
                parent_id=s.parent_span_id.hex(),
                start_ns=s.start_time_unix_nano,
                end_ns=s.end_time_unix_nano,
                attributes=_attrs(s.attributes),
            )
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]
        with self._lock:
            self.spans.extend(got)

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_trace(self, trace_id: str, services: set[str], timeout: float = 15.0) -> list[Span]:
        """The trace's spans once every named service has exported at least one of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.trace(trace_id)
            if services <= {s.service for s in spans}:
                # Spans of one service arrive in batches; give the last batch a moment.
                time.sleep(0.3)
                return self.trace(trace_id)
            time.sleep(0.05)
        seen = {s.service for s in self.trace(trace_id)}
        raise TimeoutError(f"trace {trace_id}: spans from {seen}, waited for {services}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def waterfall(spans: list[Span], width: int = 40) -> str:
    """The trace as an indented tree with a bar per span, its duration and its share of the root."""
    if not spans:
        return "(no spans)"
    by_parent: dict[str, list[Span]] = {}
    ids = {s.span_id for s in spans}
    for s in sorted(spans, key=lambda s: s.start_ns):
        by_parent.setdefault(s.parent_id if s.parent_id in ids else "", []).append(s)
    roots = by_parent.get("", [])
    t0 = min(s.start_ns for s in spans)
    total = max(s.end_ns for s in spans) - t0 or 1
    lines = []

    def walk(span: Span, depth: int) -> None:
        left = int((span.start_ns - t0) / total * width)
        bar = max(1, int(span.duration_ns / total * width))
        label = f"{'  ' * depth}{span.name} [{span.service}]"
        lines.append(
            f"{label:<58.58} {' ' * left}{'█' * bar}{' ' * max(0, width - left - bar)} "
            f"{span.duration_ns / 1e3:9.1f} µs {span.duration_ns / total:6.1%}"
        )
        for child in by_parent.get(span.span_id, []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return "\n".join(lines)


def otel_env(endpoint: str, ratio: str = "1") -> dict[str, str]:
    """The standard OTEL_* settings that point a process at `endpoint`, sampling `ratio`."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": ratio,
        # Export within 100 ms rather than 5 s, so that a test or the demo need not wait.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        # Both sides emit the stable RPC conventions, so their attributes agree.
        "OTEL_SEMCONV_STABILITY_OPT_IN": "rpc",
    }


SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP SpanKind values


def hop_shares(spans: list[Span]) -> list[tuple[str, float]]:
    """Where one request's time went, by hop, from its spans: (part, microseconds)."""

    def dur(pred: Callable[[Span], bool]) -> float:
        found = [s for s in spans if pred(s)]
        return found[0].duration_ns / 1e3 if found else 0.0

    edge = dur(lambda s: s.service == "tandem-gateway" and s.kind == SERVER)
    hop = dur(lambda s: s.service == "tandem-gateway" and s.kind in (CLIENT, PRODUCER))
    python = dur(lambda s: s.service == "tandem-inference" and s.kind in (SERVER, CONSUMER))
    queue = dur(lambda s: s.name == "queue")
    batch = dur(lambda s: s.name == "batch")
    model = dur(lambda s: s.name == "execute")
    return [
        ("Go edge (HTTP, JSON, validation)", max(0.0, edge - hop)),
        ("transport (the hop, both ways)", max(0.0, hop - python)),
        ("Python (decode, validate, encode)", max(0.0, python - queue - batch)),
        ("Python queue", queue),
        # The model runs inside the batch span: what is left is assembling and splitting.
        ("batch assembly and split", max(0.0, batch - model)),
        ("model", model),
    ]
