"""Raw results to summary figures: pure functions, no files, no clock, no machine.

summarize() turns the driver's result (schema.Report), the process samples and
the phases' raw data into what summary.json holds; markdown.py and plots.py draw
from that. Golden-tested in bench/tests against a committed raw fixture.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NotRequired, TypedDict

from scenarios import GATEWAYS, Role, Scenario
from schema import (
    Closed,
    Plan,
    Report,
    Sample,
    ScenarioReport,
    Stats,
    Step,
    spec_flag,
    spec_name,
    spec_target,
)

# Figures are compared with these, never asserted: the capacity of the best gateway
# scenario over the baseline's, the latency the gateway adds at one request in
# flight (p50 and p99), and the gateway's peak RSS while serving.
CAPACITY_RATIO_TARGET = 4.0
ADDED_P50_TARGET_US = 100.0
ADDED_P99_TARGET_US = 300.0
GATEWAY_RSS_TARGET_MB = 40.0

PLOTS = ("latency_vs_rate.png", "latency_cdf.png", "cpu_vs_rate.png")
HOP_PLOT = "hop_breakdown.png"
# The samples' name for every process on the machine that is not part of the run.
OTHERS = "others"
MB = 1e6

# --- the raw phases (raw/phases.json), as run.py's phases write them ---


class ProfileRaw(TypedDict):
    scenario: str
    gateway: str
    capacity_rps: float
    share: float
    profile_s: int
    result: Report
    samples: list[dict[str, object]]  # Sample.to_json()
    top: dict[str, list[str]]
    error: str | None


class TraceRow(TypedDict):
    requests: int
    traces: int
    client_p50_us: float
    gateway_span_p50_us: float | None
    median_us: dict[str, float]


class TracesRaw(TypedDict):
    result: Report
    samples: list[dict[str, object]]
    gateways: dict[str, TraceRow]


class OverheadConfig(TypedDict):
    gateway: str
    python: str


class OverheadRaw(TypedDict):
    rate: int
    share: float
    of: str
    capacity_rps: float
    configs: dict[str, OverheadConfig]
    result: Report
    samples: list[dict[str, object]]


class PhasesRaw(TypedDict, total=False):
    profile: ProfileRaw | None
    traces: TracesRaw
    overhead: OverheadRaw


# --- what summary.json holds ---


class ProcUse(TypedDict):
    cpu_pct: float  # mean, % of one core
    rss_mb: float  # peak


class Latency(TypedDict):
    count: int
    mean_us: float
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float


StepRow = TypedDict(
    "StepRow",
    {
        "offered_rps": float,
        "achieved_rps": float,
        "sent": int,
        "expected": int,
        "errors": int,
        "pass": bool,
        "started": float,
        "latency": Latency,
        "service": Latency,
        "processes": dict[str, ProcUse],
    },
)


class OneInFlight(Latency):
    processes: dict[str, ProcUse]


class ScenarioRow(TypedDict):
    name: str
    kind: str
    via: str
    role: str
    hop_of: str | None
    hop_note: str
    same_call: bool
    target: str
    sweep: bool
    closed: bool
    capacity_rps: float | None
    capacity_bounded: bool
    one_in_flight: OneInFlight | None
    processes_at_capacity: dict[str, ProcUse] | None
    errors: int
    error_kinds: dict[str, int]
    steps: list[StepRow]


class CapacityRatio(TypedDict):
    value: float
    gateway: str
    gateway_rps: float
    baseline: str
    baseline_rps: float
    target: float
    met: bool
    exact: bool


class AddedLatency(TypedDict):
    scenario: str
    vs: str
    note: str
    same_call: bool
    p50_us: float
    p99_us: float
    target_p50_us: float
    target_p99_us: float
    p50_met: bool
    p99_met: bool


class PeakRss(TypedDict):
    value: float
    by_gateway: dict[str, float]
    overall: float
    target: float
    met: bool


SustainedRss = TypedDict(
    "SustainedRss",
    {
        "value": float | None,
        "gateway": str,
        "scenario": str,
        "offered_rps": float | None,
        "pass": bool,
        "target": float,
        "met": bool,
    },
)


class Headline(TypedDict, total=False):
    capacity_ratio: CapacityRatio
    capacity_ratio_same_client: CapacityRatio
    added_latency: list[AddedLatency]
    gateway_peak_rss_mb: PeakRss
    sustained_rss_mb: SustainedRss


class Limits(TypedDict):
    scenario: str
    capacity_rps: float | None
    cpu_pct: dict[str, float]
    total_cpu_pct: float
    machine_pct: int


ProfileSummary = TypedDict(
    "ProfileSummary",
    {
        "scenario": str,
        "gateway": str,
        "capacity_rps": float,
        "share": float,
        "offered_rps": float | None,
        "achieved_rps": float | None,
        "pass": bool,
        "errors": int,
        "latency": Latency | None,
        "step_s": float | None,
        "processes": dict[str, ProcUse],
        "profile_s": int,
        "top": dict[str, list[str]],
        "error": str | None,
    },
)


class OverheadRow(TypedDict):
    gateway: str
    python: str
    steps: int
    passed: int
    errors: int
    achieved_rps: float | None
    p50_us: float | None
    p99_us: float | None
    gateway_cpu_pct: float | None
    python_cpu_pct: float | None
    others_cpu_pct: float | None


class OverheadSummary(TypedDict):
    rate: int
    share: float
    of: str
    capacity_rps: float
    configs: dict[str, OverheadRow]


class PhasesSummary(TypedDict, total=False):
    profile: ProfileSummary
    traces: dict[str, TraceRow]
    overhead: OverheadSummary


class PerCore(TypedDict):
    scenario: str
    via: str
    shipped: bool
    capacity_rps: float
    per_core_rps: float
    bounded: bool
    ratio: float | None  # over the baseline's per-core capacity in the same pass


class SameCpu(TypedDict):
    """The pass with every server on the same CPUs and the driver on the rest."""

    servers: list[int]
    driver: list[int]
    whole_run: bool  # --cpu same: the whole run was confined, not a pass of its own
    baseline: str | None
    baseline_rps: float | None
    baseline_bounded: bool
    per_core: list[PerCore]
    others_cpu_pct: float
    scenarios: list[ScenarioRow]


class Meta(TypedDict):
    """What summarize takes from outside the raw data: when, which commit, which machine."""

    generated: str
    mode: str
    commit: str
    machine: dict[str, object]  # cpus, cpu_model, platform
    cpus: int


class Summary(TypedDict):
    generated: str
    mode: str
    commit: str
    machine: dict[str, object]
    note: str
    settings: dict[str, object]
    others_cpu_pct: float
    headline: Headline
    peak_rss_mb: dict[str, float]
    scenarios: list[ScenarioRow]
    plots: list[str]
    phases: NotRequired[PhasesSummary]
    limits: NotRequired[Limits | None]  # always there, after phases
    same_cpu: NotRequired[SameCpu]
    scaling: NotRequired[ScalingSummary]


# --- the functions ---


def window(samples: Sequence[Sample], start: float, end: float) -> dict[str, ProcUse]:
    """Mean CPU (% of one core) and peak RSS (MB) of each process between start and end."""
    inside = [s for s in samples if start <= s.t <= end]
    names = sorted({k for s in inside for k in s.usage})
    out: dict[str, ProcUse] = {}
    for name in names:
        rows = [s.usage[name] for s in inside if name in s.usage]
        out[name] = {
            "cpu_pct": round(sum(r["cpu"] for r in rows) / len(rows), 1),
            "rss_mb": round(max(r["rss"] for r in rows) / MB, 1),
        }
    return out


def latency(stats: Stats) -> Latency:
    return {
        "count": stats["count"],
        "mean_us": stats["mean_us"],
        "p50_us": stats["p50_us"],
        "p90_us": stats["p90_us"],
        "p99_us": stats["p99_us"],
        "p999_us": stats["p999_us"],
        "max_us": stats["max_us"],
    }


def scenario_row(raw: ScenarioReport, scenario: Scenario, samples: Sequence[Sample]) -> ScenarioRow:
    closed, warmup = raw.get("closed"), raw.get("warmup")
    error_kinds: dict[str, int] = {}
    errors = 0
    parts: list[Step | Closed | None] = [warmup, closed, *raw["steps"]]
    for part in parts:
        if not part:
            continue
        errors += part["errors"]
        for kind, n in (part.get("error_kinds") or {}).items():
            error_kinds[kind] = error_kinds.get(kind, 0) + n
    steps: list[StepRow] = [
        {
            "offered_rps": step["offered_rps"],
            "achieved_rps": round(step["achieved_rps"], 1),
            "sent": step["sent"],
            "expected": step["expected"],
            "errors": step["errors"],
            "pass": step["pass"],
            "started": step["started"],
            "latency": latency(step["latency"]),
            "service": latency(step["service"]),
            "processes": window(samples, step["started"], step["ended"]),
        }
        for step in raw["steps"]
    ]
    at_capacity = next(
        (s for s in steps if s["pass"] and s["offered_rps"] == raw["capacity_rps"]), None
    )
    one: OneInFlight | None = None
    if closed:
        first, last = closed["rounds"][0]["started"], closed["rounds"][-1]["ended"]
        one = {**latency(closed["latency"]), "processes": window(samples, first, last)}
    sweep = spec_flag(raw, "sweep")
    return {
        "name": scenario.name,
        "kind": str(scenario.kind),
        "via": scenario.via,
        "role": str(scenario.role),
        "hop_of": scenario.hop_of,
        "hop_note": scenario.hop_note,
        "same_call": scenario.same_call,
        "target": spec_target(raw),
        "sweep": sweep,
        "closed": spec_flag(raw, "closed"),
        "capacity_rps": raw["capacity_rps"] if sweep else None,
        "capacity_bounded": raw["capacity_bounded"],
        "one_in_flight": one,
        "processes_at_capacity": at_capacity["processes"] if at_capacity else None,
        "errors": errors,
        "error_kinds": error_kinds,
        "steps": steps,
    }


def _capacity(r: ScenarioRow) -> float:
    return r["capacity_rps"] or 0.0


def headline(rows: Sequence[ScenarioRow], samples: Sequence[Sample]) -> Headline:
    by_name = {r["name"]: r for r in rows}
    head: Headline = {}
    baseline = next((r for r in rows if r["role"] == Role.BASELINE and r["capacity_rps"]), None)
    gateways = [r for r in rows if r["role"] == Role.GATEWAY and r["capacity_rps"] is not None]
    json_gateways = [r for r in gateways if r["kind"] == baseline["kind"]] if baseline else []
    for key, among in (("capacity_ratio", gateways), ("capacity_ratio_same_client", json_gateways)):
        if not (baseline and among):
            continue
        best = max(among, key=_capacity)
        ratio = _capacity(best) / _capacity(baseline)
        value: CapacityRatio = {
            "value": round(ratio, 2),
            "gateway": best["name"],
            "gateway_rps": _capacity(best),
            "baseline": baseline["name"],
            "baseline_rps": _capacity(baseline),
            "target": CAPACITY_RATIO_TARGET,
            "met": ratio >= CAPACITY_RATIO_TARGET,
            # A sweep that never failed gives a lower bound, which bends the ratio.
            "exact": best["capacity_bounded"] and baseline["capacity_bounded"],
        }
        if key == "capacity_ratio":
            head["capacity_ratio"] = value
        else:
            head["capacity_ratio_same_client"] = value
    added: list[AddedLatency] = []
    for r in rows:
        base = by_name.get(r["hop_of"] or "")
        mine, theirs = r["one_in_flight"], base["one_in_flight"] if base else None
        if not (base and mine and theirs):
            continue
        p50 = mine["p50_us"] - theirs["p50_us"]
        p99 = mine["p99_us"] - theirs["p99_us"]
        added.append(
            {
                "scenario": r["name"],
                "vs": base["name"],
                "note": r["hop_note"],
                "same_call": r["same_call"],
                "p50_us": round(p50, 1),
                "p99_us": round(p99, 1),
                "target_p50_us": ADDED_P50_TARGET_US,
                "target_p99_us": ADDED_P99_TARGET_US,
                "p50_met": p50 <= ADDED_P50_TARGET_US,
                "p99_met": p99 <= ADDED_P99_TARGET_US,
            }
        )
    if added:
        head["added_latency"] = added
    overall = [
        u["rss"] / MB for s in samples for n, u in s.usage.items() if n.startswith("gateway")
    ]
    # Past capacity the driver holds up to max_in_flight connections open, and a Go
    # process keeps the memory it grew for them for minutes. The target is about
    # serving, so each gateway is judged until its first overload; the peak over
    # the whole run is shown beside it.
    serving: list[float] = []
    by_gateway: dict[str, float] = {}
    for via in sorted({r["via"] for r in rows if r["role"] == Role.GATEWAY}):
        # Overload: a failed step above the scenario's capacity, not a retried stall.
        failed = [
            st["started"]
            for r in rows
            if r["via"] == via
            for st in r["steps"]
            if not st["pass"] and st["offered_rps"] > _capacity(r)
        ]
        cutoff = min(failed, default=float("inf"))
        gw = [s.usage[via]["rss"] / MB for s in samples if via in s.usage and s.t < cutoff]
        if gw:
            by_gateway[via] = round(max(gw), 1)
        serving += gw
    if overall:
        peak = max(serving) if serving else max(overall)
        head["gateway_peak_rss_mb"] = {
            "value": round(peak, 1),
            "by_gateway": by_gateway,
            "overall": round(max(overall), 1),
            "target": GATEWAY_RSS_TARGET_MB,
            "met": peak <= GATEWAY_RSS_TARGET_MB,
        }
    return head


def others_cpu(result: Report, samples: Sequence[Sample]) -> float:
    """Mean CPU (% of one core) of processes outside the run, over all sweep steps."""
    steps = [st for r in result["scenarios"] for st in r["steps"]]
    inside = [
        s.usage[OTHERS]["cpu"]
        for s in samples
        if OTHERS in s.usage and any(st["started"] <= s.t <= st["ended"] for st in steps)
    ]
    return round(sum(inside) / len(inside), 1) if inside else 0.0


def rows_of(
    result: Report, scenarios: Sequence[Scenario], samples: Sequence[Sample]
) -> list[ScenarioRow]:
    by_name = {s.name: s for s in scenarios}
    return [scenario_row(r, by_name[spec_name(r)], samples) for r in result["scenarios"]]


def summarize(
    result: Report,
    samples: Sequence[Sample],
    scenarios: Sequence[Scenario],
    phases_raw: PhasesRaw | None,
    meta: Meta,
    *,
    same_cpu: tuple[Report, Sequence[Sample], Sequence[int], Sequence[int]] | None = None,
    same_cpu_only: bool = False,
) -> Summary:
    """Everything summary.json holds. same_cpu: (result, samples, servers' CPUs, driver's)."""
    rows = rows_of(result, scenarios, samples)
    peaks: dict[str, float] = {}
    for s in samples:
        for name, u in s.usage.items():
            if name != OTHERS:
                peaks[name] = max(peaks.get(name, 0.0), u["rss"] / MB)
    summary: Summary = {
        "generated": meta["generated"],
        "mode": meta["mode"],
        "commit": meta["commit"],
        "machine": meta["machine"],
        "note": (
            "The servers, the Python service and the load driver share this machine's "
            f"{meta['cpus']} cores; loopback only. Figures are side-by-side ratios from one "
            "run, with scenarios interleaved step by step."
        ),
        "settings": Plan.from_json(result["plan"]).settings(),
        "others_cpu_pct": others_cpu(result, samples),
        "headline": headline(rows, samples),
        "peak_rss_mb": {k: round(v, 1) for k, v in sorted(peaks.items())},
        "scenarios": rows,
        "plots": list(PLOTS),
    }
    phases = phases_summary(phases_raw or {})
    if phases:
        summary["phases"] = phases
        profile = phases.get("profile")
        if profile:
            summary["headline"]["sustained_rss_mb"] = sustained_rss(profile)
        if phases.get("traces"):
            summary["plots"].append(HOP_PLOT)
    summary["limits"] = limits(rows, summary["headline"], meta["cpus"])
    if same_cpu:
        summary["same_cpu"] = same_cpu_summary(scenarios, *same_cpu, whole_run=same_cpu_only)
    return summary


def same_cpu_summary(
    scenarios: Sequence[Scenario],
    result: Report,
    samples: Sequence[Sample],
    servers: Sequence[int],
    driver: Sequence[int],
    *,
    whole_run: bool = False,
) -> SameCpu:
    """Capacity per core with every server on the same CPUs, and its ratio to the baseline's."""
    rows = rows_of(result, scenarios, samples)
    cores = max(1, len(servers))
    shipped = {g.name for g in GATEWAYS if g.shipped}
    baseline = next((r for r in rows if r["role"] == Role.BASELINE and r["capacity_rps"]), None)
    base_rps = _capacity(baseline) / cores if baseline else None
    per_core: list[PerCore] = []
    for r in rows:
        if r["role"] != Role.GATEWAY or r["capacity_rps"] is None:
            continue
        rps = _capacity(r) / cores
        per_core.append(
            {
                "scenario": r["name"],
                "via": r["via"],
                "shipped": r["via"] in shipped,
                "capacity_rps": _capacity(r),
                "per_core_rps": round(rps, 1),
                "bounded": r["capacity_bounded"],
                "ratio": round(rps / base_rps, 2) if base_rps else None,
            }
        )
    return {
        "servers": list(servers),
        "driver": list(driver),
        "whole_run": whole_run,
        "baseline": baseline["name"] if baseline else None,
        "baseline_rps": _capacity(baseline) if baseline else None,
        "baseline_bounded": bool(baseline and baseline["capacity_bounded"]),
        "per_core": per_core,
        "others_cpu_pct": others_cpu(result, samples),
        "scenarios": rows,
    }


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _errors(r: ScenarioReport) -> int:
    warmup = r.get("warmup")
    return sum(st["errors"] for st in r["steps"]) + (warmup["errors"] if warmup else 0)


