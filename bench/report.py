"""Turn the driver's result and the process samples into summary.json, summary.md and plots."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib as mpl

mpl.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt
from matplotlib.ticker import FixedLocator, FuncFormatter

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from scenarios import Scenario

# The targets. Figures are compared with them, never asserted.
CAPACITY_RATIO_TARGET = 4.0
ADDED_P50_TARGET_US = 100.0
ADDED_P99_TARGET_US = 300.0
GATEWAY_RSS_TARGET_MB = 40.0

PLOTS = ("latency_vs_rate.png", "latency_cdf.png", "cpu_vs_rate.png")
HOP_PLOT = "hop_breakdown.png"
# The samples' name for every process on the machine that is not part of the run.
OTHERS = "others"
# Mean CPU of other processes during the sweep above which the summary warns.
NOISY_OTHERS_PCT = 10.0
MB = 1e6


def _window(samples: Sequence[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Mean CPU (% of one core) and peak RSS (MB) of each process between start and end."""
    inside = [s for s in samples if start <= s["t"] <= end]
    names = sorted({k for s in inside for k in s if k != "t"})
    out: dict[str, Any] = {}
    for name in names:
        rows = [s[name] for s in inside if name in s]
        out[name] = {
            "cpu_pct": round(sum(r["cpu"] for r in rows) / len(rows), 1),
            "rss_mb": round(max(r["rss"] for r in rows) / MB, 1),
        }
    return out


