"""Benchmark Tandem against the all-Python baseline, side by side, in one run.

Starts the real processes on free ports (through tests/stack.py), hands a plan to
the open-loop driver (bench/bin/loadgen), samples every process's CPU and RSS while
it runs, and writes summary.json, summary.md and plots to a results folder.

    python bench/run.py            # full run: bench/results/<UTC>/, and results/latest
    python bench/run.py --quick    # seconds per scenario: bench/scratch/quick/<UTC>/,
                                   # fails unless every scenario ran without errors
    python bench/run.py --locust   # each scenario's Locust user in turn, closed loop,
                                   # with Locust's CSV and HTML reports
"""

from __future__ import annotations

import argparse
import csv
import json
import os
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
import psutil
from sklearn.datasets import load_digits

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from stack import GATEWAY, MODELS, PYTHON, ROOT, Ports, Process, Stack, free_port  # noqa: E402
from tandem_inference.pb import grpc_service_pb2 as pb  # noqa: E402
from tandem_inference.pb import grpc_service_pb2_grpc as pb_grpc  # noqa: E402

from report import OTHERS, write_locust_report, write_report  # noqa: E402
from scenarios import FULL, GATEWAYS, MODEL, QUICK, SCENARIOS, Scenario, Settings  # noqa: E402

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

    def endpoint(self, scenario: Scenario) -> str:
        table = self.grpc_addrs if scenario.kind == "grpc" else self.rest_urls
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
    with ExitStack() as stack:
        if gateways or "python" in needed:
            python = Stack(workdir=_folder(workdir / "python"))
            stack.callback(python.stop)
            services.processes["python"] = python.start_python()
            services.grpc_addrs["python"] = python.python_grpc_addr
            _wait_python(python)
            for gateway in gateways:
                gw = Stack(
                    ports=replace(Ports.free(), python_grpc=python.ports.python_grpc),
                    workdir=_folder(workdir / gateway.name),
                    gateway_args=gateway.args,
                )
                stack.callback(gw.stop)
                services.processes[gateway.name] = gw.start_gateway()
                gw.wait_ready()
                services.rest_urls[gateway.name] = gw.rest_url
                services.grpc_addrs[gateway.name] = gw.edge_grpc_addr
        if "baseline" in needed:
            port = free_port()
            argv = [str(PYTHON), str(BASELINE), "--host", "127.0.0.1", "--port", str(port)]
            argv += ["--model", str(baseline_model)]
            # As tests/stack.py does: flags only, no stray TANDEM_* from the caller's shell.
            env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
            baseline = Process("baseline", argv, workdir / "baseline.log", env).start()
            stack.callback(baseline.stop)
            services.processes["baseline"] = baseline
            services.rest_urls["baseline"] = f"http://127.0.0.1:{port}"
            _wait_http(baseline, f"http://127.0.0.1:{port}/v2/health/ready")
        yield services


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wait_python(python: Stack, timeout: float = 90.0) -> None:
    """Wait until the Python service has the model ready over gRPC."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(python.python_grpc_addr) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        while time.monotonic() < deadline:
            if not all(p.running for p in python.processes):
                raise RuntimeError(f"the Python service exited:\n{python.logs()}")
            try:
                if stub.ModelReady(pb.ModelReadyRequest(name=MODEL), timeout=1).ready:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"the Python service was not ready in {timeout:.0f}s:\n{python.logs()}")


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


def plan_for(
    settings: Settings, scenarios: Sequence[Scenario], services: Services
) -> dict[str, Any]:
    plan = asdict(settings)
    plan["model"] = MODEL
    # One real digit from scikit-learn's bundled set, pixel values 0-16 as the model expects.
    plan["pixels"] = [float(v) for v in load_digits().data[0]]
    plan["scenarios"] = [
        {
            "name": s.name,
            "kind": s.kind,
            "target": services.endpoint(s),
            "sweep": s.sweep,
            "closed": s.closed,
        }
        for s in scenarios
    ]
    return plan


def drive(
    plan_path: Path, result_path: Path, log_path: Path, services: Services
) -> list[dict[str, Any]]:
    """Run the driver over the plan while sampling every process; returns the samples."""
    argv = [str(LOADGEN), "-plan", str(plan_path), "-out", str(result_path)]
    with log_path.open("wb") as log:
        driver = subprocess.Popen(  # noqa: S603 (our own binary and paths)
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
    pids = {name: p.popen.pid for name, p in services.processes.items() if p.popen is not None}
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
    return sampler.samples


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
    files = ("summary.json", "summary.md", *summary["plots"])
    problems += [f"{name} was not written" for name in files if not (folder / name).is_file()]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per scenario")
    parser.add_argument("--only", nargs="+", metavar="SCENARIO", help="run only these scenarios")
    parser.add_argument("--results", type=Path, help="results root (default by mode)")
    parser.add_argument("--locust", action="store_true", help="Locust users instead of loadgen")
    parser.add_argument("--locust-users", type=int, default=32, help="concurrent Locust users")
    parser.add_argument("--locust-time", default="30s", help="per scenario, e.g. 30s, 2m")
    parser.add_argument("--baseline-model", type=Path, default=MODELS / MODEL / "1" / "model.onnx")
    args = parser.parse_args(argv)

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

    with running(scenarios, _folder(raw / "logs"), args.baseline_model) as services:
        plan = plan_for(settings, scenarios, services)
        (raw / "plan.json").write_text(json.dumps(plan, indent=1))
        samples = drive(raw / "plan.json", raw / "loadgen.json", raw / "loadgen.log", services)
    (raw / "samples.json").write_text(json.dumps(samples))

    result = json.loads((raw / "loadgen.json").read_text())
    summary = write_report(folder, result, samples, scenarios, quick=args.quick)
    _finish(root, stamp)
    if args.quick and (problems := check_quick(summary, root / stamp)):
        print("bench-quick failed:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
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
