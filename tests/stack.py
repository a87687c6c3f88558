"""Start and stop the real Tandem processes: the Python service and the Go gateway.

One harness serves the cross-language tests (on free ports), `make demo` and
`make run` (on the default ports of DESIGN.md). Every process writes its logs to
a file in the stack's work folder, so that a failing test can show them.

    python tests/stack.py run --transport grpc     # foreground until Ctrl-C
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
GATEWAY = ROOT / "edge-go" / "bin" / "gateway"
MODELS = ROOT / "models"
TRANSPORTS = ("grpc",)


def free_port() -> int:
    """A port that was free a moment ago: good enough on a loopback test box."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    """Every port the stack listens on; DESIGN.md's defaults or free ones."""

    http: int = 8000
    python_grpc: int = 50051

    @classmethod
    def free(cls) -> Ports:
        return cls(http=free_port(), python_grpc=free_port())


@dataclass
class Stack:
    """The Python service and the gateway, wired together over one transport."""

    transport: str = "grpc"
    ports: Ports = field(default_factory=Ports.free)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tandem-")))
    gateway_args: Sequence[str] = ()
    python_args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def python_grpc_addr(self) -> str:
        return f"127.0.0.1:{self.ports.python_grpc}"

    def _env(self) -> dict[str, str]:
        # Settings reach the processes as flags; drop stray TANDEM_* so that the
        # caller's shell cannot change what a test means.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        return env

    def _spawn(self, name: str, argv: list[str]) -> Process:
        proc = Process(name, argv, self.workdir / f"{name}.log", self._env()).start()
        self.processes.append(proc)
        return proc

    def start_python(self, name: str = "inference-py") -> Process:
        argv = [str(PYTHON), "-m", "tandem_inference", "serve"]
        argv += ["--model-repository", str(MODELS), "--grpc-addr", self.python_grpc_addr]
        return self._spawn(name, argv + list(self.python_args))

    def start_gateway(self) -> Process:
        argv = [str(GATEWAY), "--http-addr", f"127.0.0.1:{self.ports.http}"]
        argv += ["--transport", self.transport, "--inference-addr", self.python_grpc_addr]
        return self._spawn("gateway", argv + list(self.gateway_args))

    def start(self, timeout: float = 90.0) -> Self:
        self.start_python()
        self.start_gateway()
        self.wait_ready(timeout)
        return self

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
        url = f"{self.rest_url}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log_path})\n{p.log_tail()}" for p in self.processes)

    def stop(self) -> None:
        # The gateway first, so that it never reports a backend that went first.
        for proc in sorted(self.processes, key=lambda p: p.name != "gateway"):
            proc.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _run(transport: str) -> int:
    """`make run`: the stack on the default ports, in the foreground."""
    stack = Stack(transport=transport, ports=Ports())
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.start()
        print(f"Tandem is up ({transport}): OIP REST {stack.rest_url}/v2, logs in {stack.workdir}")
        print("Ctrl-C to stop.")
        while all(p.running for p in stack.processes):
            time.sleep(0.5)
        print(f"a process exited:\n{stack.logs()}", file=sys.stderr)
        return 1
    except (RuntimeError, TimeoutError) as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the stack in the foreground until Ctrl-C")
    run.add_argument("--transport", choices=TRANSPORTS, default="grpc")
    args = parser.parse_args(argv)
    return _run(args.transport)


if __name__ == "__main__":
    sys.exit(main())
