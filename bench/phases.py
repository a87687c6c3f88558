"""The short phases after the scenarios: a CPU profile, traces, what tracing costs."""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tandem_stack import otlp
from tandem_stack.stack import GATEWAY

from driver import drive, spec, with_scenarios
from progress import Progress
from scenarios import SCENARIOS, TRACED, Phases, Role
from schema import Kind, Plan, Report, spec_name, spec_target

if TYPE_CHECKING:
    from services import Services
    from summary import OverheadConfig, OverheadRaw, ProfileRaw, TraceRow, TracesRaw

BENCH = Path(__file__).resolve().parent


def profile_phase(
    settings: Plan, phases: Phases, result: Report, services: Services, raw: Path
) -> ProfileRaw | None:
    """The best gateway scenario at a share of its capacity, with a CPU profile of its gateway.

    Also where the gateway's RSS under the heaviest sustained load within capacity
    is measured.
    """
    by_name = {s.name: s for s in SCENARIOS}
    swept = [
        r
        for r in result["scenarios"]
        if by_name[spec_name(r)].role == Role.GATEWAY and r["capacity_rps"] > 0
    ]
    if not swept:
        return None
    best = max(swept, key=lambda r: r["capacity_rps"])
    scenario = by_name[spec_name(best)]
    rate = round(phases.profile_share * best["capacity_rps"])
    warmup = min(settings.warmup_s, 1.0)
    run = replace(
        settings,
        warmup_s=warmup,
        step_s=phases.profile_s + 3.0,
        max_steps=1,
        closed_rounds=0,
        retries=0,
    )
    one = spec(scenario.name, scenario.kind, spec_target(best), fixed_rps=rate)
    admin = services.admin_addrs[scenario.via]
    path = raw / f"{scenario.via}.pprof"
    fetched: dict[str, str] = {}

    def fetch() -> None:
        # Into the step: after the warm-up, the pause and a second of the step itself.
        time.sleep(warmup + settings.pause_s + 1.0)
        url = f"http://{admin}/debug/pprof/profile?seconds={phases.profile_s}"
        try:
            with urllib.request.urlopen(url, timeout=phases.profile_s + 30) as r:
                path.write_bytes(r.read())
        except (urllib.error.URLError, OSError) as err:
            fetched["error"] = str(err)

    fetcher = threading.Thread(target=fetch, name="pprof", daemon=True)
    fetcher.start()
    plan = with_scenarios(run, [one])
    out, samples = drive(
        plan, raw, "profile", services.processes, on_line=Progress("profile", plan)
    )
    fetcher.join(phases.profile_s + 40)
    top: dict[str, list[str]] = {}
    if path.is_file():
        for key, flags in (("flat", []), ("cum", ["-cum"])):
            top[key] = _pprof_top(path, flags)
    return {
        "scenario": scenario.name,
        "gateway": scenario.via,
        "capacity_rps": best["capacity_rps"],
        "share": phases.profile_share,
        "profile_s": phases.profile_s,
        "result": out,
        "samples": [s.to_json() for s in samples],
        "top": top,
        "error": fetched.get("error"),
    }


