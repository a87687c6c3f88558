"""Benchmark Tandem against the all-Python baseline, side by side, in one run.

Starts the real processes on free ports (through tandem_stack, as `make run` does), hands a plan to
the open-loop driver (bench/bin/loadgen), samples every process's CPU and RSS while
it runs, and writes summary.json, summary.md and plots to a results folder.

    python bench/run.py            # full run: bench/results/<UTC>/, and results/latest
    python bench/run.py --quick    # seconds per scenario: bench/scratch/quick/<UTC>/,
                                   # fails unless every scenario ran without errors
    python bench/run.py --locust   # each scenario's Locust user in turn, closed loop,
                                   # with Locust's CSV and HTML reports

After the scenarios, three short phases: a CPU profile of the best gateway near its
capacity; traced requests through gateway-grpc and gateway-nats (a local OTLP
receiver) for the per-hop breakdown; and the same fixed load with tracing off, at
100% and at 1% sampling, for what tracing costs.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import nats as nats_client
import psutil
from sklearn.datasets import load_digits

BENCH = Path(__file__).resolve().parent
from tandem_inference.pb import grpc_service_pb2 as pb  # noqa: E402
from tandem_inference.pb import grpc_service_pb2_grpc as pb_grpc  # noqa: E402
from tandem_stack import otlp  # noqa: E402
from tandem_stack.stack import (  # noqa: E402
    GATEWAY,
    MODELS,
    PYTHON,
    ROOT,
    ROUTING,
    Ports,
    Process,
    Stack,
    free_port,
)

from report import OTHERS, write_locust_report, write_report  # noqa: E402
from scenarios import (  # noqa: E402
    FULL,
    FULL_PHASES,
    GATEWAYS,
    MODEL,
    QUICK,
    QUICK_PHASES,
    SCENARIOS,
    TRACED,
    Gateway,
    Phases,
    Scenario,
    Settings,
)

LOADGEN = BENCH / "bin" / "loadgen"
LOCUST = PYTHON.parent / "locust"
BASELINE = BENCH / "baseline" / "server.py"


@dataclass
class Services:
    """The running processes and where each scenario reaches them."""

    workdir: Path
    processes: dict[str, Process] = field(default_factory=dict)
    rest_urls: dict[str, str] = field(default_factory=dict)
    grpc_addrs: dict[str, str] = field(default_factory=dict)
    nats_urls: dict[str, str] = field(default_factory=dict)
    admin_addrs: dict[str, str] = field(default_factory=dict)
    nats_url: str = ""

    def endpoint(self, scenario: Scenario) -> str:
        tables = {"grpc": self.grpc_addrs, "nats": self.nats_urls}
        table = tables.get(scenario.kind, self.rest_urls)
        if scenario.via not in table:
            raise ValueError(
                f"scenario {scenario.name}: {scenario.via} has no {scenario.kind} port"
            )
        return table[scenario.via]


@contextmanager
def running(
    scenarios: Sequence[Scenario], workdir: Path, baseline_model: Path
) -> Iterator[Services]:
    """Start what the scenarios need, ready to serve; stop it all afterwards."""
    services = Services(workdir)
    needed = {s.via for s in scenarios}
    gateways = [g for g in GATEWAYS if g.name in needed]
    nats = any(g.transport == "nats" for g in gateways) or any(s.kind == "nats" for s in scenarios)
    with ExitStack() as stack:
        if gateways or "python" in needed:
            python = Stack(workdir=_folder(workdir / "python"), routing=None)
            stack.callback(python.stop)
            if nats:
                services.processes["nats-server"] = python.start_nats()
                services.nats_url = python.nats_url
                # Both front doors in one process: every path reaches the same service.
                python.python_args = ("--serve", "grpc,nats", "--nats-url", python.nats_url)
                services.nats_urls["python"] = python.nats_url
            services.processes["python"] = python.start_python()
            services.grpc_addrs["python"] = python.python_grpc_addr
            _wait_python(python, nats=nats)
            for gateway in gateways:
                _start_gateway(stack, services, gateway, python, workdir=workdir)
        if "baseline" in needed:
            port = free_port()
            argv = [str(PYTHON), str(BASELINE), "--host", "127.0.0.1", "--port", str(port)]
            argv += ["--model", str(baseline_model)]
            # As tandem_stack does: flags only, no stray TANDEM_* from the caller's shell.
            env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
            baseline = Process("baseline", argv, workdir / "baseline.log", env).start()
            stack.callback(baseline.stop)
            services.processes["baseline"] = baseline
            services.rest_urls["baseline"] = f"http://127.0.0.1:{port}"
            _wait_http(baseline, f"http://127.0.0.1:{port}/v2/health/ready")
        yield services


def _start_gateway(
    stack: ExitStack,
    services: Services,
    gateway: Gateway,
    python: Stack,
    *,
    workdir: Path,
    env: dict[str, str] | None = None,
) -> None:
    """One gateway process in front of python's service (and its nats-server)."""
    gw = Stack(
        transport=gateway.transport,
        ports=replace(Ports.free(), python_grpc=python.ports.python_grpc, nats=python.ports.nats),
        workdir=_folder(workdir / gateway.name),
        routing=ROUTING if gateway.coalesce else None,
        gateway_args=gateway.args,
        env=env or {},
    )
    stack.callback(gw.stop)
    services.processes[gateway.name] = gw.start_gateway()
    gw.wait_ready()
    services.rest_urls[gateway.name] = gw.rest_url
    services.grpc_addrs[gateway.name] = gw.edge_grpc_addr
    services.admin_addrs[gateway.name] = gw.admin_addr