def _latency(stats: dict[str, Any]) -> dict[str, Any]:
    keys = ("count", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us")
    return {k: stats[k] for k in keys}


def _scenario(
    raw: dict[str, Any], scenario: Scenario, samples: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    spec, closed, warmup = raw["spec"], raw.get("closed"), raw.get("warmup")
    error_kinds: dict[str, int] = {}
    parts = [p for p in (warmup, closed, *raw["steps"]) if p]
    for part in parts:
        for kind, n in (part.get("error_kinds") or {}).items():
            error_kinds[kind] = error_kinds.get(kind, 0) + n
    steps = [
        {
            "offered_rps": step["offered_rps"],
            "achieved_rps": round(step["achieved_rps"], 1),
            "sent": step["sent"],
            "expected": step["expected"],
            "errors": step["errors"],
            "pass": step["pass"],
            "started": step["started"],
            "latency": _latency(step["latency"]),
            "service": _latency(step["service"]),
            "processes": _window(samples, step["started"], step["ended"]),
        }
        for step in raw["steps"]
    ]
    at_capacity = next(
        (s for s in steps if s["pass"] and s["offered_rps"] == raw["capacity_rps"]), None
    )
    one = None
    if closed:
        first, last = closed["rounds"][0]["started"], closed["rounds"][-1]["ended"]
        one = {**_latency(closed["latency"]), "processes": _window(samples, first, last)}
    return {
        "name": scenario.name,
        "kind": scenario.kind,
        "via": scenario.via,
        "role": scenario.role,
        "hop_of": scenario.hop_of,
        "hop_note": scenario.hop_note,
        "same_call": scenario.same_call,
        "target": spec["target"],
        "sweep": spec["sweep"],
        "closed": spec["closed"],
        "capacity_rps": raw["capacity_rps"] if spec["sweep"] else None,
        "capacity_bounded": raw["capacity_bounded"],
        "one_in_flight": one,
        "processes_at_capacity": at_capacity["processes"] if at_capacity else None,
        "errors": sum(p["errors"] for p in parts),
        "error_kinds": error_kinds,
        "steps": steps,
    }


def _headline(rows: Sequence[dict[str, Any]], samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by_name = {r["name"]: r for r in rows}
    head: dict[str, Any] = {}
    baseline = next((r for r in rows if r["role"] == "baseline" and r["capacity_rps"]), None)
    gateways = [r for r in rows if r["role"] == "gateway" and r["capacity_rps"] is not None]
    json_gateways = [r for r in gateways if r["kind"] == baseline["kind"]] if baseline else []
    for key, among in (("capacity_ratio", gateways), ("capacity_ratio_same_client", json_gateways)):
        if not (baseline and among):
            continue
        best = max(among, key=lambda r: r["capacity_rps"])
        ratio = best["capacity_rps"] / baseline["capacity_rps"]
        head[key] = {
            "value": round(ratio, 2),
            "gateway": best["name"],
            "gateway_rps": best["capacity_rps"],
            "baseline": baseline["name"],
            "baseline_rps": baseline["capacity_rps"],
            "target": CAPACITY_RATIO_TARGET,
            "met": ratio >= CAPACITY_RATIO_TARGET,
            # A sweep that never failed gives a lower bound, which bends the ratio.
            "exact": best["capacity_bounded"] and baseline["capacity_bounded"],
        }
    added = []
    for r in rows:
        base = by_name.get(r["hop_of"] or "")
        if not (base and r["one_in_flight"] and base["one_in_flight"]):
            continue
        p50 = r["one_in_flight"]["p50_us"] - base["one_in_flight"]["p50_us"]
        p99 = r["one_in_flight"]["p99_us"] - base["one_in_flight"]["p99_us"]
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
    overall = [s[n]["rss"] / MB for s in samples for n in s if n.startswith("gateway")]
    # Past capacity the driver holds up to max_in_flight connections open, and a Go
    # process keeps the memory it grew for them for minutes. The target is about
    # serving, so each gateway is judged until its first overload; the peak over
    # the whole run is shown beside it.
    serving: list[float] = []
    by_gateway: dict[str, float] = {}
    for via in sorted({r["via"] for r in rows if r["role"] == "gateway"}):
        # Overload: a failed step above the scenario's capacity, not a retried stall.
        failed = [
            st["started"]
            for r in rows
            if r["via"] == via
            for st in r["steps"]
            if not st["pass"] and st["offered_rps"] > (r["capacity_rps"] or 0)
        ]
        cutoff = min(failed, default=float("inf"))
        mine = [s[via]["rss"] / MB for s in samples if via in s and s["t"] < cutoff]
        if mine:
            by_gateway[via] = round(max(mine), 1)
        serving += mine
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


def _others(result: dict[str, Any], samples: Sequence[dict[str, Any]]) -> float:
    """Mean CPU (% of one core) of processes outside the run, over all sweep steps."""
    steps = [st for r in result["scenarios"] for st in r["steps"]]
    inside = [
        s[OTHERS]["cpu"]
        for s in samples
        if OTHERS in s and any(st["started"] <= s["t"] <= st["ended"] for st in steps)
    ]
    return round(sum(inside) / len(inside), 1) if inside else 0.0


def _machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "platform": platform.platform()}


def _git_commit(root: Path) -> str:
    try:
        out = subprocess.run(  # noqa: S603 (fixed arguments)
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def write_report(
    folder: Path,
    result: dict[str, Any],
    samples: Sequence[dict[str, Any]],
    scenarios: Sequence[Scenario],
    extra: dict[str, Any] | None = None,
    *,
    quick: bool,
    made: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Write the run's summary and plots; made is (generated, commit) of a run re-rendered."""
    by_name = {s.name: s for s in scenarios}
    rows = [_scenario(r, by_name[r["spec"]["name"]], samples) for r in result["scenarios"]]
    settings = {k: v for k, v in result["plan"].items() if k not in ("pixels", "scenarios")}
    peaks: dict[str, float] = {}
    for s in samples:
        for name, v in s.items():
            if name not in ("t", OTHERS):
                peaks[name] = max(peaks.get(name, 0.0), v["rss"] / MB)
    summary: dict[str, Any] = {
        "generated": made[0] if made else datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "commit": made[1] if made else _git_commit(folder),
        "machine": _machine(),
        "note": (
            "The servers, the Python service and the load driver share this machine's "
            f"{os.cpu_count()} cores; loopback only. Figures are side-by-side ratios from one "
            "run, with scenarios interleaved step by step."
        ),
        "settings": settings,
        "others_cpu_pct": _others(result, samples),
        "headline": _headline(rows, samples),
        "peak_rss_mb": {k: round(v, 1) for k, v in sorted(peaks.items())},
        "scenarios": rows,
        "plots": list(PLOTS),
    }
    phases = _phases(extra or {})
    if phases:
        summary["phases"] = phases
        if phases.get("profile"):
            summary["headline"]["sustained_rss_mb"] = _sustained_rss(phases["profile"])
        if phases.get("traces"):
            summary["plots"].append(HOP_PLOT)
    summary["limits"] = _limits(rows, summary["headline"])
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (folder / "summary.md").write_text(_markdown(summary))
    _plot_latency_vs_rate(folder / PLOTS[0], rows, settings["bound_ms"])
    _plot_cdfs(folder / PLOTS[1], result)
    _plot_cpu(folder / PLOTS[2], rows)
    if phases.get("traces"):
        _plot_hops(folder / HOP_PLOT, phases["traces"])
    return summary


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _phases(extra: dict[str, Any]) -> dict[str, Any]:
    """The phases after the scenarios, boiled down for summary.json."""
    out: dict[str, Any] = {}
    profile = extra.get("profile")
    if profile:
        (r,) = profile["result"]["scenarios"]
        steps = r["steps"]
        step = steps[0] if steps else None
        errors = sum(st["errors"] for st in steps) + (r.get("warmup") or {}).get("errors", 0)
        out["profile"] = {
            "scenario": profile["scenario"],
            "gateway": profile["gateway"],
            "capacity_rps": profile["capacity_rps"],
            "share": profile["share"],
            "offered_rps": step["offered_rps"] if step else None,
            "achieved_rps": round(step["achieved_rps"], 1) if step else None,
            "pass": bool(step and step["pass"]),
            "errors": errors,
            "latency": _latency(step["latency"]) if step else None,
            "step_s": round(step["ended"] - step["started"], 1) if step else None,
            "processes": _window(profile["samples"], step["started"], step["ended"])
            if step
            else {},
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
        configs: dict[str, Any] = {}
        for r in overhead["result"]["scenarios"]:
            name = r["spec"]["name"]
            cfg = overhead["configs"][name]
            steps = r["steps"]
            procs = [_window(overhead["samples"], st["started"], st["ended"]) for st in steps]

            def cpu(proc: str, procs: list[dict[str, Any]] = procs) -> float | None:
                return _median([p[proc]["cpu_pct"] for p in procs if proc in p])

            configs[name] = {
                **cfg,
                "steps": len(steps),
                "passed": sum(st["pass"] for st in steps),
                "errors": sum(st["errors"] for st in steps)
                + (r.get("warmup") or {}).get("errors", 0),
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


def _sustained_rss(profile: dict[str, Any]) -> dict[str, Any]:
    gw = profile["processes"].get(profile["gateway"], {})
    rss = gw.get("rss_mb")
    return {
        "value": rss,
        "gateway": profile["gateway"],
        "scenario": profile["scenario"],
        "offered_rps": profile["offered_rps"],
        "pass": profile["pass"],
        "target": GATEWAY_RSS_TARGET_MB,
        "met": rss is not None and rss <= GATEWAY_RSS_TARGET_MB,
    }


def _limits(rows: Sequence[dict[str, Any]], head: dict[str, Any]) -> dict[str, Any] | None:
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
        "machine_pct": 100 * (os.cpu_count() or 1),
    }


def _us(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v / 1000:.2f} ms" if abs(v) >= 1000 else f"{v:.0f} µs"


def _verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def _markdown(summary: dict[str, Any]) -> str:
    st, head = summary["settings"], summary["headline"]
    lines = [
        f"# Tandem benchmark ({summary['mode']}), {summary['generated']}",
        "",
        f"Commit `{summary['commit']}` on {summary['machine']['cpu_model'] or 'unknown CPU'}, "
        f"{summary['machine']['cpus']} cores. {summary['note']}",
        "",
    ]
    if summary["others_cpu_pct"] > NOISY_OTHERS_PCT:
        lines += [
            f"**Not a quiet machine: other processes used {summary['others_cpu_pct']:.0f}% of "
            "a core on average during the sweeps** (`others` in the CPU figures); the "
            "capacities are lower and noisier than this machine alone would give.",
            "",
        ]
    if summary["mode"] == "quick":
        lines += ["**Quick mode: a smoke test of the pipeline; the figures mean nothing.**", ""]
    lines += ["## Headline", ""]
    ratio = head.get("capacity_ratio")
    if ratio:
        lines.append(
            f"- Capacity at p99 ≤ {st['bound_ms']:g} ms, best gateway scenario / baseline: "
            f"{ratio['gateway']} {ratio['gateway_rps']:,.0f} / {ratio['baseline']} "
            f"{ratio['baseline_rps']:,.0f} req/s = **{ratio['value']}×** (target ≥ "
            f"{ratio['target']:g}×: {_verdict(ratio['met'])})"
            + ("" if ratio["exact"] else "; a sweep never failed, so a capacity is a lower bound")
        )
    same = head.get("capacity_ratio_same_client")
    if same and ratio and same["gateway"] != ratio["gateway"]:
        lines.append(
            f"  - with the baseline's own client call (REST JSON): {same['gateway']} "
            f"{same['gateway_rps']:,.0f} req/s = **{same['value']}×** "
            f"({_verdict(same['met'])})"
        )
    for a in head.get("added_latency", []):
        kind = "target pair" if a["same_call"] else "for reference"
        lines.append(
            f"- Added latency, {a['scenario']} − {a['vs']} ({kind}: {a['note']}), one in flight: "
            f"p50 **{_us(a['p50_us'])}** (target ≤ {a['target_p50_us']:g} µs: "
            f"{_verdict(a['p50_met'])}), p99 **{_us(a['p99_us'])}** (target ≤ "
            f"{a['target_p99_us']:g} µs: {_verdict(a['p99_met'])})"
        )
    rss = head.get("gateway_peak_rss_mb")
    if rss:
        each = ", ".join(f"{k} {v} MB" for k, v in rss.get("by_gateway", {}).items())
        lines.append(
            f"- Gateway peak RSS, sampled every 0.25 s, from start until each gateway's first "
            f"overload (its first failed step above its capacity): **{rss['value']} MB** "
            f"(target ≤ {rss['target']:g} MB: {_verdict(rss['met'])}; {each}); "
            f"{rss['overall']} MB over the whole run, overload included"
        )
    sus = head.get("sustained_rss_mb")
    if sus and sus["value"] is not None:
        lines.append(
            f"- Gateway RSS under the heaviest sustained load within capacity: {sus['gateway']} "
            f"serving {sus['scenario']} at {sus['offered_rps']:,.0f} req/s for the profile "
            f"step ({'passed' if sus['pass'] else '**failed** the p99 bound'}): peak "
            f"**{sus['value']} MB** (target ≤ {sus['target']:g} MB: {_verdict(sus['met'])})"
        )
    lim = summary.get("limits")
    if lim:
        busy = ", ".join(
            f"{k} {v:.0f}%"
            for k, v in sorted(lim["cpu_pct"].items(), key=lambda kv: -kv[1])
            if v >= 2
        )
        lines.append(
            f"- What limits {lim['scenario']} at its capacity ({lim['capacity_rps']:,.0f} "
            f"req/s): CPU {busy} — {lim['total_cpu_pct']:.0f}% of the machine's "
            f"{lim['machine_pct']}%"
        )
    lines += [
        "",
        "## Scenarios",
        "",
        f"Capacity is the highest offered rate (open loop, constant arrival rate) whose p99, "
        f"measured from each request's intended send time, stayed within {st['bound_ms']:g} ms "
        "with no errors; `≥` marks a sweep that never failed. CPU is % of one core, mean "
        "over the capacity step.",
        "",
        "| scenario | path | capacity (req/s) | 1 in flight p50 | p99 | CPU at capacity "
        "| errors (run) |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in summary["scenarios"]:
        cap = r["capacity_rps"]
        cap_s = "–" if cap is None else f"{'' if r['capacity_bounded'] else '≥ '}{cap:,.0f}"
        one = r["one_in_flight"] or {}
        cpu = r["processes_at_capacity"] or {}
        # The processes that worked; the others idle at ~0% while this scenario runs.
        cpu_s = (
            ", ".join(f"{k} {v['cpu_pct']:.0f}%" for k, v in cpu.items() if v["cpu_pct"] >= 2)
            or "–"
        )
        lines.append(
            f"| {r['name']} | {r['kind']} → {r['via']} | {cap_s} | {_us(one.get('p50_us'))} | "
            f"{_us(one.get('p99_us'))} | {cpu_s} | {r['errors']} |"
        )
    lines += [
        "",
        "Peak RSS over the run: "
        + ", ".join(f"{k} {v:.1f} MB" for k, v in summary["peak_rss_mb"].items())
        + ".",
        "",
        "## Steps",
        "",
    ]
    for r in summary["scenarios"]:
        if not r["steps"]:
            continue
        lines += [
            f"**{r['name']}**",
            "",
            "| offered | achieved | p50 | p90 | p99 | max | service p99 | errors | |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for s in sorted(r["steps"], key=lambda s: s["offered_rps"]):
            lat = s["latency"]
            lines.append(
                f"| {s['offered_rps']:,.0f} | {s['achieved_rps']:,.0f} | {_us(lat['p50_us'])} | "
                f"{_us(lat['p90_us'])} | {_us(lat['p99_us'])} | {_us(lat['max_us'])} | "
                f"{_us(s['service']['p99_us'])} | {s['errors']} | "
                f"{'pass' if s['pass'] else 'fail'} |"
            )
        lines.append("")
    lines += _phases_markdown(summary.get("phases", {}))
    lines += [
        "## Plots",
        "",
        *(f"![{p}]({p})" for p in summary["plots"]),
        "",
        "## How this was measured",
        "",
        f"`bench/run.py` started every process on loopback, then `bench/bin/loadgen` (vegeta) "
        f"warmed each scenario for {st['warmup_s']:g} s, sent {st['closed_rounds']} round(s) of "
        f"{st['closed_requests']} requests one at a time per scenario, then swept constant "
        f"arrival rates from {st['start_rps']:g}/s (×{st['factor']:g} while passing, then "
        f"{st['refine']} bisections), {st['step_s']:g} s per step, batch {st['batch']}. "
        'Scenarios took turns at every round and step. "service p99" is measured from the '
        "actual send, as a closed-loop tool would: the gap to p99 is the queueing that "
        "coordinated omission would hide. Raw data: `raw/` (not committed).",
        "",
    ]
    return "\n".join(lines)


def _phases_markdown(phases: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    traces = phases.get("traces")
    if traces:
        names = list(traces)
        parts = list(next(iter(traces.values()))["median_us"])
        lines += [
            "## Where a request's time goes (traces)",
            "",
            "Requests one at a time (REST JSON) through gateways exporting every trace "
            "(100% sampling) to a local OTLP receiver, with a traced Python service behind "
            "them; per request `hop_shares` (tandem_stack.otlp) splits the spans, and each part "
            "is the median over the requests. With one request in flight the queue is near "
            "empty; under load it grows. 'transport' is the gateway's client span less "
            "the Python server span: the wire both ways and both RPC libraries, Python's "
            "(grpc.aio or nats-py, and its event loop) included up to where its span starts. "
            "Tracing is on only in this phase and the next.",
            "",
            "| part | " + " | ".join(names) + " |",
            "| --- |" + " ---: |" * len(names),
        ]
        for p in parts:
            lines.append(
                f"| {p} | " + " | ".join(_us(traces[n]["median_us"].get(p)) for n in names) + " |"
            )
        lines.append(
            "| gateway server span, median | "
            + " | ".join(_us(traces[n]["gateway_span_p50_us"]) for n in names)
            + " |"
        )
        lines.append(
            "| client-measured p50 | "
            + " | ".join(_us(traces[n]["client_p50_us"]) for n in names)
            + " |"
        )
        lines.append(
            "| traces / requests | "
            + " | ".join(f"{traces[n]['traces']} / {traces[n]['requests']}" for n in names)
            + " |"
        )
        lines += ["", f"![{HOP_PLOT}]({HOP_PLOT})", ""]
    overhead = phases.get("overhead")
    if overhead:
        lines += [
            "## What tracing costs",
            "",
            f"REST JSON through gateway-grpc (no coalescing) at one fixed rate, "
            f"{overhead['rate']:,} req/s ({overhead['share']:.0%} of {overhead['of']}'s "
            f"capacity), the three configurations interleaved step by step; medians over "
            "the steps. Traced configurations export to a local OTLP receiver in the runner: "
            "its CPU is in `others` (with anything else on the machine), not in the "
            "gateway's or Python's.",
            "",
            "| tracing | gateway | achieved req/s | p50 | p99 | gateway CPU | Python CPU "
            "| others CPU | steps passed | errors |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, c in overhead["configs"].items():
            lines.append(
                f"| {name} | {c['gateway']} → {c['python']} | {c['achieved_rps'] or 0:,.0f} | "
                f"{_us(c['p50_us'])} | {_us(c['p99_us'])} | {_pct(c['gateway_cpu_pct'])} | "
                f"{_pct(c['python_cpu_pct'])} | {_pct(c['others_cpu_pct'])} | "
                f"{c['passed']}/{c['steps']} | {c['errors']} |"
            )
        lines.append("")
    profile = phases.get("profile")
    if profile:
        lat = profile["latency"] or {}
        lines += [
            "## Gateway CPU profile",
            "",
            f"{profile['gateway']} while serving {profile['scenario']} at "
            f"{profile['offered_rps'] or 0:,.0f} req/s ({profile['share']:.0%} of its capacity "
            f"{profile['capacity_rps']:,.0f}), a {profile['profile_s']} s CPU profile from "
            f"/debug/pprof/profile: step {'passed' if profile['pass'] else '**failed**'}, "
            f"achieved {profile['achieved_rps'] or 0:,.0f} req/s, p50 {_us(lat.get('p50_us'))}, "
            f"p99 {_us(lat.get('p99_us'))}; CPU "
            + ", ".join(
                f"{k} {v['cpu_pct']:.0f}%"
                for k, v in profile["processes"].items()
                if v["cpu_pct"] >= 2
            )
            + ".",
            "",
        ]
        for key, title in (("flat", "by own time (flat)"), ("cum", "by cumulative time")):
            if profile["top"].get(key):
                lines += [f"Top 15 {title}:", "", "```", *profile["top"][key], "```", ""]
        if profile.get("error"):
            lines += [f"Profile error: {profile['error']}", ""]
    return lines


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}%"


def _plot_hops(path: Path, traces: dict[str, Any]) -> None:
    names = list(traces)
    parts = list(next(iter(traces.values()))["median_us"])
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.8 * len(names)))
    left = [0.0] * len(names)
    for i, p in enumerate(parts):
        widths = [traces[n]["median_us"].get(p, 0.0) for n in names]
        ax.barh(names, widths, left=left, color=f"C{i}", label=p)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set(
        xlabel="µs (median per part, one request in flight)", title="Where a request's time goes"
    )
    ax.invert_yaxis()
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _plot_latency_vs_rate(path: Path, rows: Sequence[dict[str, Any]], bound_ms: float) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, r in enumerate(rows):
        steps = sorted(r["steps"], key=lambda s: s["offered_rps"])
        if not steps:
            continue
        color = f"C{i}"
        x = [s["offered_rps"] for s in steps]
        ax.plot(
            x,
            [s["latency"]["p99_us"] / 1000 for s in steps],
            "o-",
            color=color,
            label=f"{r['name']} p99",
        )
        ax.plot(
            x,
            [s["latency"]["p50_us"] / 1000 for s in steps],
            "x--",
            color=color,
            label=f"{r['name']} p50",
        )
    ax.axhline(bound_ms, color="grey", linestyle=":", label=f"p99 bound {bound_ms:g} ms")
    ax.set(
        xlabel="offered rate (req/s)",
        ylabel="latency from intended send (ms)",
        yscale="log",
        title="Latency against offered rate (open loop)",
    )
    _plain_log_labels(ax)
    ax.grid(visible=True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plain_log_labels(ax: Axes) -> None:
    # 0.5, 2, 20 read better than 5×10⁻¹, 2×10⁰, 2×10¹.
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(
        FuncFormatter(lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25" else "")
    )


def _cdf_axes(ax: Axes, title: str) -> None:
    # x is 1/(1-p): the tail gets as much room as the body, as in HdrHistogram plots.
    ticks = [50.0, 90.0, 99.0, 99.9, 99.99]
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([1 / (1 - p / 100) for p in ticks]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * (1 - 1 / v):g}%"))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.set(xlabel="percentile", ylabel="latency (ms)", yscale="log", title=title)
    _plain_log_labels(ax)
    ax.grid(visible=True, which="both", alpha=0.3)


def _plot_series(ax: Axes, cdf: Sequence[Sequence[float]], label: str, color: str) -> None:
    points = [(1 / (1 - p / 100), us / 1000) for p, us in cdf if p < 100]
    if points:
        ax.plot(*zip(*points, strict=True), "-", color=color, label=label)


def _plot_cdfs(path: Path, result: dict[str, Any]) -> None:
    fig, (open_ax, closed_ax) = plt.subplots(1, 2, figsize=(12, 5))
    for i, r in enumerate(result["scenarios"]):
        name, color = r["spec"]["name"], f"C{i}"
        passing = [s for s in r["steps"] if s["pass"]]
        step = max(passing, key=lambda s: s["offered_rps"]) if passing else None
        if step is None and r["steps"]:
            step = min(r["steps"], key=lambda s: s["offered_rps"])
        if step is not None:
            _plot_series(
                open_ax, step["latency"]["cdf"], f"{name} @ {step['offered_rps']:,.0f}/s", color
            )
        if r.get("closed"):
            _plot_series(closed_ax, r["closed"]["latency"]["cdf"], name, color)
    _cdf_axes(open_ax, "Open loop, at each scenario's capacity")
    _cdf_axes(closed_ax, "One request in flight")
    for ax in (open_ax, closed_ax):
        if ax.lines:
            ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_cpu(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    swept = [r for r in rows if r["steps"]]
    # Three panels a row: nine scenarios in one row would be too wide to read.
    ncols = max(1, min(3, len(swept)))
    nrows = max(1, -(-len(swept) // ncols))
    fig, grid = plt.subplots(
        nrows, ncols, figsize=(5 * ncols, 4 * nrows), squeeze=False, sharey=True
    )
    axes = [list(grid.flat)]
    for ax in axes[0][len(swept) :]:
        ax.set_visible(False)
    # One colour per process across all panels.
    every = sorted({n for r in swept for s in r["steps"] for n in s["processes"]})
    colour = {n: f"C{i}" for i, n in enumerate(every)}
    for ax, r in zip(axes[0], swept, strict=False):
        steps = sorted(r["steps"], key=lambda s: s["offered_rps"])
        # Only the processes that worked in this scenario; the idle ones are flat at zero.
        names = sorted({n for s in steps for n, v in s["processes"].items() if v["cpu_pct"] >= 2})
        for n in names:
            xs = [s["offered_rps"] for s in steps if n in s["processes"]]
            ys = [s["processes"][n]["cpu_pct"] for s in steps if n in s["processes"]]
            ax.plot(xs, ys, "o-", color=colour[n], label=n)
        ax.set(title=r["name"], xlabel="offered rate (req/s)", ylabel="CPU (% of one core)")
        ax.grid(visible=True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_locust_report(folder: Path, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """summary.json and summary.md for a Locust run; Locust's own reports sit in locust/."""
    scenarios: list[dict[str, Any]] = []
    for r in rows:
        st = r["stats"]
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
                "processes": _window(r["samples"], r["started"], r["ended"]),
                "reports": [f"locust/{r['scenario']}.html", f"locust/{r['scenario']}_stats.csv"],
            }
        )
    summary: dict[str, Any] = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "locust",
        "commit": _git_commit(folder),
        "machine": _machine(),
        "scenarios": scenarios,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [
        f"# Tandem under Locust, {summary['generated']}",
        "",
        f"Commit `{summary['commit']}`, {summary['machine']['cpus']} cores shared by the "
        "servers, the Python service and Locust (one process per core). Closed loop: each "
        "user sends its next request when the last one is answered, so these are throughput "
        "and latency at a fixed concurrency, and Locust's own CPU caps them; capacity at a "
        "latency bound comes from `run.py` without `--locust`.",
        "",
        "| scenario | Locust user | users | req/s | failures | p50 | p99 | CPU (% of a core) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in scenarios:
        cpu = ", ".join(
            f"{k} {v['cpu_pct']:.0f}%" for k, v in s["processes"].items() if v["cpu_pct"] >= 2
        )
        lines.append(
            f"| {s['name']} | {s['locust_user']} | {s['users']} | {s['rps']:,.0f} | "
            f"{s['failures']} | {s['p50_ms']:g} ms | {s['p99_ms']:g} ms | {cpu} |"
        )
    lines += ["", "Locust's reports: " + ", ".join(f"[{p}]({p})" for p in scenarios[0]["reports"])]
    lines += ["and likewise for each scenario." if len(scenarios) > 1 else "", ""]
    (folder / "summary.md").write_text("\n".join(lines))
    return summary
