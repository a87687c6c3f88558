"""Start the real processes a run needs (through tandem_stack), ready to serve; stop them after.

Every process runs on a free port of 127.0.0.1. With a same-CPU budget
(cpuset.Budget.split) every server starts confined to the servers' CPUs, with
GOMAXPROCS set to their number.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import nats as nats_client
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.pb import grpc_service_pb2_grpc as pb_grpc
from tandem_stack import otlp
from tandem_stack.stack import PYTHON, ROUTING, Ports, Process, Stack, free_port

import cpuset
from scenarios import GATEWAYS, MODEL, TRACED, Gateway, Scenario
from schema import Kind

BENCH = Path(__file__).resolve().parent
BASELINE = BENCH / "baseline" / "server.py"
# The traced configurations use their own subject prefix, so that their NATS
# requests reach the traced service only.
TRACED_PREFIX = "oip.traced"


@dataclass
class Services:
    """The running processes and where each scenario reaches them."""

    workdir: Path
    budget: cpuset.Budget = field(default_factory=cpuset.Budget)
    processes: dict[str, Process] = field(default_factory=dict)
    rest_urls: dict[str, str] = field(default_factory=dict)
    grpc_addrs: dict[str, str] = field(default_factory=dict)
    nats_urls: dict[str, str] = field(default_factory=dict)
    admin_addrs: dict[str, str] = field(default_factory=dict)
    nats_url: str = ""

    def endpoint(self, scenario: Scenario) -> str:
        tables = {Kind.GRPC: self.grpc_addrs, Kind.NATS: self.nats_urls}
        table = tables.get(scenario.kind, self.rest_urls)
        if scenario.via not in table:
            raise ValueError(
                f"scenario {scenario.name}: {scenario.via} has no {scenario.kind} port"
            )
        return table[scenario.via]

    def pids(self) -> dict[str, int]:
        return {n: p.popen.pid for n, p in self.processes.items() if p.popen is not None}

    def pin(self) -> dict[str, list[int]]:
        """Every thread of every server onto the servers' CPUs; what each is on after."""
        if self.budget.servers is not None:
            for pid in self.pids().values():
                cpuset.pin(pid, self.budget.servers)
        return {n: sorted(cpuset.affinity(pid)) for n, pid in self.pids().items()}


def folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def running(
    scenarios: Sequence[Scenario],
    workdir: Path,
    baseline_model: Path,
    budget: cpuset.Budget | None = None,
) -> Iterator[Services]:
    """Start what the scenarios need, ready to serve; stop it all afterwards."""
    services = Services(workdir, budget or cpuset.Budget())
    go = cpuset.go_env(services.budget.servers)
    needed = {s.via for s in scenarios}
    gateways = [g for g in GATEWAYS if g.name in needed]
    nats = any(g.transport == "nats" for g in gateways) or any(
        s.kind == Kind.NATS for s in scenarios
    )
    with ExitStack() as stack:
        # Only while starting them: what runs after this (the driver, the sampler) does not.
        with cpuset.confined(services.budget.servers):
            if gateways or "python" in needed:
                # NATS without credentials: loadgen's NATS mode talks to it directly.
                # Auth is checked when a client connects, not per message, so the
                # figures hold for the shipped, authenticated NATS too.
                python = Stack(
                    workdir=folder(workdir / "python"), routing=None, env=dict(go), nats_auth=False
                )
                stack.callback(python.stop)
                if nats:
                    services.processes["nats-server"] = python.start_nats()
                    services.nats_url = python.nats_url
                    # Both front doors in one process: every path reaches the same service.
                    python.python_args = ("--serve", "grpc,nats", "--nats-url", python.nats_url)
                    services.nats_urls["python"] = python.nats_url
                services.processes["python"] = python.start_python()
                services.grpc_addrs["python"] = python.python_grpc_addr
                wait_python(python, nats=nats)
                for gateway in gateways:
                    start_gateway(stack, services, gateway, python, workdir=workdir, env=go)
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
                wait_http(baseline, f"http://127.0.0.1:{port}/v2/health/ready")
        services.pin()
        yield services


def start_gateway(
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
        workdir=folder(workdir / gateway.name),
        routing=ROUTING if gateway.coalesce else None,
        # pprof is off unless asked for; the profile phase asks.
        gateway_args=("--pprof", *gateway.args),
        env=env or {},
        nats_auth=False,
    )
    stack.callback(gw.stop)
    services.processes[gateway.name] = gw.start_gateway()
    gw.wait_ready()
    services.rest_urls[gateway.name] = gw.rest_url
    services.grpc_addrs[gateway.name] = gw.edge_grpc_addr
    services.admin_addrs[gateway.name] = gw.admin_addr


@contextmanager
def traced(services: Services, workdir: Path, receiver: otlp.Receiver) -> Iterator[Services]:
    """TRACED's gateways and a traced Python service, exporting to receiver."""
    out = Services(workdir, nats_url=services.nats_url)
    with ExitStack() as stack:
        python = Stack(
            workdir=folder(workdir / "python-traced"),
            routing=None,
            ports=replace(Ports.free(), nats=int(services.nats_url.rsplit(":", 1)[1])),
            env=otlp.otel_env(receiver.endpoint, "1"),
            nats_auth=False,
        )
        python.python_args = ("--serve", "grpc,nats", "--nats-url", services.nats_url)
        python.python_args += ("--nats-subject-prefix", TRACED_PREFIX)
        stack.callback(python.stop)
        out.processes["python-traced"] = python.start_python("python-traced")
        wait_python(python, nats=False)
        for gateway in TRACED:
            args = gateway.args
            if gateway.transport == "nats":
                args += ("--nats-subject-prefix", TRACED_PREFIX)
            env = otlp.otel_env(receiver.endpoint, gateway.otel_ratio or "1")
            config = replace(gateway, args=args)
            start_gateway(stack, out, config, python, workdir=workdir, env=env)
        yield out


def wait_python(python: Stack, *, nats: bool, timeout: float = 90.0) -> None:
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


def wait_http(process: Process, url: str, timeout: float = 60.0) -> None:
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