def phases_summary(extra: PhasesRaw) -> PhasesSummary:
    """The phases after the scenarios, boiled down for summary.json."""
    out: PhasesSummary = {}
    profile = extra.get("profile")
    if profile:
        samples = [Sample.from_json(s) for s in profile["samples"]]
        (r,) = profile["result"]["scenarios"]
        step = r["steps"][0] if r["steps"] else None
        out["profile"] = {
            "scenario": profile["scenario"],
            "gateway": profile["gateway"],
            "capacity_rps": profile["capacity_rps"],
            "share": profile["share"],
            "offered_rps": step["offered_rps"] if step else None,
            "achieved_rps": round(step["achieved_rps"], 1) if step else None,
            "pass": bool(step and step["pass"]),
            "errors": _errors(r),
            "latency": latency(step["latency"]) if step else None,
            "step_s": round(step["ended"] - step["started"], 1) if step else None,
            "processes": window(samples, step["started"], step["ended"]) if step else {},
            "profile_s": profile["profile_s"],
            "top": profile["top"],
            "error": profile["error"],
        }
    traces = extra.get("traces")
    if traces:
        out["traces"] = {
            name.removesuffix("-traced"): row for name, row in traces["gateways"].items()
        }
    overhead = extra.get("overhead")
    if overhead:
        samples = [Sample.from_json(s) for s in overhead["samples"]]
        configs: dict[str, OverheadRow] = {}
        for r in overhead["result"]["scenarios"]:
            name = spec_name(r)
            cfg = overhead["configs"][name]
            steps = r["steps"]
            procs = [window(samples, st["started"], st["ended"]) for st in steps]

            def cpu(proc: str, procs: list[dict[str, ProcUse]] = procs) -> float | None:
                return _median([p[proc]["cpu_pct"] for p in procs if proc in p])

            configs[name] = {
                "gateway": cfg["gateway"],
                "python": cfg["python"],
                "steps": len(steps),
                "passed": sum(st["pass"] for st in steps),
                "errors": _errors(r),
                "achieved_rps": _median([st["achieved_rps"] for st in steps]),
                "p50_us": _median([st["latency"]["p50_us"] for st in steps]),
                "p99_us": _median([st["latency"]["p99_us"] for st in steps]),
                "gateway_cpu_pct": cpu(cfg["gateway"]),
                "python_cpu_pct": cpu(cfg["python"]),
                "others_cpu_pct": cpu(OTHERS),
            }
        out["overhead"] = {
            "rate": overhead["rate"],
            "share": overhead["share"],
            "of": overhead["of"],
            "capacity_rps": overhead["capacity_rps"],
            "configs": configs,
        }
    return out


