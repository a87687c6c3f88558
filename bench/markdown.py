"""summary.md from a summary (summary.py): text only, no files."""

from __future__ import annotations

from collections.abc import Sequence

from summary import (
    HOP_PLOT,
    TIERS,
    WORKER_BOUND_PCT,
    LocustSummary,
    PhasesSummary,
    SameCpu,
    ScalingMode,
    ScalingSummary,
    Summary,
)

# Mean CPU of other processes during the sweep above which the summary warns.
NOISY_OTHERS_PCT = 10.0


def _us(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v / 1000:.2f} ms" if abs(v) >= 1000 else f"{v:.0f} µs"


def _verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def _headline(summary: Summary) -> list[str]:
    st, head = summary["settings"], summary["headline"]
    lines: list[str] = []
    same_cpu = summary.get("same_cpu")
    if same_cpu:
        lines += _same_cpu_headline(same_cpu, st["bound_ms"])
    ratio = head.get("capacity_ratio")
    if ratio:
        where = ""
        if same_cpu:
            where = "same CPU budget, " if same_cpu["whole_run"] else "all cores shared, "
        lines.append(
            f"- Capacity at p99 ≤ {st['bound_ms']:g} ms, {where}best gateway scenario / "
            f"baseline: {ratio['gateway']} {ratio['gateway_rps']:,.0f} / {ratio['baseline']} "
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
    return lines


def render(summary: Summary) -> str:
    st = summary["settings"]
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
    lines += ["## Headline", "", *_headline(summary)]
    same_cpu = summary.get("same_cpu")
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
        one = r["one_in_flight"]
        cpu = r["processes_at_capacity"] or {}
        # The processes that worked; the others idle at ~0% while this scenario runs.
        cpu_s = (
            ", ".join(f"{k} {v['cpu_pct']:.0f}%" for k, v in cpu.items() if v["cpu_pct"] >= 2)
            or "–"
        )
        lines.append(
            f"| {r['name']} | {r['kind']} → {r['via']} | {cap_s} | {_us(one and one['p50_us'])} | "
            f"{_us(one and one['p99_us'])} | {cpu_s} | {r['errors']} |"
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
    if same_cpu:
        lines += _same_cpu_section(same_cpu, st["bound_ms"])
    scaling = summary.get("scaling")
    if scaling:
        lines += scaling_markdown(scaling, int(str(summary["machine"]["cpus"] or 1)))
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


def _cpus(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus)


def _same_cpu_headline(same: SameCpu, bound_ms: object) -> list[str]:
    """Capacity per core of each shipped configuration against the baseline, same CPUs."""
    base = same["baseline_rps"]
    cores = max(1, len(same["servers"]))
    if base is None:
        return [
            f"- Same CPU budget: the baseline has no capacity in that pass (p99 ≤ {bound_ms} ms)"
        ]
    lower = "" if same["baseline_bounded"] else "≥ "
    head = (
        f"- **Capacity per core** at p99 ≤ {bound_ms} ms, open loop, with every server on "
        f"CPU {_cpus(same['servers'])} and the driver on CPU {_cpus(same['driver'])}, side by "
        f"side in one pass: baseline {lower}{base / cores:,.0f} req/s per core"
    )
    parts = [
        f"{p['scenario']} {'' if p['bounded'] else '≥ '}{p['per_core_rps']:,.0f} "
        f"(**{p['ratio']}×**)"
        for p in same["per_core"]
        if p["shipped"]
    ]
    if not parts:
        return [head]
    return [head + "; shipped configurations: " + ", ".join(parts) + " (× the baseline's)"]


def _same_cpu_section(same: SameCpu, bound_ms: object) -> list[str]:
    lines = [
        "## Same CPU budget",
        "",
        f"Every server process (gateways, Python service, nats-server, baseline) confined to "
        f"CPU {_cpus(same['servers'])} (GOMAXPROCS {len(same['servers'])}), the driver to CPU "
        f"{_cpus(same['driver'])}; "
        + (
            "the whole run above (`--cpu same`). "
            if same["whole_run"]
            else "the same sweep as above, in a pass of its own, no one-in-flight rounds. "
        )
        + "Capacity "
        f"per core is the highest passing rate (p99 ≤ {bound_ms} ms, no errors) over the "
        f"servers' {len(same['servers'])} core(s); × baseline is the ratio to the baseline's, "
        f"measured in the same pass. Other processes: {same['others_cpu_pct']:.0f}% of a core "
        "on average during its steps.",
        "",
        "| scenario | gateway | shipped | capacity (req/s) | per core | × baseline |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    if same["baseline_rps"] is not None:
        cores = max(1, len(same["servers"]))
        lower = "" if same["baseline_bounded"] else "≥ "
        lines.append(
            f"| {same['baseline']} | – | – | {lower}{same['baseline_rps']:,.0f} | "
            f"{lower}{same['baseline_rps'] / cores:,.0f} | 1 |"
        )
    for p in same["per_core"]:
        lower = "" if p["bounded"] else "≥ "
        ratio = "–" if p["ratio"] is None else f"{p['ratio']}×"
        lines.append(
            f"| {p['scenario']} | {p['via']} | {'yes' if p['shipped'] else ''} | "
            f"{lower}{p['capacity_rps']:,.0f} | {lower}{p['per_core_rps']:,.0f} | {ratio} |"
        )
    lines.append("")
    return lines


def _phases_markdown(phases: PhasesSummary) -> list[str]:
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
        lat = profile["latency"]
        lines += [
            "## Gateway CPU profile",
            "",
            f"{profile['gateway']} while serving {profile['scenario']} at "
            f"{profile['offered_rps'] or 0:,.0f} req/s ({profile['share']:.0%} of its capacity "
            f"{profile['capacity_rps']:,.0f}), a {profile['profile_s']} s CPU profile from "
            f"/debug/pprof/profile: step {'passed' if profile['pass'] else '**failed**'}, "
            f"achieved {profile['achieved_rps'] or 0:,.0f} req/s, "
            f"p50 {_us(lat and lat['p50_us'])}, p99 {_us(lat and lat['p99_us'])}; CPU "
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


def render_locust(summary: LocustSummary) -> str:
    """summary.md for a Locust run."""
    scenarios = summary["scenarios"]
    lines = [
        f"# Tandem under Locust, {summary['generated']}",
        "",
        f"Commit `{summary['commit']}`, {summary['machine']['cpus']} cores shared by the "
        "servers, the Python service and Locust (one process per core). Closed loop: each "
        "user sends its next request when the last one is answered, so these are throughput "
        "and latency at a fixed concurrency, and Locust's own CPU caps them; capacity at a "
        "latency bound comes from `run.py` without `--locust`. Server-Timing: the mean of "
        "each part the gateway reported (edge, hop, python, queue, model), from Locust's own "
        "entries for them.",
        "",
        "| scenario | Locust user | users | req/s | failures | p50 | p99 | CPU (% of a core) "
        "| Server-Timing, mean |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for s in scenarios:
        cpu = ", ".join(
            f"{k} {v['cpu_pct']:.0f}%" for k, v in s["processes"].items() if v["cpu_pct"] >= 2
        )
        parts = s["server_timing_mean_ms"]
        timing = ", ".join(f"{k} {_us(v * 1000)}" for k, v in parts.items()) or "–"
        lines.append(
            f"| {s['name']} | {s['locust_user']} | {s['users']} | {s['rps']:,.0f} | "
            f"{s['failures']} | {s['p50_ms']:g} ms | {s['p99_ms']:g} ms | {cpu} | {timing} |"
        )
    if scenarios:
        reports = ", ".join(f"[{p}]({p})" for p in scenarios[0]["reports"])
        lines += ["", "Locust's reports: " + reports]
        lines += ["and likewise for each scenario." if len(scenarios) > 1 else "", ""]
    return "\n".join(lines)


_TIER_NAMES = {"gateway": "the gateway's CPU", "python": "Python", "nats-server": "nats-server"}


def _mode_label(mode: ScalingMode) -> str:
    if mode["servers"] is None:
        return "all cores (servers and driver anywhere)"
    return f"servers on CPU {_cpus(mode['servers'])}, driver on CPU {_cpus(mode['driver'] or [])}"


def scaling_markdown(scaling: ScalingSummary, cpus: int) -> list[str]:
    """The scaling section: capacity for 1 and 2 workers, CPU per request, the bend, the model.

    Every sentence is made from the measured figures in `scaling`."""
    lines = [
        "## Scaling: 1 and 2 Python workers",
        "",
        f"This machine has {cpus} cores, so the section can show only this much: with every "
        "server on the servers' CPUs and the driver on the rest, 1 and 2 workers get the same "
        "CPU budget (does a second worker on the same core cost or gain?); on all cores, 1 "
        "and 2 workers can each have a core, but the driver shares them. Each stack is the "
        "shipped one (edge coalescing), REST JSON into the gateway; capacity is the highest "
        "rate with p99 within the bound, open loop. CPU µs per request is each tier's CPU at "
        "the capacity step (psutil, /proc/<pid>/stat) over the requests it served.",
        "",
        "| CPUs | stack | workers | capacity (req/s) | p99 at capacity (ms) | CPU % gateway / "
        "Python (each worker) / nats-server | CPU µs per request: gateway / Python / "
        "nats-server = servers | driver CPU % | errors |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | ---: | ---: |",
    ]
    for mode in scaling["modes"]:
        for r in mode["rows"]:
            cap = "–" if r["capacity_rps"] is None else f"{r['capacity_rps']:,.0f}"
            if r["capacity_rps"] is not None and not r["bounded"]:
                cap = "≥ " + cap
            c, u = r["cpu_pct"], r["us_per_request"]
            workers = " + ".join(f"{w:.0f}" for w in r["worker_cpu_pct"])
            nats = f"{c['nats-server']:.0f}" if "nats-server" in c else "–"
            cpu = (
                f"{c.get('gateway', 0):.0f} / {c.get('python', 0):.0f} ({workers}) / {nats}"
                if c
                else "–"
            )
            us = (
                " / ".join(f"{u[t]:.0f}" if t in u else "–" for t in TIERS)
                + f" = **{r['total_us']:.0f}**"
                if r["total_us"]
                else "–"
            )
            p99 = "–" if r["p99_ms"] is None else f"{r['p99_ms']:.1f}"
            drv = "–" if r["driver_cpu_pct"] is None else f"{r['driver_cpu_pct']:.0f}"
            lines.append(
                f"| {_mode_label(mode)} | {r['hop']} | {r['workers']} | {cap} | {p99} | {cpu} "
                f"| {us} | {drv} | {r['errors']} |"
            )
    lines += ["", "### Where the curve bends", ""]
    for b in scaling["bends"]:
        gains = []
        if b["gain_same"] is not None:
            gains.append(f"×{b['gain_same']} on the servers' CPUs (same budget)")
        if b["gain_all"] is not None:
            gains.append(f"×{b['gain_all']} on all cores")
        text = f"- **{b['hop']}**: from 1 to 2 workers capacity goes " + (
            " and ".join(gains) if gains else "unmeasured"
        )
        text += (
            f". Per request, {_TIER_NAMES[b['limit']]} costs the most: {b['limit_us']:.0f} of "
            f"the servers' {b['total_us']:.0f} CPU µs, so that is where the curve bends first "
            "as cores are added"
        )
        if b["workers_bound"]:
            text += (
                f"; one worker was already at ≥ {WORKER_BOUND_PCT:.0f}% of a core at its "
                "capacity, so one worker is Python-bound"
            )
        if b["machine_busy_pct"] is not None:
            text += (
                ". At 2 workers' capacity on all cores the machine was "
                f"{b['machine_busy_pct']:.0f}% busy (servers, driver and others)"
            )
            if b["machine_busy_pct"] >= WORKER_BOUND_PCT:
                text += ": there the machine's cores, shared with the driver, are the limit"
        lines.append(text + ".")
    a = scaling["assumptions"]
    lines += [
        "",
        "### The model: bigger machines",
        "",
        "From the CPU µs per request measured above (the row named under *basis*): the "
        "servers' CPU per request spread over every core gives the rate, and each tier gets "
        "the cores its share of that CPU takes. A worker is one event loop and one model "
        "thread, about one core, so workers = Python's cores. Assumed, not measured on "
        f"{cpus} cores: one gateway process per {a['cores_per_gateway']:.0f} of its cores, one "
        f"nats-server per {a['cores_per_nats_server']:.0f}, and at least "
        f"{a['nats_cluster_min']:.0f} NATS servers (a cluster that keeps quorum with one "
        "down); that cost per request stays flat as cores are added (no lock or cache "
        "contention), and that the load driver is elsewhere.",
        "",
        "| hop | cores | basis | µs per request (gateway / Python / nats-server) | rate "
        "(req/s) | Python workers (per core) | gateway cores → processes | NATS cores → "
        "servers |",
        "| --- | ---: | --- | --- | ---: | --- | --- | --- |",
    ]
    for m in scaling["model"]:
        u = m["us_per_request"]
        per = " / ".join(f"{u[t]:.0f}" if t in u else "–" for t in TIERS)
        nats = f"{m['nats_cores']:.1f} → {m['nats_servers']}" if m["hop"] == "nats" else "–"
        lines.append(
            f"| {m['hop']} | {m['cores']} | {m['basis']} | {per} | {m['capacity_rps']:,.0f} | "
            f"{m['workers']} ({m['workers_per_core']:.2f}) | {m['gateway_cores']:.1f} → "
            f"{m['gateways']} | {nats} |"
        )
    lines.append("")
    for m in scaling["model"]:
        if m["cores"] != max(x["cores"] for x in scaling["model"] if x["hop"] == m["hop"]):
            continue
        nats = f", and {m['nats_servers']} NATS servers in a cluster" if m["hop"] == "nats" else ""
        lines.append(
            f"- {m['hop']}, {m['cores']} cores: {m['workers']} Python workers "
            f"({m['workers_per_core']:.2f} per core), {m['gateways']} gateway process(es) "
            f"with {m['gateway_cores']:.1f} cores between them{nats}: about "
            f"{m['capacity_rps']:,.0f} req/s, resting on {m['basis']}'s "
            f"{sum(m['us_per_request'].values()):.0f} CPU µs per request."
        )
    lines.append("")
    return lines
