"""The open-loop driver (bench/bin/loadgen): its plan in, its result out, samples beside."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sklearn.datasets import load_digits
from tandem_stack.stack import ROOT, Process

import cpuset
from sampling import Sampler
from schema import Kind, Plan, Report, Sample, ScenarioSpec, load_report

if TYPE_CHECKING:
    from scenarios import Scenario
    from services import Services

BENCH = Path(__file__).resolve().parent
LOADGEN = BENCH / "bin" / "loadgen"


def with_scenarios(settings: Plan, specs: Sequence[ScenarioSpec]) -> Plan:
    # One real digit from scikit-learn's bundled set, pixel values 0-16 as the model expects.
    pixels = tuple(float(v) for v in load_digits().data[0])
    return replace(settings, pixels=pixels, scenarios=tuple(specs))


def plan_for(
    settings: Plan, scenarios: Sequence[Scenario], services: Services, *, closed: bool = True
) -> Plan:
    """The scenarios' plan; closed=False drops the one-in-flight rounds (and the scenarios
    that only have those)."""
    specs = [
        ScenarioSpec(
            name=s.name,
            kind=s.kind,
            target=services.endpoint(s),
            sweep=s.sweep,
            closed=s.closed and closed,
        )
        for s in scenarios
        if closed or s.sweep
    ]
    return with_scenarios(settings, specs)


def spec(
    name: str, kind: Kind, target: str, *, closed: bool = False, fixed_rps: float = 0
) -> ScenarioSpec:
    """A phase's scenario for the driver: one in flight, or a fixed rate."""
    return ScenarioSpec(
        name=name, kind=kind, target=target, sweep=False, closed=closed, fixed_rps=fixed_rps
    )


def drive(
    plan: Plan,
    raw: Path,
    name: str,
    processes: dict[str, Process],
    *,
    cpus: Sequence[int] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> tuple[Report, list[Sample]]:
    """Run the driver over the plan while sampling every process.

    Writes raw/<name>-plan.json, raw/<name>.json and raw/<name>.log; returns the
    driver's result and the samples. cpus confines the driver (GOMAXPROCS too).
    on_line gets each line the driver logs, as it logs it (for progress).
    """
    plan_path, result_path = raw / f"{name}-plan.json", raw / f"{name}.json"
    log_path = raw / f"{name}.log"
    plan_path.write_text(plan.dumps())
    argv = [str(LOADGEN), "-plan", str(plan_path), "-out", str(result_path)]
    env = {**os.environ, **cpuset.go_env(cpus)}
    with log_path.open("wb") as log, cpuset.confined(cpus):
        driver = subprocess.Popen(  # noqa: S603 (our own binary and paths)
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env
        )
    pids = {n: p.popen.pid for n, p in processes.items() if p.popen is not None}
    sampler = Sampler({**pids, "loadgen": driver.pid})
    sampler.start()
    # The driver bounds itself (max_steps, per-step duration and timeout); this is
    # a last line of defence against a hang, not a schedule.
    try:
        code = _follow(driver, log_path, 3600, on_line)
    finally:
        sampler.stop()
    if code != 0:
        raise RuntimeError(
            f"loadgen exited {code}:\n{log_path.read_text(errors='replace')[-4000:]}"
        )
    return load_report(result_path.read_text()), sampler.samples


def _follow(
    proc: subprocess.Popen[bytes],
    log_path: Path,
    timeout: float,
    on_line: Callable[[str], None] | None,
) -> int:
    """Wait for proc, handing on_line each new line of its log meanwhile."""
    if on_line is None:
        return wait(proc, timeout)
    seen = 0
    elapsed = 0.0
    while True:
        try:
            code = proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            code = None
        text = log_path.read_text(errors="replace")
        lines = text[seen:].splitlines(keepends=True)
        for line in lines:
            if line.endswith("\n"):
                on_line(line.rstrip("\n"))
                seen += len(line)
        if code is not None:
            return code
        elapsed += 0.5
        if elapsed > timeout:
            proc.kill()
            proc.wait()
            raise subprocess.TimeoutExpired(proc.args, timeout)


def wait(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """The process's exit code; killed, and TimeoutExpired raised, if it overruns."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