def sustained_rss(profile: ProfileSummary) -> SustainedRss:
    """The gateway's peak RSS during the profile step."""
    gw = profile["processes"].get(profile["gateway"])
    rss = gw["rss_mb"] if gw else None
    return {
        "value": rss,
        "gateway": profile["gateway"],
        "scenario": profile["scenario"],
        "offered_rps": profile["offered_rps"],
        "pass": profile["pass"],
        "target": GATEWAY_RSS_TARGET_MB,
        "met": rss is not None and rss <= GATEWAY_RSS_TARGET_MB,
    }


def limits(rows: Sequence[ScenarioRow], head: Headline, cpus: int) -> Limits | None:
    """CPU by process at the best gateway scenario's capacity step: what runs out."""
    ratio = head.get("capacity_ratio")
    if not ratio:
        return None
    best = next(r for r in rows if r["name"] == ratio["gateway"])
    cpu = best["processes_at_capacity"] or {}
    shares = {k: v["cpu_pct"] for k, v in cpu.items()}
    return {
        "scenario": best["name"],
        "capacity_rps": best["capacity_rps"],
        "cpu_pct": shares,
        "total_cpu_pct": round(sum(shares.values()), 1),
        "machine_pct": 100 * cpus,
    }


# --- Locust runs (run.py --locust) ---


