"""compose.yaml, the Kubernetes manifests and the Dockerfiles, checked against the real binaries.

There is no container engine on the test machine, so the images are validated
rather than run: every `TANDEM_*` setting a deployment file uses must be one the
binary it configures reports in its `--help`, every port it publishes must be
the README's for that process, and every path a Dockerfile copies must exist.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from tandem_stack.stack import GATEWAY, NATS_SERVER, PYTHON, ROOT

K8S = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
SETTING = re.compile(r"TANDEM_[A-Z0-9_]+")


@cache
def settings(binary: str) -> frozenset[str]:
    """The TANDEM_* settings a binary documents in its --help."""
    argv = {
        "gateway": [str(GATEWAY), "--help"],
        "inference": [str(PYTHON), "-m", "tandem_inference", "serve", "--help"],
    }[binary]
    out = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    found = frozenset(SETTING.findall(out.stdout + out.stderr))
    assert found, f"{binary} --help names no settings:\n{out.stdout}{out.stderr}"
    return found


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


@pytest.mark.parametrize("service", ["gateway", "inference"])
def test_compose_settings_exist(service: str) -> None:
    env = compose()["services"][service]["environment"]
    used = {k for k in env if k.startswith("TANDEM_")}
    assert used
    assert used <= settings(service), used - settings(service)


def test_compose_ports_are_the_readmes() -> None:
    published = {p.split(":")[-2] for p in compose()["services"]["gateway"]["ports"]}
    assert published == {"8000", "8001", "9000"}


def test_compose_keeps_admin_and_nats_on_loopback() -> None:
    """Metrics and NATS are for the compose network; the host sees them on loopback only."""
    services = compose()["services"]
    for port in services["gateway"]["ports"]:
        if port.endswith(":9000"):
            assert port.startswith("127.0.0.1:"), port
    assert all(p.startswith("127.0.0.1:") for p in services["nats"]["ports"])


def test_compose_has_no_secrets() -> None:
    """Passwords come from .env by interpolation, never from the file itself."""
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key or "API_KEYS" in key:
                assert str(value).startswith("${"), f"{name}: {key} is written in compose.yaml"


def test_nats_config_is_valid_and_refuses_anonymous() -> None:
    """The compose/k8s NATS config parses with the real nats-server and has no open door."""
    conf = ROOT / "deploy" / "k8s" / "nats.conf"
    env = {f"NATS_{u}_PASSWORD": "x" for u in ("GATEWAY", "WORKER", "OBSERVER")}
    out = subprocess.run(
        [str(NATS_SERVER), "-c", str(conf), "-t"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "no_auth_user" not in conf.read_text()


@pytest.mark.parametrize("path", K8S, ids=[p.name for p in K8S])
def test_k8s_settings_exist(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            used = {e["name"] for e in container.get("env", []) if e["name"].startswith("TANDEM_")}
            if container["name"] in ("gateway", "inference"):
                assert used <= settings(container["name"]), used - settings(container["name"])


@pytest.mark.parametrize(
    ("dockerfile", "context"),
    [("edge-go/Dockerfile", "edge-go"), ("inference-py/Dockerfile", ".")],
)
def test_dockerfile_copies_exist(dockerfile: str, context: str) -> None:
    builds = {
        s["build"]["context"] if isinstance(s["build"], dict) else s["build"]
        for s in compose()["services"].values()
        if "build" in s
    }
    assert context in builds
    for line in (ROOT / dockerfile).read_text().splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            for src in line.split()[1:-1]:
                assert (ROOT / context / src).exists(), f"{dockerfile}: {src}"
