"""Start and stop the real Tandem processes: the Python service and the Go gateway.

One harness serves the cross-language tests and the bench (on free ports),
`make demo` and `make run` (on the default ports of the README). Every process
writes its logs to a file in the stack's work folder, so that a failing test can
show them.

    python -m tandem_stack run --transport grpc     # foreground until Ctrl-C
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Self

import grpc
import nats
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

# The checkout this package lives in (deploy/local/src/tandem_stack): the binaries
# and models that `make setup` built are found relative to it.
ROOT = Path(__file__).resolve().parents[4]
PYTHON = ROOT / ".venv" / "bin" / "python"
GATEWAY = ROOT / "edge-go" / "bin" / "gateway"
NATS_SERVER = ROOT / "edge-go" / "bin" / "nats-server"
# The shipped per-model routing: edge coalescing on, as measured fastest (edge-go/README.md).
ROUTING = ROOT / "edge-go" / "routing.toml"
MODELS = ROOT / "models"
# The repository a Stack serves unless it is given one. The cross-language tests
# narrow it to the digits models (tests/conftest.py), so that only the tests of
# MiniLM pay for loading it.
DEFAULT_MODELS = MODELS
TRANSPORTS = ("grpc", "nats")
# The name the workers report in grpc.health.v1, which the gateway checks.
GRPC_HEALTH_SERVICE = "inference.GRPCInferenceService"


# The NATS users of a stack and what each may do (docs/architecture.md, "NATS
# security"): the gateway sends requests and reads replies, a worker takes
# requests and may only answer what it received, and the observer (tests and
# tools) may ask the NATS services API ($SRV) and nothing else. With no
# no_auth_user, a client without credentials is refused.
NATS_PERMISSIONS = {
    "gateway": '{publish: {allow: ["oip.v2.>"]}, subscribe: {allow: ["_INBOX.>"]}}',
    "worker": (
        '{publish: {deny: [">"]}, subscribe: {allow: ["oip.v2.>", "$SRV.>"]}, '
        "allow_responses: true}"
    ),
    "observer": '{publish: {allow: ["$SRV.>"]}, subscribe: {allow: ["_INBOX.>"]}}',
}


def nats_config(passwords: dict[str, str]) -> str:
    """A nats-server configuration with one user per role of NATS_PERMISSIONS."""
    users = "\n".join(
        f'    {{user: {user}, password: "{passwords[user]}", permissions: {perms}}}'
        for user, perms in NATS_PERMISSIONS.items()
    )
    return f"authorization {{\n  users = [\n{users}\n  ]\n}}\n"


def default_workers(transport: str, cores: int | None = None) -> int:
    """How many Python workers `make run` starts when WORKERS is not given.

    Over NATS the workers share one queue group, and over gRPC each listens on
    its own port and the gateway balances them round robin, so on either every
    core adds capacity: one worker per core, less one core kept for the gateway
    (and nats-server, which shares it: both are light next to a model run),
    and at least one. `cores` is the CPUs this process may run on (its
    affinity, which containers and taskset narrow), not the machine's count.
    """
    if transport not in TRANSPORTS:
        return 1
    if cores is None:
        cores = len(os.sched_getaffinity(0))
    return max(1, cores - 1)


def model_subset(names: Sequence[str], root: Path) -> Path:
    """A repository at `root` of the models `names` alone: links to their folders in models/."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = root / name
        if not link.exists():
            link.symlink_to(MODELS / name, target_is_directory=True)
    return root


