"""`run.py --soak 10m --soak-rate 2000`: fixed moderate load for a while, against the shipped stack.

One Python service behind the shipped gateway configurations (gRPC and NATS, edge
coalescing on), one loadgen per scenario at the same time, each at its share of
the rate for the whole duration, in windows of --soak-window seconds (the
driver's steps: p50, p99 and errors per window). Every process is sampled
throughout (CPU, RSS). Writes summary.json, summary.md (RSS at start and end per
process, errors, p99 per window at a glance) and soak.png into the results
folder; exits 1 if any request failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypedDict

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
from tandem_stack.stack import ROOT

from driver import LOADGEN, spec, wait, with_scenarios
from locust_run import seconds
from progress import say
from report import meta
from sampling import Sampler
from scenarios import FULL, Scenario
from schema import Plan, Report, Sample, dump_samples, load_report
from services import folder, running
from summary import MB, OTHERS

# The shipped stack: the gateway with the shipped routing (coalescing on), over each hop.
DEFAULT_SCENARIOS = ("rest-gateway-grpc-coalesce", "rest-gateway-nats-coalesce")
PLOT = "soak.png"


def duration(text: str) -> float:
    """10m, 90s, 1h30m, or plain seconds."""
    return float(text) if text.replace(".", "", 1).isdigit() else seconds(text)


class WindowRow(TypedDict):
    t_s: float  # from the start of the soak to the end of the window
    offered_rps: float
    achieved_rps: float
    p50_us: float
    p99_us: float
    errors: int


class ProcessRss(TypedDict):
    start_mb: float
    end_mb: float
    peak_mb: float
    mean_cpu_pct: float


class SoakSummary(TypedDict):
    generated: str
    mode: str
    commit: str
    machine: dict[str, object]
    duration_s: float
    rate: float
    window_s: float
    errors: int
    scenarios: dict[str, list[WindowRow]]
    error_kinds: dict[str, dict[str, int]]
    processes: dict[str, ProcessRss]


def soak_plan(rate: float, duration_s: float, window_s: float) -> Plan:
    """Fixed rate for duration_s in windows of window_s, no pause, no retries, no closed loop."""
    return replace(
        FULL,
        warmup_s=2.0,
        step_s=window_s,
        pause_s=0.0,
        start_rps=max(1.0, rate),
        max_rps=max(1.0, rate),
        max_steps=max(1, round(duration_s / window_s)),
        retries=0,
        closed_rounds=0,
        # A stall must show as a slow window, not as thousands of open connections.
        timeout_s=5.0,
    )


def summarize_soak(
    results: dict[str, Report], samples: Sequence[Sample], started: float
) -> tuple[dict[str, list[WindowRow]], dict[str, dict[str, int]], dict[str, ProcessRss]]:
    """Per-window figures per scenario, error kinds, and RSS at start and end per process."""
    windows: dict[str, list[WindowRow]] = {}
    kinds: dict[str, dict[str, int]] = {}
    for name, report in results.items():
        (r,) = report["scenarios"]
        windows[name] = [
            {
                "t_s": round(st["ended"] - started, 1),
                "offered_rps": st["offered_rps"],
                "achieved_rps": round(st["achieved_rps"], 1),
                "p50_us": st["latency"]["p50_us"],
                "p99_us": st["latency"]["p99_us"],
                "errors": st["errors"],
            }
            for st in r["steps"]
        ]
        tally: dict[str, int] = {}
        for st in r["steps"]:
            for k, n in (st.get("error_kinds") or {}).items():
                tally[k] = tally.get(k, 0) + n
        kinds[name] = tally
    processes: dict[str, ProcessRss] = {}
    every = sorted({p for s in samples for p in s.usage if p != OTHERS})
    for proc in every:
        rows = [s.usage[proc] for s in samples if proc in s.usage]
        processes[proc] = {
            "start_mb": round(rows[0]["rss"] / MB, 1),
            "end_mb": round(rows[-1]["rss"] / MB, 1),
            "peak_mb": round(max(r["rss"] for r in rows) / MB, 1),
            "mean_cpu_pct": round(sum(r["cpu"] for r in rows) / len(rows), 1),
        }
    return windows, kinds, processes


def run(
    scenarios: Sequence[Scenario],
    out: Path,
    *,
    duration_s: float,
    rate: float,
    window_s: float,
    baseline_model: Path,
) -> int:
    raw = out / "raw"
    share = rate / max(1, len(scenarios))
    plan = soak_plan(share, duration_s, window_s)
    say(
        f"soak: {', '.join(s.name for s in scenarios)} at {share:,.0f} req/s each for "
        f"{duration_s:.0f} s, windows of {window_s:g} s"
    )
    with running(scenarios, folder(raw / "logs"), baseline_model) as services:
        procs: dict[str, subprocess.Popen[bytes]] = {}
        for s in scenarios:
            one = spec(s.name, s.kind, services.endpoint(s), fixed_rps=share)
            path = raw / f"soak-{s.name}-plan.json"
            path.write_text(with_scenarios(plan, [one]).dumps())
            argv = [str(LOADGEN), "-plan", str(path), "-out", str(raw / f"soak-{s.name}.json")]
            with (raw / f"soak-{s.name}.log").open("wb") as log:
                procs[s.name] = subprocess.Popen(  # noqa: S603 (our own binary and paths)
                    argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ)
                )
        pids = {**services.pids(), **{f"loadgen {n}": p.pid for n, p in procs.items()}}
        sampler = Sampler(pids, interval=1.0)
        started = time.time()
        sampler.start()
        try:
            while any(p.poll() is None for p in procs.values()):
                time.sleep(min(window_s, 10.0))
                say(f"soak: {time.time() - started:.0f} s of ~{duration_s + 2:.0f} s")
            codes = {n: wait(p, 60) for n, p in procs.items()}
        finally:
            sampler.stop()
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
    (raw / "samples.json").write_text(dump_samples(sampler.samples))
    bad = {n: c for n, c in codes.items() if c != 0}
    if bad:
        raise RuntimeError(f"loadgen failed: {bad}; see {raw}/soak-*.log")
    results = {s.name: load_report((raw / f"soak-{s.name}.json").read_text()) for s in scenarios}
    windows, kinds, processes = summarize_soak(results, sampler.samples, started)
    m = meta(out, "soak")
    summary: SoakSummary = {
        "generated": m["generated"],
        "mode": "soak",
        "commit": m["commit"],
        "machine": m["machine"],
        "duration_s": duration_s,
        "rate": rate,
        "window_s": window_s,
        "errors": sum(w["errors"] for rows in windows.values() for w in rows),
        "scenarios": windows,
        "error_kinds": kinds,
        "processes": processes,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    plot(out / PLOT, summary, sampler.samples, started)
    return 1 if summary["errors"] else 0


def markdown(summary: SoakSummary) -> str:
    lines = [
        f"# Tandem soak, {summary['generated']}",
        "",
        f"Commit `{summary['commit']}`, {summary['machine']['cpus']} cores. "
        f"{summary['rate']:,.0f} req/s in all, split evenly over "
        f"{len(summary['scenarios'])} scenario(s) running at the same time, for "
        f"{summary['duration_s']:.0f} s; p99 per {summary['window_s']:g} s window from "
        "each request's intended send time. "
        f"**Errors: {summary['errors']}.**",
        "",
        "| scenario | windows | p99 first | p99 median | p99 worst | p99 last | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rows in summary["scenarios"].items():
        p99 = [r["p99_us"] for r in rows]
        if not p99:
            continue
        mid = sorted(p99)[len(p99) // 2]
        lines.append(
            f"| {name} | {len(rows)} | {_ms(p99[0])} | {_ms(mid)} | {_ms(max(p99))} | "
            f"{_ms(p99[-1])} | {sum(r['errors'] for r in rows)} |"
        )
    lines += [
        "",
        "| process | RSS at start | RSS at end | peak | mean CPU (% of a core) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, p in summary["processes"].items():
        lines.append(
            f"| {name} | {p['start_mb']} MB | {p['end_mb']} MB | {p['peak_mb']} MB | "
            f"{p['mean_cpu_pct']:.0f}% |"
        )
    for name, tally in summary["error_kinds"].items():
        if tally:
            lines += ["", f"Errors of {name}: " + ", ".join(f"{k} ×{n}" for k, n in tally.items())]
    lines += ["", f"![{PLOT}]({PLOT})", ""]
    return "\n".join(lines)


def _ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def plot(path: Path, summary: SoakSummary, samples: Sequence[Sample], started: float) -> None:
    fig, (lat, mem) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for i, (name, rows) in enumerate(summary["scenarios"].items()):
        t = [r["t_s"] for r in rows]
        lat.plot(t, [r["p99_us"] / 1000 for r in rows], "o-", color=f"C{i}", label=f"{name} p99")
        lat.plot(t, [r["p50_us"] / 1000 for r in rows], "x--", color=f"C{i}", label=f"{name} p50")
    lat.set(ylabel="latency (ms)", title=f"Per {summary['window_s']:g} s window", ylim=(0, None))
    lat.grid(visible=True, alpha=0.3)
    lat.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    # Growth since the start, so that a 30 MB gateway and a 800 MB Python service
    # share one scale; where each started is in the legend.
    servers = [n for n in summary["processes"] if not n.startswith("loadgen")]
    for i, name in enumerate(servers):
        pts = [(s.t - started, s.usage[name]["rss"] / MB) for s in samples if name in s.usage]
        if pts:
            first = pts[0][1]
            xs, ys = zip(*[(t, mb - first) for t, mb in pts], strict=True)
            mem.plot(xs, ys, "-", color=f"C{i}", label=f"{name} ({first:.0f} MB at start)")
    mem.set(
        xlabel="seconds into the soak",
        ylabel="RSS − RSS at start (MB)",
        title="RSS growth per process",
    )
    mem.grid(visible=True, alpha=0.3)
    mem.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