class LocustRow(TypedDict):
    """One scenario's Locust run as run.py records it (raw/samples.json in locust mode)."""

    scenario: str
    user: str
    users: int
    stats: dict[str, str]  # the path's row of Locust's <scenario>_stats.csv
    timing_mean_ms: NotRequired[dict[str, float]]  # each Server-Timing part, mean
    samples: list[dict[str, object]]  # Sample.to_json()
    started: float
    ended: float


class LocustScenario(TypedDict):
    name: str
    locust_user: str
    users: int
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p99_ms: float
    processes: dict[str, ProcUse]
    server_timing_mean_ms: dict[str, float]
    reports: list[str]


class LocustSummary(TypedDict):
    generated: str
    mode: str
    commit: str
    machine: dict[str, object]
    scenarios: list[LocustScenario]


def locust_summary(rows: Sequence[LocustRow], meta: Meta) -> LocustSummary:
    scenarios: list[LocustScenario] = []
    for r in rows:
        st = r["stats"]
        samples = [Sample.from_json(s) for s in r["samples"]]
        scenarios.append(
            {
                "name": r["scenario"],
                "locust_user": r["user"],
                "users": r["users"],
                "requests": int(st["Request Count"]),
                "failures": int(st["Failure Count"]),
                "rps": round(float(st["Requests/s"]), 1),
                "p50_ms": float(st["50%"]),
                "p99_ms": float(st["99%"]),
                "processes": window(samples, r["started"], r["ended"]),
                "server_timing_mean_ms": r.get("timing_mean_ms", {}),
                "reports": [f"locust/{r['scenario']}.html", f"locust/{r['scenario']}_stats.csv"],
            }
        )
    return {
        "generated": meta["generated"],
        "mode": "locust",
        "commit": meta["commit"],
        "machine": meta["machine"],
        "scenarios": scenarios,
    }