def _ephemeral_low() -> int:
    """The bottom of the kernel's ephemeral port range (Linux's default if unreadable)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Handed out by this process: a port is never given twice, even once its child is gone.
_GIVEN: set[int] = set()


def free_port() -> int:
    """A loopback port that was free a moment ago, below the kernel's ephemeral range.

    bind(0) would pick an ephemeral port, and between the pick and the child's bind any
    outgoing connection on the box can take it as its local port: a CI run lost a
    gateway to "address already in use" that way. Below the range only listeners bind."""
    low = max(_ephemeral_low(), 11000)
    for _ in range(1000):
        port = random.randrange(10000, low)
        if port in _GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError(f"no free loopback port in 10000-{low}")


@dataclass
class Process:
    """One child process with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal the process and wait; SIGKILL if it does not go in time."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Ports:
    """Every port the stack listens on; the README's defaults or free ones."""

    http: int = 8000
    edge_grpc: int = 8001
    python_grpc: int = 50051
    nats: int = 4222
    nats_monitor: int = 8222
    admin: int = 9000
    python_metrics: int = 9001

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in fields(cls)))


@dataclass(frozen=True)
class NatsNode:
    """One nats-server of a stack's cluster: its own client, monitoring and route ports."""

    name: str
    client: int
    monitor: int
    cluster: int

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client}"

    @property
    def route_url(self) -> str:
        return f"nats://127.0.0.1:{self.cluster}"

    def monitor_url(self, endpoint: str) -> str:
        return f"http://127.0.0.1:{self.monitor}/{endpoint}"


def monitor_json(url: str) -> dict[str, Any]:
    """One of nats-server's monitoring endpoints (/routez, /connz, ...), decoded."""
    with urllib.request.urlopen(url, timeout=2) as r:
        return dict(json.load(r))