def _pprof_top(path: Path, flags: list[str]) -> list[str]:
    """`go tool pprof -top`, 15 nodes: the header from Duration on, and the rows."""
    argv = ["go", "tool", "pprof", "-top", "-nodecount=15", *flags, str(GATEWAY), str(path)]
    try:
        out = subprocess.run(  # noqa: S603 (fixed arguments)
            argv, capture_output=True, text=True, timeout=120, check=True, cwd=BENCH
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return [f"go tool pprof failed: {err}"]
    lines = out.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Duration")), 0)
    return lines[start:]


def trace_phase(
    settings: Plan, phases: Phases, services: Services, receiver: otlp.Receiver, raw: Path
) -> TracesRaw:
    """Requests one at a time through each traced gateway (100%); median hop shares."""
    names = [g.name for g in TRACED if g.otel_ratio == "1"]
    specs = [spec(n, Kind.REST_JSON, services.rest_urls[n], closed=True) for n in names]
    run = replace(
        settings,
        warmup_s=min(settings.warmup_s, 1.0),
        start_rps=min(settings.start_rps, 100.0),
        closed_requests=phases.trace_requests,
        closed_rounds=1,
    )
    plan = with_scenarios(run, specs)
    out, samples = drive(plan, raw, "traces", services.processes, on_line=Progress("traces", plan))
    _settle(receiver)
    spans = list(receiver.spans)
    by_trace: dict[str, list[otlp.Span]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    rows: dict[str, TraceRow] = {}
    for r in out["scenarios"]:
        closed = r.get("closed")
        assert closed is not None, "a closed-loop scenario has its rounds"
        window = closed["rounds"][0]
        lo, hi = window["started"] * 1e9, window["ended"] * 1e9
        shares: list[list[tuple[str, float]]] = []
        totals: list[float] = []
        for trace in by_trace.values():
            roots = [
                s
                for s in trace
                if s.service == "tandem-gateway" and s.kind == otlp.SERVER and not s.parent_id
            ]
            complete = {"tandem-gateway", "tandem-inference"} <= {s.service for s in trace}
            if len(roots) != 1 or not complete or not any(s.name == "execute" for s in trace):
                continue
            if lo <= roots[0].start_ns <= hi:
                shares.append(otlp.hop_shares(trace))
                totals.append(roots[0].duration_ns / 1e3)
        parts = [p for p, _ in shares[0]] if shares else []
        rows[spec_name(r)] = {
            "requests": window["requests"],
            "traces": len(shares),
            "client_p50_us": closed["latency"]["p50_us"],
            "gateway_span_p50_us": round(statistics.median(totals), 1) if totals else None,
            "median_us": {
                p: round(statistics.median(s[i][1] for s in shares), 1) for i, p in enumerate(parts)
            },
        }
    (raw / "spans.json").write_text(json.dumps([asdict(s) for s in spans]))
    return {"result": out, "samples": [s.to_json() for s in samples], "gateways": rows}


def _settle(receiver: otlp.Receiver, quiet: float = 1.0, limit: float = 15.0) -> None:
    """Wait until the exporters have sent what they hold: no new span for `quiet` s."""
    deadline = time.monotonic() + limit
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = len(receiver.spans)
        if n != seen:
            seen, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)


def overhead_phase(
    settings: Plan,
    phases: Phases,
    result: Report,
    services: Services,
    *,
    traced_services: Services,
    raw: Path,
) -> OverheadRaw:
    """The same fixed load through gateway-grpc with tracing off, at 100% and at 1%."""
    caps = {spec_name(r): r["capacity_rps"] for r in result["scenarios"]}
    capacity = caps.get("rest-gateway-grpc", 0)
    rate = round(phases.overhead_share * capacity) if capacity else round(settings.start_rps)
    configs = {
        "tracing off": ("gateway-grpc", "python", services),
        "100% sampled": ("gateway-grpc-traced", "python-traced", traced_services),
        "1% sampled": ("gateway-grpc-traced-1pct", "python-traced", traced_services),
    }
    specs = [
        spec(name, Kind.REST_JSON, where.rest_urls[gw], fixed_rps=rate)
        for name, (gw, _, where) in configs.items()
    ]
    run = replace(
        settings,
        warmup_s=min(settings.warmup_s, 1.0),
        step_s=phases.overhead_step_s,
        max_steps=phases.overhead_steps,
        closed_rounds=0,
        retries=0,
    )
    processes = {**services.processes, **traced_services.processes}
    plan = with_scenarios(run, specs)
    out, samples = drive(plan, raw, "overhead", processes, on_line=Progress("overhead", plan))
    described: dict[str, OverheadConfig] = {
        k: {"gateway": g, "python": p} for k, (g, p, _) in configs.items()
    }
    return {
        "rate": rate,
        "share": phases.overhead_share,
        "of": "rest-gateway-grpc",
        "capacity_rps": capacity,
        "configs": described,
        "result": out,
        "samples": [s.to_json() for s in samples],
    }
