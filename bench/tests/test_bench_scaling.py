"""The scaling section's arithmetic (summary.scaling_row, bend, sizing_model) and its text,
on small hand-made reports whose answers are worked out in the comments. No time is
asserted about anything real: the figures are invented inputs."""

from __future__ import annotations

from typing import Any, cast

import pytest

import markdown
from schema import Sample, ScenarioReport, Usage
from summary import (
    ScalingConfig,
    ScalingRow,
    bend,
    scaling_row,
    scaling_summary,
    sizing_model,
)


def _report(capacity: float, achieved: float, errors: int = 0) -> ScenarioReport:
    step = {
        "offered_rps": capacity,
        "achieved_rps": achieved,
        "errors": errors,
        "pass": True,
        "started": 10.0,
        "ended": 20.0,
        "latency": {"p99_us": 12_340.0},
    }
    failing = {**step, "offered_rps": capacity * 2, "pass": False, "errors": 0}
    return cast(
        "ScenarioReport",
        {
            "spec": {"name": "x"},
            "steps": [step, failing],
            "capacity_rps": capacity,
            "capacity_bounded": True,
        },
    )


def _samples(cpu: dict[str, float]) -> list[Sample]:
    """Two samples inside the capacity step and one outside it that must not count."""
    inside = {k: cast("Usage", {"cpu": v, "rss": 1 << 20}) for k, v in cpu.items()}
    outside = {k: cast("Usage", {"cpu": 1000.0, "rss": 1 << 20}) for k in cpu}
    return [
        Sample(t=12.0, usage=inside),
        Sample(t=18.0, usage=inside),
        Sample(t=30.0, usage=outside),
    ]


NATS_W2: ScalingConfig = {
    "name": "nats-w2",
    "hop": "nats",
    "workers": 2,
    "processes": {
        "nats-w2/gateway": "gateway",
        "nats-w2/inference-py": "python",
        "nats-w2/inference-py-2": "python",
        "nats-w2/nats-server": "nats-server",
    },
}


def test_scaling_row_divides_each_tiers_cpu_by_the_rate() -> None:
    # 2000 req/s; gateway 40% of a core = 0.4 s/s / 2000 = 200 µs; Python 50% + 30% = 400 µs;
    # nats-server 10% = 50 µs; 650 µs in all. The sample at t=30 lies outside the step.
    cpu = {
        "nats-w2/gateway": 40.0,
        "nats-w2/inference-py": 50.0,
        "nats-w2/inference-py-2": 30.0,
        "nats-w2/nats-server": 10.0,
        "loadgen": 70.0,
    }
    row = scaling_row("same", NATS_W2, _report(2000.0, 2000.0), _samples(cpu))
    assert row["us_per_request"] == {"gateway": 200.0, "python": 400.0, "nats-server": 50.0}
    assert row["total_us"] == 650.0
    assert sorted(row["worker_cpu_pct"]) == [30.0, 50.0]
    assert row["cpu_pct"]["python"] == 80.0
    assert row["driver_cpu_pct"] == 70.0
    assert row["p99_ms"] == 12.34
    assert (row["capacity_rps"], row["errors"]) == (2000.0, 0)


def test_scaling_row_without_a_passing_step_has_no_costs() -> None:
    report = _report(0.0, 0.0)
    report["steps"][0]["pass"] = False
    row = scaling_row("same", NATS_W2, report, _samples({"nats-w2/gateway": 40.0}))
    assert (row["capacity_rps"], row["total_us"], row["us_per_request"]) == (None, None, {})


def _row(mode: str, hop: str, workers: int, capacity: float, **per: float) -> ScalingRow:
    us = {k.replace("_", "-"): v for k, v in per.items()}
    return cast(
        "ScalingRow",
        {
            "mode": mode,
            "config": f"{hop}-w{workers}",
            "hop": hop,
            "workers": workers,
            "capacity_rps": capacity,
            "bounded": True,
            "p99_ms": 10.0,
            "errors": 0,
            "cpu_pct": {t: v * capacity / 1e4 for t, v in us.items()},
            "worker_cpu_pct": [95.0 if hop == "grpc" else 60.0] * workers,
            "driver_cpu_pct": 40.0,
            "others_cpu_pct": 0.0,
            "us_per_request": us,
            "total_us": sum(us.values()),
        },
    )