# The traced configurations use their own subject prefix, so that their NATS
# requests reach the traced service only.
TRACED_PREFIX = "oip.traced"


@contextmanager
def traced(services: Services, workdir: Path, receiver: otlp.Receiver) -> Iterator[Services]:
    """TRACED's gateways and a traced Python service, exporting to receiver."""
    out = Services(workdir, nats_url=services.nats_url)
    with ExitStack() as stack:
        python = Stack(
            workdir=_folder(workdir / "python-traced"),
            routing=None,
            ports=replace(Ports.free(), nats=int(services.nats_url.rsplit(":", 1)[1])),
            env=otlp.otel_env(receiver.endpoint, "1"),
        )
        python.python_args = ("--serve", "grpc,nats", "--nats-url", services.nats_url)
        python.python_args += ("--nats-subject-prefix", TRACED_PREFIX)
        stack.callback(python.stop)
        out.processes["python-traced"] = python.start_python("python-traced")
        _wait_python(python, nats=False)
        for gateway in TRACED:
            args = gateway.args
            if gateway.transport == "nats":
                args += ("--nats-subject-prefix", TRACED_PREFIX)
            env = otlp.otel_env(receiver.endpoint, gateway.otel_ratio or "1")
            config = replace(gateway, args=args)
            _start_gateway(stack, out, config, python, workdir=workdir, env=env)
        yield out


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wait_python(python: Stack, *, nats: bool, timeout: float = 90.0) -> None:
    """Wait until the Python service has the model ready over gRPC (and serves NATS)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(python.python_grpc_addr) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        while time.monotonic() < deadline:
            if not all(p.running for p in python.processes):
                raise RuntimeError(f"the Python service exited:\n{python.logs()}")
            try:
                ready = stub.ModelReady(pb.ModelReadyRequest(name=MODEL), timeout=1).ready
                if ready and (not nats or _nats_ready(python.nats_url, deadline)):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"the Python service was not ready in {timeout:.0f}s:\n{python.logs()}")


def _nats_ready(url: str, deadline: float, prefix: str = "oip.v2") -> bool:
    """Whether a worker answers ModelReady over NATS before the deadline."""

    async def ask() -> bool:
        nc = await nats_client.connect(url)
        try:
            req = pb.ModelReadyRequest(name=MODEL).SerializeToString()
            while time.monotonic() < deadline:
                try:
                    msg = await nc.request(f"{prefix}.models.{MODEL}.ready", req, timeout=1)
                    if not msg.headers and pb.ModelReadyResponse.FromString(msg.data).ready:
                        return True
                except (nats_client.errors.NoRespondersError, nats_client.errors.TimeoutError):
                    pass
                await asyncio.sleep(0.2)
            return False
        finally:
            await nc.close()

    return asyncio.run(ask())


def _wait_http(process: Process, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running:
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 (a loopback URL we built)
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{process.name} not ready in {timeout:.0f}s:\n{process.log_tail()}")


class Sampler(threading.Thread):
    """CPU (% of one core) and RSS of each named process and its children, every interval."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        super().__init__(name="sampler", daemon=True)
        self.pids = pids
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self._done = threading.Event()
        self._procs: dict[int, psutil.Process] = {}

    def _family(self, pid: int) -> list[psutil.Process]:
        root = self._procs.setdefault(pid, psutil.Process(pid))
        family = [root, *root.children(recursive=True)]
        # cpu_percent is measured from the previous call on the same object: keep them.
        return [self._procs.setdefault(p.pid, p) for p in family]

    def sample(self) -> dict[str, Any]:
        row: dict[str, Any] = {"t": time.time()}
        for name, pid in self.pids.items():
            try:
                family = self._family(pid)
                cpu = sum(p.cpu_percent(None) for p in family)
                rss = sum(p.memory_info().rss for p in family)
            except psutil.NoSuchProcess:
                continue
            row[name] = {"cpu": cpu, "rss": rss}
        # Whatever else ran on the machine (this runner's own sampling included, a few
        # percent): on shared cores, the noise in the figures.
        machine = psutil.cpu_percent(None) * (psutil.cpu_count() or 1)
        ours = sum(v["cpu"] for k, v in row.items() if k != "t")
        row[OTHERS] = {"cpu": max(0.0, machine - ours), "rss": 0}
        return row

    def run(self) -> None:
        self.sample()  # primes cpu_percent
        while not self._done.wait(self.interval):
            self.samples.append(self.sample())

    def stop(self) -> None:
        self._done.set()
        self.join()


