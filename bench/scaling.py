"""The scaling section: capacity for 1 and 2 Python workers, both hops, and what each tier costs.

For every CPU mode (`same`: every server on the servers' CPUs, the driver on the
rest; `all`: anywhere) one shipped stack per hop and worker count (tandem_stack's
Stack: the gateway with edge coalescing, N workers, over NATS one nats-server)
runs side by side, and the driver sweeps REST JSON into each gateway in turn, as
the main sweep does. The sampler reads every process's CPU (psutil, from
/proc/<pid>/stat), so summary.scaling_summary can divide each tier's CPU at the
capacity step by the requests it served: CPU µs per request per tier, the figures
the sizing model rests on. Only orchestration here; the figures are summary.py's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tandem_stack.stack import ROUTING, Process, Stack

import cpuset
import scenarios
from driver import drive, with_scenarios
from progress import Progress, say
from schema import (
    Kind,
    Plan,
    Report,
    Sample,
    ScenarioSpec,
    dump_samples,
    load_report,
    load_samples,
)

if TYPE_CHECKING:
    from summary import ScalingConfig, ScalingPass

HOPS = ("grpc", "nats")
WORKERS = (1, 2)

# The main sweep's settings with shorter steps, so that the section adds ~3 minutes to
# `make bench` (2 CPU modes x 4 stacks x at most 9 steps of 2.3 s, and the warm-ups);
# quick mode is the main sweep's quick plan as it stands.
FULL = replace(
    scenarios.FULL, step_s=2.0, pause_s=0.3, warmup_s=1.5, start_rps=1000.0, refine=1, max_steps=9
)
QUICK = scenarios.QUICK


def config_name(hop: str, workers: int) -> str:
    return f"{hop}-w{workers}"


def tier(process: str) -> str:
    """The tier of a tandem_stack process name."""
    if process.startswith("inference-py"):
        return "python"
    if process.startswith("nats-server"):
        return "nats-server"
    return "gateway"


@contextmanager
def stacks(workdir: Path, budget: cpuset.Budget) -> Iterator[dict[str, Stack]]:
    """Every hop x worker count as its own shipped stack, started on the servers' CPUs."""
    out: dict[str, Stack] = {}
    with ExitStack() as stack, cpuset.confined(budget.servers):
        for hop in HOPS:
            for n in WORKERS:
                name = config_name(hop, n)
                s = Stack(
                    transport=hop,
                    workers=n,
                    routing=ROUTING,
                    workdir=workdir / name,
                    env=cpuset.go_env(budget.servers),
                    nats_auth=False,
                )
                (workdir / name).mkdir(parents=True, exist_ok=True)
                stack.enter_context(s)
                out[name] = s
        yield out


def run_pass(settings: Plan, raw: Path, mode: str, budget: cpuset.Budget) -> ScalingPass:
    """One CPU mode: start the stacks, sweep them in turn, write raw/scaling-<mode>*.json."""
    say(f"scaling, {mode}: 1 and 2 workers, both hops ({budget.label})")
    with stacks(raw / f"logs-scaling-{mode}", budget) as running:
        processes: dict[str, Process] = {}
        configs: list[ScalingConfig] = []
        for name, s in running.items():
            procs = {f"{name}/{p.name}": p for p in s.processes}
            processes.update(procs)
            configs.append(
                {
                    "name": name,
                    "hop": s.transport,
                    "workers": s.workers,
                    "processes": {k: tier(p.name) for k, p in procs.items()},
                }
            )
        pids = {n: p.popen.pid for n, p in processes.items() if p.popen is not None}
        if budget.servers is not None:
            for pid in pids.values():
                cpuset.pin(pid, budget.servers)
        affinity = {n: sorted(cpuset.affinity(pid)) for n, pid in pids.items()}
        specs = [
            ScenarioSpec(name=name, kind=Kind.REST_JSON, target=s.rest_url, sweep=True)
            for name, s in running.items()
        ]
        plan = with_scenarios(settings, specs)
        with cpuset.confined(budget.driver):
            _, samples = drive(
                plan,
                raw,
                f"scaling-{mode}",
                processes,
                cpus=budget.driver,
                on_line=Progress(f"scaling, {mode}", plan),
            )
    (raw / f"scaling-{mode}-samples.json").write_text(dump_samples(samples))
    return {
        "mode": mode,
        "servers": list(budget.servers) if budget.servers is not None else None,
        "driver": list(budget.driver) if budget.driver is not None else None,
        "configs": configs,
        "affinity": affinity,
    }


def run(raw: Path, *, quick: bool) -> list[ScalingPass]:
    """Both CPU modes: same (servers on half the CPUs, the driver on the rest), then all
    (quick: same only)."""
    settings = QUICK if quick else FULL
    passes = [run_pass(settings, raw, "same", cpuset.Budget.split())]
    # Quick mode (make test) proves the pipeline on the same-CPU pass alone: the
    # all-cores pass runs the same code and would only add a minute and a half.
    if not quick:
        passes.append(run_pass(settings, raw, "all", cpuset.Budget()))
    (raw / "scaling.json").write_text(json.dumps(passes, indent=1))
    return passes


def load(raw: Path) -> list[tuple[ScalingPass, Report, list[Sample]]] | None:
    """A run's scaling passes with their reports and samples, or None if it had none."""
    path = raw / "scaling.json"
    if not path.is_file():
        return None
    passes: list[ScalingPass] = json.loads(path.read_text())
    return [
        (
            p,
            load_report((raw / f"scaling-{p['mode']}.json").read_text()),
            load_samples((raw / f"scaling-{p['mode']}-samples.json").read_text()),
        )
        for p in passes
    ]


def check_affinity(passes: Sequence[ScalingPass]) -> list[str]:
    """Every server of the same-CPU mode on exactly the servers' CPUs."""
    return [
        f"scaling, same CPU: {name} ran on CPUs {cpus}, not {p['servers']}"
        for p in passes
        if p["servers"] is not None
        for name, cpus in p["affinity"].items()
        if cpus != p["servers"]
    ]