ROWS = [
    _row("same", "nats", 1, 1000.0, gateway=200.0, python=600.0, nats_server=200.0),
    _row("same", "nats", 2, 900.0, gateway=210.0, python=650.0, nats_server=200.0),
    _row("all", "nats", 1, 1500.0, gateway=180.0, python=500.0, nats_server=150.0),
    _row("all", "nats", 2, 1800.0, gateway=190.0, python=520.0, nats_server=160.0),
    _row("all", "grpc", 1, 2000.0, gateway=100.0, python=400.0),
]


@pytest.mark.parametrize(
    ("hop", "cores", "want"),
    [
        # 1000 µs per request on the same-CPU 1-worker row: 16 cores give 16,000 req/s;
        # Python's 60% is 9.6 cores, so 10 workers; the gateway's 20% is 3.2 cores, one
        # process; nats-server's 3.2 cores need 1 server of 8, but a cluster is at least 3.
        ("nats", 16, {"capacity_rps": 16_000, "workers": 10, "gateways": 1, "nats_servers": 3}),
        # 64 cores: 38.4 -> 38 workers, 12.8 gateway cores -> 2 processes, 12.8 NATS -> 3.
        ("nats", 64, {"capacity_rps": 64_000, "workers": 38, "gateways": 2, "nats_servers": 3}),
        # No same-CPU row for grpc: the all-cores 1-worker row, 500 µs; no NATS servers.
        ("grpc", 64, {"capacity_rps": 128_000, "workers": 51, "gateways": 2, "nats_servers": 0}),
    ],
)
def test_sizing_model(hop: str, cores: int, want: dict[str, Any]) -> None:
    m = sizing_model(ROWS, hop, cores)
    assert m is not None
    assert {k: m[k] for k in want} == want  # type: ignore[literal-required]
    assert m["basis"] == ("same/nats-w1" if hop == "nats" else "all/grpc-w1")


def test_sizing_model_without_a_one_worker_row() -> None:
    assert sizing_model([r for r in ROWS if r["workers"] == 2], "nats", 16) is None


def test_bend_names_the_costliest_tier_and_the_gains() -> None:
    b = bend(ROWS, "nats", cpus=2)
    assert b is not None
    assert (b["limit"], b["limit_us"], b["total_us"]) == ("python", 600.0, 1000.0)
    assert (b["gain_same"], b["gain_all"]) == (0.9, 1.2)
    assert not b["workers_bound"]  # 60% of a core
    # All tiers at 2 workers' capacity: 1800 req/s x 870 µs = 156.6% of a core, plus the
    # driver's 40%, over 2 cores.
    assert b["machine_busy_pct"] == pytest.approx(98.3, abs=0.1)
    g = bend(ROWS, "grpc", cpus=2)
    assert g is not None
    assert g["workers_bound"]
    assert (g["gain_same"], g["gain_all"]) == (None, None)


def test_scaling_markdown_states_the_measured_model() -> None:
    report = _report(2000.0, 2000.0)
    cpu = {
        "nats-w2/gateway": 40.0,
        "nats-w2/inference-py": 50.0,
        "nats-w2/inference-py-2": 30.0,
        "nats-w2/nats-server": 10.0,
    }
    passes = [
        (
            {"mode": "same", "servers": [0], "driver": [1], "configs": [NATS_W2], "affinity": {}},
            {"plan": {}, "started": 0.0, "ended": 1.0, "scenarios": [report]},
            _samples(cpu),
        )
    ]
    report["spec"] = {"name": "nats-w2", "kind": "rest-json", "target": "http://x"}
    summary = scaling_summary(cast("Any", passes), cpus=2)
    text = "\n".join(markdown.scaling_markdown(summary, 2))
    assert "| servers on CPU 0, driver on CPU 1 | nats | 2 | 2,000 |" in text
    assert "200 / 400 / 50 = **650**" in text
    # Only a 2-worker row: no basis for a bend or a model.
    assert summary["model"] == []
    assert summary["bends"] == []
    assert "Assumed, not measured on 2 cores" in text