def base_plan(settings: Settings, specs: list[dict[str, Any]]) -> dict[str, Any]:
    plan = asdict(settings)
    plan["model"] = MODEL
    # One real digit from scikit-learn's bundled set, pixel values 0-16 as the model expects.
    plan["pixels"] = [float(v) for v in load_digits().data[0]]
    plan["scenarios"] = specs
    return plan


def plan_for(
    settings: Settings, scenarios: Sequence[Scenario], services: Services
) -> dict[str, Any]:
    return base_plan(
        settings,
        [
            {
                "name": s.name,
                "kind": s.kind,
                "target": services.endpoint(s),
                "sweep": s.sweep,
                "closed": s.closed,
            }
            for s in scenarios
        ],
    )


def drive(
    plan: dict[str, Any], raw: Path, name: str, processes: dict[str, Process]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the driver over the plan while sampling every process.

    Writes raw/<name>-plan.json, raw/<name>.json and raw/<name>.log; returns the
    driver's result and the samples.
    """
    plan_path, result_path = raw / f"{name}-plan.json", raw / f"{name}.json"
    log_path = raw / f"{name}.log"
    plan_path.write_text(json.dumps(plan, indent=1))
    argv = [str(LOADGEN), "-plan", str(plan_path), "-out", str(result_path)]
    with log_path.open("wb") as log:
        driver = subprocess.Popen(  # noqa: S603 (our own binary and paths)
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
    pids = {n: p.popen.pid for n, p in processes.items() if p.popen is not None}
    sampler = Sampler({**pids, "loadgen": driver.pid})
    sampler.start()
    # The driver bounds itself (max_steps, per-step duration and timeout); this is
    # a last line of defence against a hang, not a schedule.
    try:
        code = _wait(driver, 3600)
    finally:
        sampler.stop()
    if code != 0:
        raise RuntimeError(
            f"loadgen exited {code}:\n{log_path.read_text(errors='replace')[-4000:]}"
        )
    return json.loads(result_path.read_text()), sampler.samples


def _spec(
    name: str, kind: str, target: str, *, closed: bool = False, fixed_rps: float = 0
) -> dict[str, Any]:
    """A phase's scenario for the driver: one in flight, or a fixed rate."""
    spec: dict[str, Any] = {"name": name, "kind": kind, "target": target}
    return spec | {"sweep": False, "closed": closed, "fixed_rps": fixed_rps}


def profile_phase(
    settings: Settings,
    phases: Phases,
    result: dict[str, Any],
    services: Services,
    raw: Path,
) -> dict[str, Any] | None:
    """The best gateway scenario at a share of its capacity, with a CPU profile of its gateway.

    Also where the gateway's RSS under the heaviest sustained load within capacity
    is measured.
    """
    by_name = {s.name: s for s in SCENARIOS}
    swept = [
        r
        for r in result["scenarios"]
        if by_name[r["spec"]["name"]].role == "gateway" and r["capacity_rps"] > 0
    ]
    if not swept:
        return None
    best = max(swept, key=lambda r: r["capacity_rps"])
    scenario = by_name[best["spec"]["name"]]
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
    spec = _spec(scenario.name, scenario.kind, best["spec"]["target"], fixed_rps=rate)
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
    out, samples = drive(base_plan(run, [spec]), raw, "profile", services.processes)
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
        "samples": samples,
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
    settings: Settings,
    phases: Phases,
    services: Services,
    receiver: otlp.Receiver,
    raw: Path,
) -> dict[str, Any]:
    """Requests one at a time through each traced gateway (100%); median hop shares."""
    names = [g.name for g in TRACED if g.otel_ratio == "1"]
    specs = [_spec(n, "rest-json", services.rest_urls[n], closed=True) for n in names]
    run = replace(
        settings,
        warmup_s=min(settings.warmup_s, 1.0),
        start_rps=min(settings.start_rps, 100.0),
        closed_requests=phases.trace_requests,
        closed_rounds=1,
    )
    out, samples = drive(base_plan(run, specs), raw, "traces", services.processes)
    _settle(receiver)
    spans = list(receiver.spans)
    by_trace: dict[str, list[otlp.Span]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    rows: dict[str, Any] = {}
    for r in out["scenarios"]:
        window = r["closed"]["rounds"][0]
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
        rows[r["spec"]["name"]] = {
            "requests": window["requests"],
            "traces": len(shares),
            "client_p50_us": r["closed"]["latency"]["p50_us"],
            "gateway_span_p50_us": round(statistics.median(totals), 1) if totals else None,
            "median_us": {
                p: round(statistics.median(s[i][1] for s in shares), 1) for i, p in enumerate(parts)
            },
        }
    (raw / "spans.json").write_text(json.dumps([asdict(s) for s in spans]))
    return {"result": out, "samples": samples, "gateways": rows}


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
    settings: Settings,
    phases: Phases,
    result: dict[str, Any],
    services: Services,
    *,
    traced_services: Services,
    raw: Path,
) -> dict[str, Any]:
    """The same fixed load through gateway-grpc with tracing off, at 100% and at 1%."""
    caps = {r["spec"]["name"]: r["capacity_rps"] for r in result["scenarios"]}
    capacity = caps.get("rest-gateway-grpc", 0)
    rate = round(phases.overhead_share * capacity) if capacity else round(settings.start_rps)
    configs = {
        "tracing off": ("gateway-grpc", "python", services),
        "100% sampled": ("gateway-grpc-traced", "python-traced", traced_services),
        "1% sampled": ("gateway-grpc-traced-1pct", "python-traced", traced_services),
    }
    specs = [
        _spec(name, "rest-json", where.rest_urls[gw], fixed_rps=rate)
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
    out, samples = drive(base_plan(run, specs), raw, "overhead", processes)
    return {
        "rate": rate,
        "share": phases.overhead_share,
        "of": "rest-gateway-grpc",
        "capacity_rps": capacity,
        "configs": {k: {"gateway": g, "python": p} for k, (g, p, _) in configs.items()},
        "result": out,
        "samples": samples,
    }


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """The process's exit code; killed, and TimeoutExpired raised, if it overruns."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def locust(
    scenarios: Sequence[Scenario], services: Services, folder: Path, users: int, run_time: str
) -> list[dict[str, Any]]:
    """Each scenario's Locust user alone, headless, one Locust process per core."""
    out = _folder(folder / "locust")
    pids = {name: p.popen.pid for name, p in services.processes.items() if p.popen is not None}
    rows = []
    for s in scenarios:
        if not s.locust:
            continue  # no Locust user makes this call
        prefix = out / s.name
        argv = [str(LOCUST), "-f", str(BENCH / "locustfile.py"), "--headless", "--only-summary"]
        argv += ["--processes", "-1", "--users", str(users), "--spawn-rate", str(users)]
        argv += ["--run-time", run_time, "--stop-timeout", "5", "--host", services.endpoint(s)]
        argv += ["--csv", str(prefix), "--html", f"{prefix}.html", "--exit-code-on-error", "0"]
        with (folder / "raw" / f"locust-{s.name}.log").open("wb") as log:
            proc = subprocess.Popen(  # noqa: S603 (our own venv and paths)
                [*argv, s.locust], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        sampler = Sampler({**pids, "locust": proc.pid})
        started = time.time()
        sampler.start()
        try:
            # Locust stops itself after run_time; the margin covers start-up and the reports.
            code = _wait(proc, _seconds(run_time) + 120)
        finally:
            sampler.stop()
        if code != 0:
            raise RuntimeError(f"locust exited {code} for {s.name}; see {log.name}")
        with (out / f"{s.name}_stats.csv").open() as f:
            total = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
        rows.append(
            {
                "scenario": s.name,
                "user": s.locust,
                "users": users,
                "stats": total,
                "samples": sampler.samples,
                "started": started,
                "ended": time.time(),
            }
        )
    return rows


def _seconds(run_time: str) -> float:
    """Locust's run time (30s, 2m, 1h30m) in seconds."""
    total, number = 0.0, ""
    for ch in run_time:
        if ch.isdigit():
            number += ch
        else:
            total += int(number) * {"s": 1, "m": 60, "h": 3600}[ch]
            number = ""
    return total + (int(number) if number else 0)


def check_quick(summary: dict[str, Any], folder: Path) -> list[str]:
    """What make bench-quick asserts: everything ran, nothing failed. Never a time."""
    problems = []
    for s in summary["scenarios"]:
        if s["errors"]:
            problems.append(f"{s['name']}: {s['errors']} errors: {s['error_kinds']}")
        if s["sweep"] and not s["steps"]:
            problems.append(f"{s['name']}: no sweep step ran")
        if s["closed"] and not s["one_in_flight"]:
            problems.append(f"{s['name']}: no one-in-flight round ran")
    phases = summary.get("phases", {})
    if phases:
        for name, row in (phases.get("traces") or {}).items():
            if not row["traces"]:
                problems.append(f"traces: no complete trace through {name}")
        for name, row in (phases.get("overhead") or {}).get("configs", {}).items():
            if row["errors"] or not row["steps"]:
                problems.append(f"tracing overhead, {name}: {row['errors']} errors")
        profile = phases.get("profile") or {}
        if profile.get("errors") or not profile.get("top"):
            problems.append(f"profile: {profile.get('error') or 'no profile'}")
    files = ("summary.json", "summary.md", *summary["plots"])
    problems += [f"{name} was not written" for name in files if not (folder / name).is_file()]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    parser.add_argument("--locust", action="store_true", help="Locust users instead of loadgen")
    parser.add_argument("--locust-users", type=int, default=32, help="concurrent Locust users")
    parser.add_argument("--locust-time", default="30s", help="per scenario, e.g. 30s, 2m")
    parser.add_argument("--baseline-model", type=Path, default=MODELS / MODEL / "1" / "model.onnx")
    args = parser.parse_args(argv)

    if args.rerender:
        return rerender(args.rerender)

    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only]
    if args.only and len(scenarios) != len(args.only):
        parser.error(f"unknown scenario in {args.only}; known: {[s.name for s in SCENARIOS]}")
    for binary in [LOADGEN] + ([GATEWAY] if any(s.role == "gateway" for s in scenarios) else []):
        if not binary.is_file():
            parser.error(f"{binary} is missing: run `make setup` (or `make bench-build`)")
    settings = QUICK if args.quick else FULL
    root = args.results or (BENCH / "scratch" / "quick" if args.quick else BENCH / "results")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = _folder(root / stamp)
    raw = _folder(folder / "raw")

    if args.locust:
        with running(scenarios, _folder(raw / "logs"), args.baseline_model) as services:
            rows = locust(scenarios, services, folder, args.locust_users, args.locust_time)
        (raw / "samples.json").write_text(json.dumps(rows))
        write_locust_report(folder, rows)
        return _finish(root, stamp)

    phases = QUICK_PHASES if args.quick else FULL_PHASES
    extra: dict[str, Any] = {}
    logs = _folder(raw / "logs")
    with running(scenarios, logs, args.baseline_model) as services:
        plan = plan_for(settings, scenarios, services)
        result, samples = drive(plan, raw, "loadgen", services.processes)
        (raw / "samples.json").write_text(json.dumps(samples))
        # The phases need every gateway configuration: not with --only.
        if not args.only and not args.no_phases:
            extra["profile"] = profile_phase(settings, phases, result, services, raw)
            with otlp.Receiver() as receiver, traced(services, logs, receiver) as tr:
                extra["traces"] = trace_phase(settings, phases, tr, receiver, raw)
                extra["overhead"] = overhead_phase(
                    settings, phases, result, services, traced_services=tr, raw=raw
                )
    (raw / "phases.json").write_text(json.dumps(extra))

    summary = write_report(folder, result, samples, scenarios, extra, quick=args.quick)
    _finish(root, stamp)
    if args.quick and (problems := check_quick(summary, root / stamp)):
        print("bench-quick failed:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


def rerender(folder: Path) -> int:
    """summary.json, summary.md and the plots again, from the run's raw/."""
    raw = folder / "raw"
    result = json.loads((raw / "loadgen.json").read_text())
    samples = json.loads((raw / "samples.json").read_text())
    extra = json.loads((raw / "phases.json").read_text())
    old = json.loads((folder / "summary.json").read_text())
    made = (old["generated"], old["commit"])
    write_report(folder, result, samples, SCENARIOS, extra, quick=old["mode"] == "quick", made=made)
    print((folder / "summary.md").read_text())
    return 0


def _finish(root: Path, stamp: str) -> int:
    """Point latest at the new folder and show its summary."""
    folder = root / stamp
    latest = root / "latest"
    latest.unlink(missing_ok=True)
    latest.symlink_to(stamp)
    print((folder / "summary.md").read_text())
    print(f"results in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
