"""A real nats-server for the tests: `edge-go/bin/nats-server` or the one TANDEM_NATS_SERVER names.

`make setup` builds the binary; tests that need it and cannot find it are skipped
with MISSING as the reason, so that the skip is seen, not silent.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


def _find() -> Path | None:
    default = Path(__file__).resolve().parents[2] / "edge-go" / "bin" / "nats-server"
    path = Path(os.environ.get("TANDEM_NATS_SERVER", default))
    return path if path.is_file() else None


NATS_SERVER = _find()
MISSING = (
    "NO NATS SERVER (edge-go/bin/nats-server, or TANDEM_NATS_SERVER): the NATS worker is NOT "
    "tested. Build it with `cd edge-go && go build -o bin/nats-server "
    "github.com/nats-io/nats-server/v2` (`make setup` does)"
)


class NatsServer:
    """A nats-server process on a free port; stop() and start() again keep the port."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert NATS_SERVER is not None, MISSING
        argv = [str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(self.port)]
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert self._proc.poll() is None, "nats-server exited"
            time.sleep(0.02)
        raise TimeoutError(f"nats-server not listening on {self.port}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None