@dataclass
class Stack:
    """The gateway and Python workers, wired together over one transport.

    Over NATS the tests run a standalone `nats-server` (so that they can restart
    it); `make run` and `make demo` use the one embedded in the gateway.
    """

    transport: str = "grpc"
    ports: Ports = field(default_factory=Ports.free)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tandem-")))
    workers: int = 1
    embedded_nats: bool = False
    models: Path = field(default_factory=lambda: DEFAULT_MODELS)
    routing: Path | None = ROUTING
    gateway_args: Sequence[str] = ()
    python_args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    # NATS with a user per role and passwords made for this stack alone, as
    # `make run` ships it; False runs an open server (for what needs one).
    nats_auth: bool = True
    # nats-servers for a standalone NATS: 1, or a cluster of that many on loopback,
    # routed to one another (every node knows every other's route port).
    nats_servers: int = 1
    processes: list[Process] = field(default_factory=list)
    # With the gateway's edge on TLS (--tls-cert): how clients, and the
    # readiness check, verify it (and present a client certificate, under mTLS).
    ssl_context: ssl.SSLContext | None = None
    # Each Python worker's /metrics address, by process name.
    metrics_addrs: dict[str, str] = field(default_factory=dict)
    # Over gRPC, each Python worker's gRPC address, by process name: the first
    # worker's is ports.python_grpc, later ones free ports; a worker started
    # again under its name keeps its address (the gateway knows only those).
    grpc_addrs: dict[str, str] = field(default_factory=dict)
    nats_passwords: dict[str, str] = field(
        default_factory=lambda: {user: secrets.token_urlsafe(24) for user in NATS_PERMISSIONS}
    )

    @property
    def nats_config_path(self) -> Path:
        """The server's auth configuration, written on first use into the work folder."""
        path = self.workdir / "nats.conf"
        if not path.exists():
            path.write_text(nats_config(self.nats_passwords))
            path.chmod(0o600)
        return path

    def nats_credentials(self, user: str) -> tuple[list[str], dict[str, str]]:
        """The flags and environment that log a process in to NATS as `user`:
        the password travels in the environment, never on a command line."""
        if not self.nats_auth:
            return [], {}
        return ["--nats-user", user], {"TANDEM_NATS_PASSWORD": self.nats_passwords[user]}

    def nats_client_url(self, user: str | None = "observer") -> str:
        """URLs (comma-separated, one per node) for a client of this stack's NATS;
        user None: with no credentials."""
        if not self.nats_auth or user is None:
            return self.nats_url
        secret = self.nats_passwords[user]
        return ",".join(f"nats://{user}:{secret}@127.0.0.1:{n.client}" for n in self.nats_nodes)

    @property
    def rest_url(self) -> str:
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://127.0.0.1:{self.ports.http}"

    @property
    def edge_grpc_addr(self) -> str:
        return f"127.0.0.1:{self.ports.edge_grpc}"

    @property
    def python_grpc_addr(self) -> str:
        return f"127.0.0.1:{self.ports.python_grpc}"

    @property
    def admin_addr(self) -> str:
        return f"127.0.0.1:{self.ports.admin}"

    @property
    def python_metrics_addr(self) -> str:
        """The first worker's metrics; later workers get free ports of their own."""
        return f"127.0.0.1:{self.ports.python_metrics}"

    @property
    def nats_url(self) -> str:
        """Every node's client URL, comma-separated, as --nats-url takes them."""
        return ",".join(n.url for n in self.nats_nodes)

    @cached_property
    def nats_nodes(self) -> list[NatsNode]:
        """The standalone nats-servers: the first on the stack's NATS ports, the rest on
        free ones; each has a route port for the cluster (unused by a single server)."""
        first = NatsNode("nats-server", self.ports.nats, self.ports.nats_monitor, free_port())
        rest = [
            NatsNode(f"nats-server-{i + 1}", free_port(), free_port(), free_port())
            for i in range(1, self.nats_servers)
        ]
        return [first, *rest]

    def process(self, name: str) -> Process:
        (proc,) = [p for p in self.processes if p.name == name]
        return proc

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        # Settings reach the processes as flags; drop stray TANDEM_* so that the
        # caller's shell cannot change what a test means.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        env.update(extra or {})
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        proc = Process(name, argv, self.workdir / f"{name}.log", self._env(env)).start()
        self.processes.append(proc)
        return proc

    @property
    def nats_health_url(self) -> str:
        """nats-server's own readiness check, on its monitoring port."""
        return f"http://127.0.0.1:{self.ports.nats_monitor}/healthz"

    def start_nats(self) -> Process:
        """The standalone nats-server(s), the first one returned; waits until each one's
        /healthz says it is ready and, for a cluster, until each routes to every other."""
        first, *_ = [self.start_nats_node(node) for node in self.nats_nodes]
        if len(self.nats_nodes) > 1:
            self.wait_routes()
        return first

    def start_nats_node(self, node: NatsNode) -> Process:
        """One node, with the same auth config as a single server.

        Its cluster block (the route listener and the other nodes' routes) is given as
        flags, with no authorization of its own: routes listen on loopback only, where
        every process is this stack's. A route is a server, not a client: user
        permissions do not apply to it, so beyond loopback routes need credentials
        (or TLS) of their own (deploy/README.md).
        """
        argv = [str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(node.client)]
        argv += ["-m", str(node.monitor), "-n", node.name]
        if len(self.nats_nodes) > 1:
            others = [n.route_url for n in self.nats_nodes if n != node]
            argv += ["--cluster_name", "tandem", "--cluster", node.route_url]
            argv += ["--routes", ",".join(others)]
        if self.nats_auth:
            argv += ["-c", str(self.nats_config_path)]
        proc = self._spawn(node.name, argv)
        wait_healthy(node.monitor_url("healthz"), proc, self)
        return proc

    def wait_routes(self, timeout: float = 30.0) -> None:
        """Wait until every running node has routes to every other running node: only then
        does a subscription on one node reach publishers on the others."""
        deadline = time.monotonic() + timeout
        while True:
            live = [n for n in self.nats_nodes if self.process(n.name).running]
            if all(len(self.route_peers(n)) == len(live) - 1 for n in live):
                return
            if time.monotonic() > deadline:
                peers = {n.name: sorted(self.route_peers(n)) for n in live}
                raise TimeoutError(f"NATS routes after {timeout:.0f}s: {peers}\n{self.logs()}")
            time.sleep(0.1)

    def route_peers(self, node: NatsNode) -> set[str]:
        """The names of the nodes `node` has a route to (a pool of connections each)."""
        try:
            routes = monitor_json(node.monitor_url("routez")).get("routes") or []
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return set()
        return {str(r.get("remote_name", r.get("remote_id"))) for r in routes}

    def nats_clients(self, node: NatsNode) -> list[dict[str, Any]]:
        """The client connections of one node, from its /connz (each has name, lang)."""
        return list(monitor_json(node.monitor_url("connz")).get("connections") or [])

    def stop_nats_node(self, node: NatsNode) -> int | None:
        """Stop one node of the cluster; its clients must fail over to the others."""
        return self.process(node.name).stop()

    def restart_nats(self) -> Process:
        (node,) = self.nats_nodes  # a cluster's nodes are stopped one at a time instead
        self.process(node.name).stop()
        self.processes = [p for p in self.processes if p.name != node.name]
        return self.start_nats_node(node)

    @staticmethod
    def worker_name(i: int) -> str:
        """The process name of the i-th (from 0) Python worker."""
        return "inference-py" if i == 0 else f"inference-py-{i + 1}"

    def grpc_addr(self, name: str) -> str:
        """The gRPC address of the worker `name`, chosen on first use."""
        if name not in self.grpc_addrs:
            first = not self.grpc_addrs
            self.grpc_addrs[name] = self.python_grpc_addr if first else f"127.0.0.1:{free_port()}"
        return self.grpc_addrs[name]

    def start_python(self, name: str = "inference-py", nats_url: str | None = None) -> Process:
        """One worker; over NATS on `nats_url` (default: every node of the stack's).

        A worker that exited may be started again under its name: over gRPC
        it listens on its old address, where the gateway looks for it."""
        self.processes = [p for p in self.processes if p.name != name or p.running]
        argv = [str(PYTHON), "-m", "tandem_inference", "serve"]
        argv += ["--model-repository", str(self.models)]
        first = not any(p.name.startswith("inference-py") for p in self.processes)
        metrics = self.metrics_addrs.get(name) or (
            self.python_metrics_addr if first else f"127.0.0.1:{free_port()}"
        )
        self.metrics_addrs[name] = metrics
        argv += ["--metrics-addr", metrics]
        env: dict[str, str] = {}
        if self.transport == "nats":
            argv += ["--serve", "nats", "--nats-url", nats_url or self.nats_url]
            flags, env = self.nats_credentials("worker")
            argv += flags
        else:
            argv += ["--grpc-addr", self.grpc_addr(name)]
        return self._spawn(name, argv + list(self.python_args), env)

    def start_gateway(self, nats_url: str | None = None) -> Process:
        """The gateway; over a standalone NATS on `nats_url` (default: every node)."""
        argv = [str(GATEWAY), "--transport", self.transport]
        argv += ["--http-addr", f"127.0.0.1:{self.ports.http}", "--grpc-addr", self.edge_grpc_addr]
        argv += ["--admin-addr", self.admin_addr]
        if self.routing is not None:
            argv += ["--routing", str(self.routing)]
        env: dict[str, str] = {}
        if self.transport == "grpc":
            # Every worker's address, so that the gateway balances them.
            addrs = [self.grpc_addr(self.worker_name(i)) for i in range(max(1, self.workers))]
            argv += ["--inference-addr", ",".join(addrs)]
        else:
            if self.embedded_nats:
                argv += ["--nats-listen", f"127.0.0.1:{self.ports.nats}"]
                argv += ["--nats-monitor-addr", f"127.0.0.1:{self.ports.nats_monitor}"]
                if self.nats_auth:
                    argv += ["--nats-server-config", str(self.nats_config_path)]
            else:
                argv += ["--nats-url", nats_url or self.nats_url]
            flags, env = self.nats_credentials("gateway")
            argv += flags
        return self._spawn("gateway", argv + list(self.gateway_args), env)

    def start(self, timeout: float = 90.0) -> Self:
        nats = self.transport == "nats"
        if nats and not self.embedded_nats:
            self.start_nats()
        gateway = self.start_gateway()
        if nats and self.embedded_nats:
            # The workers connect to the server inside the gateway: it must be up first.
            wait_healthy(self.nats_health_url, gateway, self)
        for i in range(self.workers):
            self.start_python(self.worker_name(i))
        self.wait_ready(timeout)
        # Ready means one worker answers; a test of several needs all of them
        # in the group, or in the gateway's rotation.
        if self.transport == "nats":
            self.wait_workers(self.workers, timeout)
        elif self.workers > 1:
            for i in range(self.workers):
                self.wait_grpc_serving(self.worker_name(i), timeout)
        return self

    def wait_grpc_serving(self, name: str, timeout: float = 90.0) -> None:
        """Wait until worker `name` reports SERVING over grpc.health.v1 (a plain
        channel: workers serving gRPC over TLS are not checked this way)."""
        deadline = time.monotonic() + timeout
        while not grpc_serving(self.grpc_addr(name)):
            if not self.process(name).running:
                raise RuntimeError(f"{name} exited early:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not SERVING after {timeout:.0f}s:\n{self.logs()}")
            time.sleep(0.1)

    def service_replies(self, verb: str = "PING") -> list[dict[str, Any]]:
        """Every NATS worker's answer to `$SRV.<verb>.tandem-inference` (PING, INFO or STATS)."""
        # nats-py takes several servers as a list, not as one comma-separated URL.
        return service_replies(self.nats_client_url("observer").split(","), verb)

    def wait_workers(self, n: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.service_replies()) < n:
            if time.monotonic() > deadline:
                have = len(self.service_replies())
                msg = f"{have} of {n} NATS workers after {timeout:.0f}s"
                raise TimeoutError(f"{msg}:\n{self.logs()}")

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until the gateway reports the whole path ready, or fail with the logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.name == "gateway" and not p.running for p in self.processes):
                raise RuntimeError(f"the gateway exited early:\n{self.logs()}")
            if self._ready():
                return
            time.sleep(0.1)
        raise TimeoutError(f"stack not ready after {timeout:.0f}s:\n{self.logs()}")

    def _ready(self) -> bool:
        return healthy(f"{self.rest_url}/v2/health/ready", self.ssl_context)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log_path})\n{p.log_tail()}" for p in self.processes)

    def stop(self) -> None:
        # The gateway first, so that it never reports a backend that went first;
        # the NATS server last, so that the workers can drain through it.
        def rank(proc: Process) -> int:
            return 0 if proc.name == "gateway" else 2 if proc.name.startswith("nats-server") else 1

        for proc in sorted(self.processes, key=rank):
            proc.stop()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            # A stack that failed to start still has processes to stop.
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def service_replies(servers: list[str], verb: str = "PING") -> list[dict[str, Any]]:
    """Every NATS worker's answer to `$SRV.<verb>.tandem-inference` (PING, INFO or STATS),
    asked through `servers` (URLs with the observer's credentials)."""

    async def ask() -> list[dict[str, Any]]:
        nc = await nats.connect(servers)
        try:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            await nc.publish(f"$SRV.{verb}.tandem-inference", b"", reply=inbox)
            replies: list[dict[str, Any]] = []
            while True:  # every worker answers; collect until the answers stop
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except nats.errors.TimeoutError:
                    return replies
                # With no worker subscribed yet, the server says so (an empty
                # no-responders status): that is no answer, not a bad one.
                if msg.data:
                    replies.append(json.loads(msg.data))
        finally:
            await nc.close()

    return asyncio.run(ask())


def grpc_serving(addr: str) -> bool:
    """Whether the worker at `addr` reports the OIP service SERVING."""
    with grpc.insecure_channel(addr) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=GRPC_HEALTH_SERVICE), timeout=1
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def healthy(url: str, context: ssl.SSLContext | None = None) -> bool:
    """Whether a health endpoint answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=1, context=context) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def wait_healthy(url: str, proc: Process, stack: Stack, timeout: float = 30.0) -> None:
    """Wait until `url` answers 200, or fail with the logs if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.running:
            raise RuntimeError(f"{proc.name} exited early:\n{stack.logs()}")
        if healthy(url):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f}s:\n{stack.logs()}")