# --- scaling: 1 and 2 workers, both hops, CPU per request per tier, the sizing model ---

TIERS = ("gateway", "python", "nats-server")
# The machines the sizing model is stated for.
MODEL_CORES = (16, 64)
# Assumptions of the model, not measured here (two cores cannot show them): how many
# cores one gateway process and one nats-server are given before another is added
# (both are multi-threaded Go, so one can use several), and NATS's smallest cluster
# for availability (a 3-node cluster keeps a quorum with one node down).
CORES_PER_GATEWAY = 8
CORES_PER_NATS_SERVER = 8
NATS_CLUSTER_MIN = 3
# A Python worker is one event loop and one model thread: about one core. At or above
# this share of a core at its capacity step a worker is the limit.
WORKER_BOUND_PCT = 90.0


class ScalingConfig(TypedDict):
    """One stack of the scaling section: its hop, its workers, its processes' tiers."""

    name: str
    hop: str
    workers: int
    processes: dict[str, str]  # name in the samples -> tier (TIERS)


class ScalingPass(TypedDict):
    """raw/scaling.json: one per CPU mode; the driver's report and samples are files beside."""

    mode: str  # same: servers on `servers`, the driver on `driver`; all: anywhere
    servers: list[int] | None
    driver: list[int] | None
    configs: list[ScalingConfig]
    affinity: dict[str, list[int]]


