"""compose.yaml, the Kubernetes manifests and the Dockerfiles, checked against the real binaries.

There is no container engine on the test machine, so the images are validated
rather than run: every `TANDEM_*` setting a deployment file uses must be one the
binary it configures reports in its `--help`, every port it publishes must be
the README's for that process, and every path a Dockerfile copies must exist.

There is no Kubernetes either: each kustomization (the demo, the base, each
overlay) is rendered with the kustomize pinned in deploy/k8s/tools/go.mod, and
every object it makes is validated offline against Kubernetes' own schemas.
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from tandem_stack.stack import GATEWAY, NATS_PERMISSIONS, NATS_SERVER, PYTHON, ROOT

K8S_DIR = ROOT / "deploy" / "k8s"
# Every kustomization: deploy/k8s (the demo, with one NATS server), base/, overlays/*.
KUSTOMIZATIONS = sorted(
    str(k.parent.relative_to(ROOT))
    for k in K8S_DIR.rglob("kustomization.yaml")
    if "tools" not in k.parts
)
# The oldest Kubernetes the manifests promise to work on (the preStop sleep action
# is GA from 1.30); the schemas ship with kubernetes-validate, so this runs offline.
K8S_VERSION = "1.30.0"
SETTING = re.compile(r"TANDEM_[A-Z0-9_]+")
# The workloads every kustomization runs, by container name.
WORKLOADS = ("gateway", "inference")


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


def test_compose_publishes_on_loopback_only() -> None:
    """The containers reach one another on the compose network; the host sees every port
    (the gateway's, NATS, the UIs) on its loopback only, so nothing is open to the network
    by default (the gateway's edge has no API keys unless .env sets them)."""
    services = compose()["services"]
    published = [(n, p) for n, s in services.items() for p in s.get("ports", [])]
    assert {n for n, _ in published} >= {"gateway", "nats", "jaeger", "grafana", "locust"}
    for name, port in published:
        assert port.startswith("127.0.0.1:"), f"{name}: {port}"


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


@cache
def render(kustomization: str) -> tuple[dict[str, Any], ...]:
    """The objects a kustomization makes, rendered by the pinned kustomize (`go tool`:
    no kubectl needed; the first run builds it, after that it is cached)."""
    out = subprocess.run(
        ["go", "tool", "kustomize", "build", str(ROOT / kustomization)],
        cwd=K8S_DIR / "tools",
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, f"kustomize build {kustomization}:\n{out.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def objects(kustomization: str, kind: str) -> dict[str, dict[str, Any]]:
    """The rendered objects of one kind, by name."""
    return {o["metadata"]["name"]: o for o in render(kustomization) if o["kind"] == kind}


def test_every_kustomization_is_found() -> None:
    """The list below parametrizes the tests: an overlay missing from it is untested."""
    assert KUSTOMIZATIONS == [
        "deploy/k8s",
        "deploy/k8s/base",
        "deploy/k8s/overlays/grpc-hop",
        "deploy/k8s/overlays/otlp",
    ]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_k8s_objects_validate(kustomization: str) -> None:
    """Every rendered object against Kubernetes' schemas, strictly: a misspelt or
    misplaced field fails here rather than being dropped by the API server."""
    docs = render(kustomization)
    assert docs
    failures = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {err.message} at {err.path}")
    assert not failures, "\n".join(failures)
    # One namespace for everything namespaced, so that overlays cannot scatter objects.
    spaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    assert spaces == {"tandem"}, spaces


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_k8s_settings_exist(kustomization: str) -> None:
    deployments = objects(kustomization, "Deployment")
    for name in WORKLOADS:
        (container,) = [
            c
            for c in deployments[name]["spec"]["template"]["spec"]["containers"]
            if c["name"] == name
        ]
        used = {e["name"] for e in container.get("env", []) if e["name"].startswith("TANDEM_")}
        assert used, f"{kustomization}: {name} has no settings"
        assert used <= settings(name), (kustomization, used - settings(name))


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
@pytest.mark.parametrize("workload", WORKLOADS)
def test_k8s_workloads_are_locked_down(kustomization: str, workload: str) -> None:
    """Non-root, read-only, no privilege, no capabilities, the runtime's seccomp profile;
    probes the kubelet acts on; requests the autoscaler divides by, limits that bound."""
    pod = objects(kustomization, "Deployment")[workload]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        assert "add" not in sc["capabilities"], c["name"]
        assert {"readinessProbe", "livenessProbe"} <= c.keys(), c["name"]
        assert {"cpu", "memory"} <= c["resources"]["requests"].keys(), c["name"]
        assert {"cpu", "memory"} <= c["resources"]["limits"].keys(), c["name"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
@pytest.mark.parametrize("workload", WORKLOADS)
def test_k8s_autoscaling_and_budgets_target_the_workloads(
    kustomization: str, workload: str
) -> None:
    """Each workload scales on its own (an HPA on its CPU, which needs a CPU request) and
    keeps pods through drains (a PDB whose selector picks its pods and no others)."""
    deployments = objects(kustomization, "Deployment")
    deployment = deployments[workload]
    # The HPA owns the count: a fixed replicas would be reset by each apply.
    assert "replicas" not in deployment["spec"]
    (hpa,) = [
        h
        for h in objects(kustomization, "HorizontalPodAutoscaler").values()
        if h["spec"]["scaleTargetRef"]["name"] == workload
    ]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": workload,
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (cpu,) = [m["resource"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert cpu["name"] == "cpu"

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    chosen = [
        name
        for name, d in deployments.items()
        for pdb in objects(kustomization, "PodDisruptionBudget").values()
        if pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        and pdb["spec"]["selector"]["matchLabels"].items()
        <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert chosen == [workload], chosen


def test_grpc_hop_dials_every_worker() -> None:
    """The gRPC overlay names the headless Service by a dns:/// target, so that the
    client sees every worker's address; and it needs no NATS credentials."""
    k = "deploy/k8s/overlays/grpc-hop"
    (gateway,) = objects(k, "Deployment")["gateway"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    assert env["TANDEM_TRANSPORT"] == "grpc"
    target = env["TANDEM_INFERENCE_ADDR"]
    assert target is not None
    m = re.fullmatch(r"dns:///([a-z0-9-]+):(\d+)", target)
    assert m, target
    service = objects(k, "Service")[m.group(1)]
    assert service["spec"]["clusterIP"] == "None"
    assert int(m.group(2)) in {p["port"] for p in service["spec"]["ports"]}
    for d in objects(k, "Deployment").values():
        for c in d["spec"]["template"]["spec"]["containers"]:
            assert not [e for e in c.get("env", []) if "NATS" in e["name"]], c["name"]


def test_otlp_overlay_sets_the_endpoint_for_both_sides() -> None:
    k = "deploy/k8s/overlays/otlp"
    (config,) = [n for n in objects(k, "ConfigMap") if n.startswith("tandem-otel")]
    assert objects(k, "ConfigMap")[config]["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    for name in WORKLOADS:
        (c,) = objects(k, "Deployment")[name]["spec"]["template"]["spec"]["containers"]
        assert {"configMapRef": {"name": config}} in c["envFrom"], name


def nats_values() -> dict[str, Any]:
    return dict(yaml.safe_load((K8S_DIR / "nats-values.yaml").read_text()))


def test_nats_chart_values_have_nats_conf_users() -> None:
    """The Helm chart's cluster has the users and permissions of nats.conf and of
    tandem_stack (one list of roles), each password from the Secret tandem-nats."""
    values = nats_values()
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["monitor"]["enabled"] is True
    users = values["config"]["merge"]["authorization"]["users"]
    assert [u["user"] for u in users] == list(NATS_PERMISSIONS)
    for u in users:
        # The stack's permissions are written in nats-server's config syntax; as JSON
        # they read the same once the keys are quoted.
        want = json.loads(re.sub(r"(\w+):", r'"\1":', NATS_PERMISSIONS[u["user"]]))
        assert u["permissions"] == want, u["user"]
        var = f"NATS_{u['user'].upper()}_PASSWORD"
        assert u["password"] == f"<< ${var} >>"
        ref = values["container"]["env"][var]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "tandem-nats", "key": f"{u['user']}-password"}
    assert "no_auth_user" not in (K8S_DIR / "nats-values.yaml").read_text()


def test_nats_chart_config_parses(tmp_path: Path) -> None:
    """The config the chart writes from these values (its merge block, as nats-server
    reads JSON; `<< $X >>` written as the bare variable) is valid for the real server."""
    merge = nats_values()["config"]["merge"]
    text = re.sub(r'"<< (\$\w+) >>"', r"\1", json.dumps(merge, indent=2))
    conf = tmp_path / "nats.conf"
    conf.write_text(f"port: 4222\n{text[1:-1]}\n")
    env = {f"NATS_{u}_PASSWORD": "x" for u in ("GATEWAY", "WORKER", "OBSERVER")}
    out = subprocess.run(
        [str(NATS_SERVER), "-c", str(conf), "-t"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr + conf.read_text()


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
