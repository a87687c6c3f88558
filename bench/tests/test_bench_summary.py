"""summary.py and markdown.py against golden files, from a committed raw fixture.

The fixture (fixtures/quick/) is a real --quick run's raw/, trimmed by
make_fixture.py. After a deliberate change to the summary, write the golden files
again with BENCH_UPDATE_GOLDEN=1 and review the diff. Figures here are whatever
that run measured: nothing is asserted about how fast anything is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import cast

import pytest

import markdown
import soak
from scenarios import SCENARIOS
from schema import Report, Sample, load_report, load_samples
from summary import Meta, PhasesRaw, Summary, summarize, window

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "quick"
UPDATE = os.environ.get("BENCH_UPDATE_GOLDEN") == "1"
META: Meta = {
    "generated": "2026-12-02T15:15:06+00:00",
    "mode": "quick",
    "commit": "fixture",
    "machine": {"cpus": 2, "cpu_model": "a test CPU", "platform": "Linux"},
    "cpus": 2,
}


def _summary() -> Summary:
    result = load_report((FIXTURE / "loadgen.json").read_text())
    samples = load_samples((FIXTURE / "samples.json").read_text())
    phases = cast("PhasesRaw", json.loads((FIXTURE / "phases.json").read_text()))
    cpu = json.loads((FIXTURE / "cpu.json").read_text())
    same = (
        load_report((FIXTURE / "samecpu.json").read_text()),
        load_samples((FIXTURE / "samecpu-samples.json").read_text()),
        cpu["servers"],
        cpu["driver"],
    )
    return summarize(result, samples, SCENARIOS, phases, META, same_cpu=same)


def _golden(name: str, text: str) -> None:
    path = FIXTURE / name
    if UPDATE:
        path.write_text(text)
    assert path.is_file(), f"no {name}: run with BENCH_UPDATE_GOLDEN=1"
    assert text == path.read_text()


def test_summary_json_is_the_golden_one() -> None:
    _golden("summary.golden.json", json.dumps(_summary(), indent=1) + "\n")


def test_summary_md_is_the_golden_one() -> None:
    _golden("summary.golden.md", markdown.render(_summary()))


def test_summarize_is_pure() -> None:
    assert _summary() == _summary()


def test_every_scenario_and_the_same_cpu_pass_are_summarised() -> None:
    summary = _summary()
    raw = load_report((FIXTURE / "loadgen.json").read_text())
    assert [r["name"] for r in summary["scenarios"]] == [
        str(r["spec"]["name"]) for r in raw["scenarios"]
    ]
    same = summary["same_cpu"]
    assert same["servers"] == [0]
    assert same["driver"] == [1]
    assert {p["scenario"] for p in same["per_core"]} <= {s.name for s in SCENARIOS}
    assert {"profile", "traces", "overhead"} <= set(summary["phases"])


def test_window_is_mean_cpu_and_peak_rss() -> None:
    samples = [
        Sample(t=1.0, usage={"a": {"cpu": 10.0, "rss": 2_000_000}}),
        Sample(t=2.0, usage={"a": {"cpu": 30.0, "rss": 1_000_000}}),
        Sample(t=9.0, usage={"a": {"cpu": 99.0, "rss": 9_000_000}}),
    ]
    assert window(samples, 0.5, 2.5) == {"a": {"cpu_pct": 20.0, "rss_mb": 2.0}}


def _fake_report(p99s: list[float], errors: int = 0) -> Report:
    stats = {"count": 1, "mean_us": 1.0, "p50_us": 1.0, "p90_us": 1.0, "p999_us": 1.0}
    steps = [
        {
            "offered_rps": 10.0,
            "achieved_rps": 10.0,
            "expected": 10,
            "sent": 10,
            "ok": 10 - errors,
            "errors": errors,
            "latency": {**stats, "p99_us": p99, "max_us": p99, "cdf": None},
            "service": {**stats, "p99_us": p99, "max_us": p99, "cdf": None},
            "send_lag_p99_us": 0.0,
            "pass": True,
            "started": 100.0 + 10 * i,
            "ended": 110.0 + 10 * i,
        }
        for i, p99 in enumerate(p99s)
    ]
    spec = {"name": "x", "kind": "rest-json", "target": "t", "sweep": False, "closed": False}
    scenario = {"spec": spec, "steps": steps, "capacity_rps": 10.0, "capacity_bounded": False}
    return cast("Report", {"plan": {}, "started": 0.0, "ended": 1.0, "scenarios": [scenario]})


def test_soak_windows_and_rss_at_start_and_end() -> None:
    samples = [
        Sample(t=100.0, usage={"gw": {"cpu": 10.0, "rss": 10_000_000}}),
        Sample(t=110.0, usage={"gw": {"cpu": 30.0, "rss": 30_000_000}}),
        Sample(t=120.0, usage={"gw": {"cpu": 20.0, "rss": 20_000_000}}),
    ]
    windows, kinds, procs = soak.summarize_soak(
        {"x": _fake_report([500.0, 700.0], errors=1)}, samples, started=100.0
    )
    assert [w["t_s"] for w in windows["x"]] == [10.0, 20.0]
    assert [w["p99_us"] for w in windows["x"]] == [500.0, 700.0]
    assert sum(w["errors"] for w in windows["x"]) == 2
    assert kinds == {"x": {}}
    assert procs["gw"] == {"start_mb": 10.0, "end_mb": 20.0, "peak_mb": 30.0, "mean_cpu_pct": 20.0}


@pytest.mark.parametrize(("text", "seconds"), [("10m", 600), ("90s", 90), ("1h30m", 5400)])
def test_soak_durations(text: str, seconds: float) -> None:
    assert soak.duration(text) == seconds
    assert soak.duration(str(seconds)) == seconds