class ScalingRow(TypedDict):
    mode: str
    config: str
    hop: str
    workers: int
    capacity_rps: float | None
    bounded: bool
    p99_ms: float | None  # at the capacity step
    errors: int
    cpu_pct: dict[str, float]  # per tier at the capacity step, % of one core
    worker_cpu_pct: list[float]  # each Python worker at the capacity step
    driver_cpu_pct: float | None
    others_cpu_pct: float | None
    us_per_request: dict[str, float]  # CPU µs per request served, per tier
    total_us: float | None  # the servers' CPU µs per request, all tiers


class ScalingMode(TypedDict):
    mode: str
    servers: list[int] | None
    driver: list[int] | None
    rows: list[ScalingRow]


class Bend(TypedDict):
    """Where one hop's curve bends, from the measured rows."""

    hop: str
    gain_all: float | None  # capacity with 2 workers over 1, all cores
    gain_same: float | None  # the same with every server on the servers' CPUs
    limit: str  # the tier that costs most per request: gateway, python, nats-server
    limit_us: float
    total_us: float
    workers_bound: bool  # a worker at >= WORKER_BOUND_PCT of a core at 1 worker's capacity
    machine_busy_pct: float | None  # all CPU at 2 workers' capacity, all cores, % of machine


class ModelRow(TypedDict):
    """The sizing model for one hop on a machine of `cores` cores."""

    hop: str
    cores: int
    basis: str  # the row the per-request costs come from: mode/config
    us_per_request: dict[str, float]
    capacity_rps: float  # cores * 1e6 / the servers' µs per request
    python_cores: float
    workers: int
    workers_per_core: float
    gateway_cores: float
    gateways: int
    nats_cores: float
    nats_servers: int


