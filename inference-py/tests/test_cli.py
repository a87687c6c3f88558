"""`tandem-inference` as a process: serve until SIGTERM, exit 0, log JSON lines."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tandem_inference.pb import grpc_service_pb2 as pb

from nats_server import MISSING, NATS_SERVER, NatsServer

COMMAND = [sys.executable, "-m", "tandem_inference"]


def clean_environ() -> dict[str, str]:
    """No stray TANDEM_* or OTEL_*; metrics on a free port, so that tests never collide."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "OTEL_"))}
    return {**env, "TANDEM_METRICS_ADDR": "127.0.0.1:0"}


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def wait_for_port(proc: subprocess.Popen[str], timeout: float = 30) -> int:
    """The port from the "grpc listening" log line (the server binds port 0)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        entry = json.loads(line)
        if entry["msg"] == "grpc listening":
            return int(entry["port"])
    raise AssertionError(f"no listening line; exit code {proc.poll()}")


def wait_serving(port: int, timeout: float = 30) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.05)
    raise AssertionError("never SERVING")


def test_serve_until_sigterm(model_repository: Path) -> None:
    proc = subprocess.Popen(
        [*COMMAND, "serve", "--model-repository", str(model_repository)],
        env={**clean_environ(), "TANDEM_GRPC_ADDR": "127.0.0.1:0"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_serving(wait_for_port(proc))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    entries = json_lines(err)
    assert [entry["msg"] for entry in entries][-3:] == ["ready", "stopping", "grpc stopped"]
    # Start-up's objects are out of the collector's reach (app.freeze_startup_objects).
    (ready,) = [entry for entry in entries if entry["msg"] == "ready"]
    assert ready["frozen"] > 10_000


async def nats_ready(url: str) -> bool:
    nc = await nats.connect(url)
    try:
        reply = await nc.request("oip.v2.server.ready", b"", timeout=10)
        return pb.ServerReadyResponse.FromString(reply.data).ready
    finally:
        await nc.close()


@pytest.mark.skipif(NATS_SERVER is None, reason=MISSING)
def test_serve_both_front_doors_until_sigterm(model_repository: Path) -> None:
    """`--serve grpc,nats`, started before its NATS server: it waits for the server,
    serves on both, and drains on SIGTERM."""
    server = NatsServer()
    argv = [*COMMAND, "serve", "--model-repository", str(model_repository)]
    argv += ["--serve", "grpc,nats", "--nats-url", server.url, "--grpc-addr", "127.0.0.1:0"]
    proc = subprocess.Popen(argv, env=clean_environ(), stderr=subprocess.PIPE, text=True)
    try:
        port = wait_for_port(proc)
        time.sleep(0.3)
        server.start()
        wait_serving(port)
        assert asyncio.run(nats_ready(server.url))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
        server.stop()
    assert proc.returncode == 0, err
    messages = [entry["msg"] for entry in json_lines(err)]
    assert "nats serving" in messages
    assert messages[-1] in {"grpc stopped", "nats stopped"}
    assert {"grpc stopped", "nats stopped"} <= set(messages[messages.index("stopping") :])


def test_unusable_repository_exits_1_with_a_json_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [*COMMAND, "serve", "--model-repository", str(tmp_path), "--grpc-addr", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        env=clean_environ(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    (entry,) = json_lines(result.stderr)
    assert entry["level"] == "error"
    assert entry["error"] == "ModelConfigError"
    assert entry["msg"] == (
        f"model repository {tmp_path} holds no <model>/config.toml nor <model>/1/model.onnx"
    )


def test_bad_flag_value_exits_2() -> None:
    result = subprocess.run(
        [*COMMAND, "serve", "--log-level", "loud"],
        capture_output=True,
        text=True,
        env=clean_environ(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--log-level='loud'" in result.stderr
