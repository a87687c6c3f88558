"""The minilm section's figures and text, on hand-made driver reports and spans."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from tandem_stack import otlp

import minilm

if TYPE_CHECKING:
    from schema import Report


def stats(p50: float, p99: float) -> dict[str, Any]:
    return {"count": 10, "mean_us": p50, "p50_us": p50, "p90_us": p99, "p99_us": p99,
            "p999_us": p99, "max_us": p99, "cdf": None}  # fmt: skip


def report(name: str, capacity: float, errors: int = 0) -> Report:
    step = {"errors": errors, "latency": stats(1, 2)}
    closed = {"rounds": [], "errors": 0, "latency": stats(4000.0, 9000.0)}
    return cast(
        "Report",
        {
            "plan": {},
            "started": 0.0,
            "ended": 1.0,
            "scenarios": [
                {
                    "spec": {"name": name},
                    "closed": closed,
                    "steps": [step],
                    "capacity_rps": capacity,
                    "capacity_bounded": True,
                }
            ],
        },
    )


def test_row_takes_capacity_latency_and_every_error() -> None:
    assert minilm.row(report("gateway-grpc", 180.0, errors=3)) == {
        "name": "gateway-grpc",
        "capacity_rps": 180.0,
        "capacity_bounded": True,
        "p50_us": 4000.0,
        "p99_us": 9000.0,
        "errors": 3,
    }


def span(trace: str, service: str, kind: int, name: str, *, start: int, end: int) -> otlp.Span:
    return otlp.Span(
        trace_id=trace, span_id=f"{trace}-{name}", parent_id="", name=name, service=service,
        kind=kind, start_ns=start, end_ns=end, attributes={},
    )  # fmt: skip


def test_hop_row_is_the_median_of_complete_traces() -> None:
    spans = []
    for t, model_us in (("a", 3000), ("b", 5000), ("c", 4000)):
        spans += [
            span(t, "tandem-gateway", otlp.SERVER, "POST", start=0, end=(model_us + 500) * 1000),
            span(t, "tandem-gateway", otlp.CLIENT, "send", start=0, end=(model_us + 400) * 1000),
            span(
                t, "tandem-inference", otlp.SERVER, "process", start=0, end=(model_us + 100) * 1000
            ),
            span(t, "tandem-inference", 1, "execute", start=0, end=model_us * 1000),
        ]
    # A trace without Python's spans is not counted.
    spans.append(span("d", "tandem-gateway", otlp.SERVER, "POST", start=0, end=10**9))
    got = minilm.hop_row("grpc", spans)
    assert got["traces"] == 3
    assert got["median_us"]["model"] == 4000.0
    assert got["median_us"]["Go edge (HTTP, JSON, validation)"] == 100.0
    assert got["median_us"]["transport (the hop, both ways)"] == 300.0


def test_render_and_problems() -> None:
    rows = [minilm.row(report("baseline", 100.0)), minilm.row(report("gateway-grpc", 150.0, 2))]
    section: minilm.Section = {"modes": {"same": rows}, "hops": []}
    text = minilm.render(section)
    assert "| gateway-grpc | 150 req/s | 1.50× | 4.00 ms | 9.00 ms | 2 |" in text
    assert minilm.problems(section) == ["minilm, same: gateway-grpc: 2 errors"]
