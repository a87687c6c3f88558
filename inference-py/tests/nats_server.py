"""A real nats-server for the tests: `edge-go/bin/nats-server` or the one TANDEM_NATS_SERVER names.

`make setup` builds the binary; tests that need it and cannot find it are skipped
with MISSING as the reason, so that the skip is seen, not silent.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import tempfile
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


# The users of CONTRACT.md's NATS auth, as `make run`, the tests and compose set them up.
PASSWORDS = {"gateway": "gateway-pw", "worker": "worker-pw", "observer": "observer-pw"}
AUTH_CONFIG = """
authorization {
  users = [
    {user: gateway, password: "gateway-pw",
     permissions: {publish: ["oip.v2.>"], subscribe: ["_INBOX.>"]}}
    {user: worker, password: "worker-pw",
     permissions: {subscribe: ["oip.v2.>", "$SRV.>"], publish: ["$SRV.>", "_INBOX.>"],
                   allow_responses: true}}
    {user: observer, password: "observer-pw",
     permissions: {publish: ["$SRV.>"], subscribe: ["_INBOX.>"]}}
  ]
}
"""


def _listener_port() -> int:
    """A free port below Linux's ephemeral range (32768 up): a bind(0) port is
    ephemeral, and an outgoing connection may take it before nats-server binds it,
    or while it is stopped between start()s."""
    for port in random.sample(range(10000, 32768), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 10000-32767")


class NatsServer:
    """A nats-server process on a free port; stop() and start() again keep the port.

    `config`: the text of a nats-server configuration file (AUTH_CONFIG, say)."""

    def __init__(self, config: str = "") -> None:
        self.port = _listener_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._config = config
        self._proc: subprocess.Popen[bytes] | None = None

    def url_for(self, user: str) -> str:
        return f"nats://{user}:{PASSWORDS[user]}@127.0.0.1:{self.port}"

    def start(self) -> None:
        assert NATS_SERVER is not None, MISSING
        argv = [str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(self.port)]
        if self._config:
            with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
                f.write(self._config)
            argv += ["-c", f.name]
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
