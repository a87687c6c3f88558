"""Benchmark Tandem against the all-Python baseline, side by side, in one run.

Starts the real processes on free ports (through tandem_stack, as `make run` does), hands a plan to
the open-loop driver (bench/bin/loadgen), samples every process's CPU and RSS while
it runs, and writes summary.json, summary.md and plots to a results folder.

    python bench/run.py            # full run: bench/results/<UTC>/, and results/latest
    python bench/run.py --quick    # seconds per scenario: bench/scratch/quick/<UTC>/,
                                   # fails unless every scenario ran without errors
    python bench/run.py --locust   # each scenario's Locust user in turn, closed loop,
                                   # with Locust's CSV and HTML reports
    python bench/run.py --soak 10m --soak-rate 2000   # fixed load for a while: errors,
                                   # p99 and RSS over time (bench/scratch/soak/<UTC>/)

By default (--cpu both) the sweep runs twice: first with every server confined to
the same CPUs and the driver on the rest (capacity per core, side by side), then
on all cores as before. After the scenarios, three short phases: a CPU profile of
the best gateway near its capacity; traced requests through gateway-grpc and
gateway-nats (a local OTLP receiver) for the per-hop breakdown; and the same fixed
load with tracing off, at 100% and at 1% sampling, for what tracing costs.

This module only orchestrates: services.py starts the processes, cpuset.py
confines them, driver.py runs loadgen, sampling.py samples, phases.py and soak.py
are the other parts of a run, report.py writes the files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, cast

import tandem_stack.stack
from tandem_stack import otlp
from tandem_stack.stack import GATEWAY, MODELS, model_subset

import cpuset
import minilm
import scaling
import soak
from driver import LOADGEN, drive, plan_for
from locust_run import locust
from phases import overhead_phase, profile_phase, trace_phase
from progress import Progress, plan_bound_s, say
from report import write_locust_report, write_report, write_scaling_report
from scenarios import FULL, FULL_PHASES, MODEL, QUICK, QUICK_PHASES, SCENARIOS, Role, Scenario
from schema import Report, Sample, dump_samples, load_report, load_samples, spec_name
from services import folder, running, traced

if TYPE_CHECKING:
    from summary import PhasesRaw, ScalingPass, Summary

BENCH = Path(__file__).resolve().parent
CPU_MODES = ("both", "same", "all")
DIGITS_MODELS = ("digits", "digits-torch")


class CpuRecord(TypedDict):
    """raw/cpu.json: the CPU budget of the same-CPU pass, and where each server ran."""

    mode: str
    servers: list[int]
    driver: list[int]
    affinity: dict[str, list[int]]


def check_quick(summary: Summary, folder: Path) -> list[str]:
    """What make bench-quick asserts: everything ran, nothing failed. Never a time."""
    problems = []
    same = summary.get("same_cpu")
    passes = [("", summary["scenarios"])] + ([("same CPU: ", same["scenarios"])] if same else [])
    for label, rows in passes:
        for s in rows:
            if s["errors"]:
                problems.append(f"{label}{s['name']}: {s['errors']} errors: {s['error_kinds']}")
            if s["sweep"] and not s["steps"]:
                problems.append(f"{label}{s['name']}: no sweep step ran")
            if s["closed"] and not s["one_in_flight"]:
                problems.append(f"{label}{s['name']}: no one-in-flight round ran")
    phases = summary.get("phases", {})
    if phases:
        for name, row in (phases.get("traces") or {}).items():
            if not row["traces"]:
                problems.append(f"traces: no complete trace through {name}")
        overhead = phases.get("overhead")
        for name, c in (overhead["configs"] if overhead else {}).items():
            if c["errors"] or not c["steps"]:
                problems.append(f"tracing overhead, {name}: {c['errors']} errors")
        profile = phases.get("profile")
        if not profile or profile["errors"] or not profile["top"]:
            problems.append(f"profile: {(profile and profile['error']) or 'no profile'}")
    files = ("summary.json", "summary.md", *summary["plots"])
    problems += [f"{name} was not written" for name in files if not (folder / name).is_file()]
    return problems


def check_affinity(record: CpuRecord) -> list[str]:
    """Every server on exactly the servers' CPUs."""
    want = record["servers"]
    return [
        f"same CPU: {name} ran on CPUs {cpus}, not {want}"
        for name, cpus in record["affinity"].items()
        if cpus != want
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per scenario")
    parser.add_argument("--only", nargs="+", metavar="SCENARIO", help="run only these scenarios")
    parser.add_argument("--results", type=Path, help="results root (default by mode)")
    parser.add_argument(
        "--rerender",
        type=Path,
        metavar="FOLDER",
        help="write a run's summary and plots again from its raw/ (after a change to report.py)",
    )
    parser.add_argument(
        "--no-phases", action="store_true", help="skip the profile, trace and overhead phases"
    )
    parser.add_argument(
        "--cpu",
        choices=CPU_MODES,
        default="both",
        help="both (default): a same-CPU sweep, then the all-cores run; same: only the "
        "same-CPU sweep (servers on one half of the CPUs, driver on the rest); all: all cores",
    )
    parser.add_argument(
        "--no-scaling",
        action="store_true",
        help="skip the scaling section (1 and 2 workers, both hops, same CPU and all cores)",
    )
    parser.add_argument("--scaling-only", action="store_true", help="run only the scaling section")
    parser.add_argument(
        "--no-minilm",
        action="store_true",
        help="skip the minilm section (sentence embeddings; not in --quick unless --minilm-only)",
    )
    parser.add_argument(
        "--minilm-only", action="store_true", help="run only the minilm section (minilm.md)"
    )
    parser.add_argument("--locust", action="store_true", help="Locust users instead of loadgen")
    parser.add_argument("--locust-users", type=int, default=32, help="concurrent Locust users")
    parser.add_argument("--locust-time", default="30s", help="per scenario, e.g. 30s, 2m")
    parser.add_argument(
        "--soak", metavar="DURATION", help="soak mode: fixed load for this long (e.g. 10m)"
    )
    parser.add_argument("--soak-rate", type=float, default=2000.0, help="soak: req/s, in all")
    parser.add_argument(
        "--soak-window", type=float, default=10.0, help="soak: seconds per p99 window"
    )
    parser.add_argument("--baseline-model", type=Path, default=MODELS / MODEL / "1" / "model.onnx")
    args = parser.parse_args(argv)

    if args.rerender:
        return rerender(args.rerender)
    if args.scaling_only and args.no_scaling:
        parser.error("--scaling-only and --no-scaling exclude each other")
    if args.minilm_only and args.no_minilm:
        parser.error("--minilm-only and --no-minilm exclude each other")

    names = args.only or (soak.DEFAULT_SCENARIOS if args.soak else None)
    scenarios = [s for s in SCENARIOS if not names or s.name in names]
    if names and len(scenarios) != len(names):
        parser.error(f"unknown scenario in {names}; known: {[s.name for s in SCENARIOS]}")
    for binary in [LOADGEN] + ([GATEWAY] if any(s.role == Role.GATEWAY for s in scenarios) else []):
        if not binary.is_file():
            parser.error(f"{binary} is missing: run `make setup` (or `make build`)")
    default_root = BENCH / "scratch" / ("soak" if args.soak else "quick")
    if not (args.quick or args.soak):
        default_root = BENCH / "results"
    # Absolute: the driver runs from the checkout's root, not from here.
    root = (args.results or default_root).resolve()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = folder(root / stamp)
    raw = folder(out / "raw")
    # The digits sections' stacks serve the digits models alone, as before MiniLM joined
    # models/: its load would add to their start and to Python's RSS. minilm.py passes
    # its own repositories.
    tandem_stack.stack.DEFAULT_MODELS = model_subset(DIGITS_MODELS, raw / "models")
    budget = cpuset.Budget.split() if args.cpu in ("both", "same") else cpuset.Budget()

    if args.soak:
        code = soak.run(
            scenarios,
            out,
            duration_s=soak.duration(args.soak),
            rate=args.soak_rate,
            window_s=args.soak_window,
            baseline_model=args.baseline_model,
        )
        _finish(root, stamp)
        return code

    if args.locust:
        with running(scenarios, folder(raw / "logs"), args.baseline_model, budget) as services:
            rows = locust(scenarios, services, out, args.locust_users, args.locust_time)
        (raw / "samples.json").write_text(json.dumps(rows))
        write_locust_report(out, rows)
        return _finish(root, stamp)

    return sweep_run(args, scenarios, root, stamp, budget)


def same_cpu_pass(
    args: argparse.Namespace, scenarios: Sequence[Scenario], raw: Path, budget: cpuset.Budget
) -> tuple[Report, list[Sample], CpuRecord]:
    """The sweep with every server on budget.servers and the driver on budget.driver."""
    settings = QUICK if args.quick else FULL
    only = args.cpu == "same"
    say(f"same CPU budget: {budget.label}")
    with running(scenarios, folder(raw / "logs-samecpu"), args.baseline_model, budget) as sv:
        affinity = sv.pin()
        plan = plan_for(settings, scenarios, sv, closed=only)
        later = 0.0 if only else plan_bound_s(plan_for(settings, scenarios, sv))
        progress = Progress("same CPU", plan, later)
        # The runner's own work (its sampler thread, made in drive) with the driver's.
        with cpuset.confined(budget.driver):
            result, samples = drive(
                plan,
                raw,
                "loadgen" if only else "samecpu",
                sv.processes,
                cpus=budget.driver,
                on_line=progress,
            )
    record: CpuRecord = {
        "mode": args.cpu,
        "servers": list(budget.servers or ()),
        "driver": list(budget.driver or ()),
        "affinity": affinity,
    }
    (raw / "cpu.json").write_text(json.dumps(record, indent=1))
    (raw / ("samples.json" if only else "samecpu-samples.json")).write_text(dump_samples(samples))
    return result, samples, record


def all_cores_pass(
    args: argparse.Namespace, scenarios: Sequence[Scenario], raw: Path
) -> tuple[Report, list[Sample], PhasesRaw]:
    """The sweep and the one-in-flight rounds on all cores, then the phases."""
    settings = QUICK if args.quick else FULL
    phases = QUICK_PHASES if args.quick else FULL_PHASES
    extra: PhasesRaw = {}
    logs = folder(raw / "logs")
    with running(scenarios, logs, args.baseline_model) as services:
        plan = plan_for(settings, scenarios, services)
        result, samples = drive(
            plan, raw, "loadgen", services.processes, on_line=Progress("all cores", plan)
        )
        (raw / "samples.json").write_text(dump_samples(samples))
        # The phases need every gateway configuration: not with --only.
        if not args.only and not args.no_phases:
            say("phases: CPU profile, traces, tracing overhead")
            extra["profile"] = profile_phase(settings, phases, result, services, raw)
            with otlp.Receiver() as receiver, traced(services, logs, receiver) as tr:
                extra["traces"] = trace_phase(settings, phases, tr, receiver, raw)
                extra["overhead"] = overhead_phase(
                    settings, phases, result, services, traced_services=tr, raw=raw
                )
    return result, samples, extra


def sweep_run(
    args: argparse.Namespace,
    scenarios: Sequence[Scenario],
    root: Path,
    stamp: str,
    budget: cpuset.Budget,
) -> int:
    out = root / stamp
    raw = out / "raw"
    same_cpu = None
    problems: list[str] = []
    extra: PhasesRaw = {}
    scaled = None
    # The scaling section starts stacks of its own: after the passes, with theirs stopped.
    run_scaling = not args.no_scaling and not args.only
    if args.minilm_only:
        alone = minilm.run(raw, quick=args.quick)
        (out / "minilm.md").write_text(minilm.render(alone))
        print((out / "minilm.md").read_text())
        return _quick_verdict(minilm.problems(alone)) if args.quick else 0
    if args.scaling_only:
        scaled = _scaling(raw, quick=args.quick)
        problems += _check_scaling(scaled)
        write_scaling_report(out, scaled, quick=args.quick)
        _finish(root, stamp)
        return _quick_verdict(problems) if args.quick else 0
    if budget.servers is not None:
        result, samples, record = same_cpu_pass(args, scenarios, raw, budget)
        problems += check_affinity(record)
        same_cpu = (result, samples, record["servers"], record["driver"])
    if args.cpu != "same":
        result, samples, extra = all_cores_pass(args, scenarios, raw)
    if run_scaling:
        scaled = _scaling(raw, quick=args.quick)
        problems += _check_scaling(scaled)
    # Minutes of its own (two CPU modes, five configurations): in the full run only;
    # --quick leaves it out, `--quick --minilm-only` proves its pipeline.
    section: minilm.Section | None = None
    if not args.no_minilm and not args.only and not args.quick:
        section = minilm.run(raw, quick=False)
    (raw / "phases.json").write_text(json.dumps(extra))
    summary = write_report(
        out,
        result,
        samples,
        scenarios,
        extra,
        quick=args.quick,
        same_cpu=same_cpu,
        same_cpu_only=args.cpu == "same",
        scaling=scaled,
    )
    if section is not None:
        (out / "minilm.md").write_text(minilm.render(section))
        with (out / "summary.md").open("a") as f:
            f.write("\n" + minilm.render(section))
    _finish(root, stamp)
    return _quick_verdict(problems + check_quick(summary, out)) if args.quick else 0


def _quick_verdict(problems: Sequence[str]) -> int:
    if problems:
        print("bench-quick failed:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


def _scaling(raw: Path, *, quick: bool) -> list[tuple[ScalingPass, Report, list[Sample]]]:
    scaling.run(raw, quick=quick)
    return scaling.load(raw) or []


def _check_scaling(passes: Sequence[tuple[ScalingPass, Report, Sequence[Sample]]]) -> list[str]:
    """What make bench-quick asserts of the scaling section: every stack swept, no errors,
    the same-CPU servers on their CPUs. Never a time."""
    problems = scaling.check_affinity([p for p, _, _ in passes])
    for p, report, _ in passes:
        for r in report["scenarios"]:
            errors = sum(s["errors"] for s in r["steps"])
            if not r["steps"]:
                problems.append(f"scaling, {p['mode']}: {spec_name(r)}: no step was measured")
            elif errors:
                problems.append(f"scaling, {p['mode']}: {spec_name(r)}: {errors} errors")
    return problems


def rerender(results: Path) -> int:
    """summary.json, summary.md and the plots again, from the run's raw/."""
    raw = results / "raw"
    result = load_report((raw / "loadgen.json").read_text())
    samples = load_samples((raw / "samples.json").read_text())
    extra = cast("PhasesRaw", json.loads((raw / "phases.json").read_text()))
    same_cpu: tuple[Report, list[Sample], list[int], list[int]] | None = None
    only = False
    if (raw / "cpu.json").is_file():
        record = cast("CpuRecord", json.loads((raw / "cpu.json").read_text()))
        only = record["mode"] == "same"
        if only:
            same = result, samples
        else:
            same = (
                load_report((raw / "samecpu.json").read_text()),
                load_samples((raw / "samecpu-samples.json").read_text()),
            )
        same_cpu = (*same, record["servers"], record["driver"])
    old = json.loads((results / "summary.json").read_text())
    made = (old["generated"], old["commit"])
    write_report(
        results,
        result,
        samples,
        SCENARIOS,
        extra,
        quick=old["mode"] == "quick",
        made=made,
        same_cpu=same_cpu,
        same_cpu_only=only,
        scaling=scaling.load(raw),
    )
    print((results / "summary.md").read_text())
    return 0


def _finish(root: Path, stamp: str) -> int:
    """Point latest at the new folder and show its summary."""
    out = root / stamp
    latest = root / "latest"
    latest.unlink(missing_ok=True)
    latest.symlink_to(stamp)
    print((out / "summary.md").read_text())
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