class ScalingSummary(TypedDict):
    modes: list[ScalingMode]
    bends: list[Bend]
    model: list[ModelRow]
    assumptions: dict[str, float]


def scaling_row(
    mode: str, config: ScalingConfig, raw: ScenarioReport, samples: Sequence[Sample]
) -> ScalingRow:
    """One stack's capacity and, at its capacity step, each tier's CPU and CPU per request."""
    step = next(
        (s for s in raw["steps"] if s["pass"] and s["offered_rps"] == raw["capacity_rps"]), None
    )
    warmup = raw.get("warmup")
    errors = sum(s["errors"] for s in raw["steps"]) + (warmup["errors"] if warmup else 0)
    row: ScalingRow = {
        "mode": mode,
        "config": config["name"],
        "hop": config["hop"],
        "workers": config["workers"],
        "capacity_rps": raw["capacity_rps"] or None,
        "bounded": raw["capacity_bounded"],
        "p99_ms": None,
        "errors": errors,
        "cpu_pct": {},
        "worker_cpu_pct": [],
        "driver_cpu_pct": None,
        "others_cpu_pct": None,
        "us_per_request": {},
        "total_us": None,
    }
    if step is None or step["achieved_rps"] <= 0:
        return row
    use = window(samples, step["started"], step["ended"])
    cpu = {t: 0.0 for t in TIERS if t in config["processes"].values()}
    for name, t in sorted(config["processes"].items()):
        pct = use.get(name, {"cpu_pct": 0.0})["cpu_pct"]
        cpu[t] = cpu.get(t, 0.0) + pct
        if t == "python":
            row["worker_cpu_pct"].append(pct)
    # % of one core over requests per second: CPU seconds per request, here in µs.
    per = {t: round(pct / 100 * 1e6 / step["achieved_rps"], 1) for t, pct in cpu.items()}
    row["p99_ms"] = round(step["latency"]["p99_us"] / 1000, 2)
    row["cpu_pct"] = {t: round(v, 1) for t, v in cpu.items()}
    row["driver_cpu_pct"] = use.get("loadgen", {"cpu_pct": 0.0})["cpu_pct"]
    row["others_cpu_pct"] = use.get(OTHERS, {"cpu_pct": 0.0})["cpu_pct"]
    row["us_per_request"] = per
    row["total_us"] = round(sum(per.values()), 1)
    return row


def _gain(rows: Sequence[ScalingRow], mode: str, hop: str) -> float | None:
    caps = {r["workers"]: r["capacity_rps"] for r in rows if r["mode"] == mode and r["hop"] == hop}
    one, two = caps.get(1), caps.get(2)
    return round(two / one, 2) if one and two else None


def _row(rows: Sequence[ScalingRow], mode: str, hop: str, workers: int) -> ScalingRow | None:
    return next(
        (
            r
            for r in rows
            if (r["mode"], r["hop"], r["workers"]) == (mode, hop, workers) and r["total_us"]
        ),
        None,
    )


def _basis(rows: Sequence[ScalingRow], hop: str) -> ScalingRow | None:
    """The row a hop's costs are read from: 1 worker with the servers on their own CPUs
    (the driver elsewhere: the cleanest), else 1 worker on all cores."""
    return _row(rows, "same", hop, 1) or _row(rows, "all", hop, 1)


def bend(rows: Sequence[ScalingRow], hop: str, cpus: int) -> Bend | None:
    """Where a hop's curve bends: the tier that costs most per request, whether one worker
    was already spent at its capacity, and how busy the machine was at 2 workers'."""
    basis = _basis(rows, hop)
    if basis is None:
        return None
    per = basis["us_per_request"]
    limit = max(per, key=lambda t: per[t])
    two = _row(rows, "all", hop, 2)
    busy = None
    if two is not None:
        spent = sum(two["cpu_pct"].values()) + (two["driver_cpu_pct"] or 0.0)
        busy = round((spent + (two["others_cpu_pct"] or 0.0)) / max(1, cpus), 1)
    return {
        "hop": hop,
        "gain_all": _gain(rows, "all", hop),
        "gain_same": _gain(rows, "same", hop),
        "limit": limit,
        "limit_us": per[limit],
        "total_us": basis["total_us"] or 0.0,
        "workers_bound": any(w >= WORKER_BOUND_PCT for w in basis["worker_cpu_pct"]),
        "machine_busy_pct": busy,
    }


def sizing_model(rows: Sequence[ScalingRow], hop: str, cores: int) -> ModelRow | None:
    """What a machine of `cores` cores needs for one hop, from measured CPU per request.

    The servers' CPU per request (gateway + Python + nats-server) spread over every core
    gives the rate; each tier gets the cores its share of that CPU takes. A Python worker
    is about one core (one event loop, one model thread), so workers = Python's cores.
    The costs come from the 1-worker row with the servers on their own CPUs (the driver
    elsewhere: the cleanest), or the all-cores one if that is missing.
    """
    basis = _basis(rows, hop)
    if basis is None or not basis["total_us"]:
        return None
    per = basis["us_per_request"]
    total = basis["total_us"]
    share = {t: per.get(t, 0.0) / total for t in TIERS}
    python_cores = cores * share["python"]
    workers = max(1, round(python_cores))
    gateway_cores = cores * share["gateway"]
    nats_cores = cores * share["nats-server"]
    nats_servers = 0
    if hop == "nats":
        nats_servers = max(NATS_CLUSTER_MIN, math.ceil(nats_cores / CORES_PER_NATS_SERVER))
    return {
        "hop": hop,
        "cores": cores,
        "basis": f"{basis['mode']}/{basis['config']}",
        "us_per_request": per,
        "capacity_rps": round(cores * 1e6 / total, -2),
        "python_cores": round(python_cores, 1),
        "workers": workers,
        "workers_per_core": round(workers / cores, 2),
        "gateway_cores": round(gateway_cores, 1),
        "gateways": max(1, math.ceil(gateway_cores / CORES_PER_GATEWAY)),
        "nats_cores": round(nats_cores, 1),
        "nats_servers": nats_servers,
    }


def scaling_summary(
    passes: Sequence[tuple[ScalingPass, Report, Sequence[Sample]]], cpus: int
) -> ScalingSummary:
    """The scaling section: per mode and stack, capacity and CPU per request per tier; where
    each hop's curve bends; the sizing model for MODEL_CORES."""
    modes: list[ScalingMode] = []
    every: list[ScalingRow] = []
    for p, report, samples in passes:
        configs = {c["name"]: c for c in p["configs"]}
        rows = [
            scaling_row(p["mode"], configs[spec_name(r)], r, samples) for r in report["scenarios"]
        ]
        modes.append(
            {"mode": p["mode"], "servers": p["servers"], "driver": p["driver"], "rows": rows}
        )
        every += rows
    hops = sorted({r["hop"] for r in every})
    bends = [b for h in hops if (b := bend(every, h, cpus))]
    model = [m for h in hops for c in MODEL_CORES if (m := sizing_model(every, h, c))]
    return {
        "modes": modes,
        "bends": bends,
        "model": model,
        "assumptions": {
            "cores_per_gateway": CORES_PER_GATEWAY,
            "cores_per_nats_server": CORES_PER_NATS_SERVER,
            "nats_cluster_min": NATS_CLUSTER_MIN,
            "worker_bound_pct": WORKER_BOUND_PCT,
        },
    }
