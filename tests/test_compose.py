"""compose.yaml, its configs (deploy/compose/) and the Dockerfiles, checked without an engine.

`make test` runs no containers: compose.yaml is validated against the Compose
specification's schema (check-jsonschema ships it), every file and build context it
names must exist, every service must be hardened and checked for health, the
Dockerfiles are linted with hadolint, and the Grafana dashboard's metrics are read
back from a live /metrics of the real gateway and Python service. `make test-compose`
(deploy/compose/test-compose.sh) runs the stack on a Docker engine.
test_deploy.py checks the TANDEM_* settings, the published ports and the secrets.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from tandem_stack.stack import ROOT, Stack

from conftest import MODEL_NAMES, infer_body
from test_deploy import compose

COMPOSE_DIR = ROOT / "deploy" / "compose"
BIN = Path(sys.executable).parent
# Services whose image has no shell and no client to check itself with: the collector's
# (a static binary alone). Its health_check extension serves :13133 for an orchestrator
# that probes from outside, and Prometheus scrapes it.
NO_HEALTHCHECK = {"otel-collector"}
DASHBOARD = COMPOSE_DIR / "grafana-dashboard-tandem.json"


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def dockerfile_stage(service: dict[str, Any]) -> list[str]:
    """The lines of the Dockerfile stage a built service runs (its target, or the last)."""
    build = service["build"]
    path = ROOT / build["context"] / build.get("dockerfile", "Dockerfile")
    stages: list[tuple[str, list[str]]] = []
    for line in path.read_text().splitlines():
        if m := re.match(r"FROM \S+(?: AS (\S+))?", line):
            stages.append((m.group(1) or "", []))
        if stages:
            stages[-1][1].append(line)
    target = build.get("target")
    if target is None:
        return stages[-1][1]
    (lines,) = [lines for name, lines in stages if name == target]
    return lines


def test_compose_validates_against_the_compose_spec() -> None:
    out = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_referenced_file_and_context_exists() -> None:
    for name, s in services().items():
        if "build" in s:
            context = ROOT / s["build"]["context"]
            assert context.is_dir(), name
            assert (context / s["build"].get("dockerfile", "Dockerfile")).is_file(), name
            assert (context / ".dockerignore").is_file(), f"{name}: no .dockerignore"
        for volume in s.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"
                assert target.startswith("/"), f"{name}: {volume}"


def test_every_service_checks_its_health() -> None:
    """A healthcheck of the service's own, or the HEALTHCHECK of the image built for it;
    `depends_on` waits for health wherever there is one to wait for."""
    all_services = services()
    healthy = set()
    for name, s in all_services.items():
        check = s.get("healthcheck", {})
        if "test" in check:
            assert check["test"][0] == "CMD", name  # exec form: images may have no shell
            healthy.add(name)
        elif "build" in s:
            stage = dockerfile_stage(s)
            assert [line for line in stage if line.startswith("HEALTHCHECK")], name
            healthy.add(name)
        else:
            assert name in NO_HEALTHCHECK, f"{name} has no healthcheck"
    for name, s in all_services.items():
        deps = s.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on without conditions"
        for dep, cond in deps.items():
            want = "service_healthy" if dep in healthy else "service_started"
            assert cond == {"condition": want}, (name, dep, cond)


def test_the_collector_without_a_healthcheck_serves_one() -> None:
    collector = yaml.safe_load((COMPOSE_DIR / "otel-collector.yaml").read_text())
    assert "health_check" in collector["service"]["extensions"]
    assert collector["extensions"]["health_check"]["endpoint"].endswith(":13133")


@pytest.mark.parametrize("name", sorted(services()))
def test_every_service_is_hardened_and_limited(name: str) -> None:
    s = services()[name]
    assert s["read_only"] is True
    assert s["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in s["security_opt"]
    assert {"cpus", "memory"} <= s["deploy"]["resources"]["limits"].keys()
    assert s.get("user", "") not in {"root", "0", "0:0"}
    if "build" in s:
        users = [line.split()[1] for line in dockerfile_stage(s) if line.startswith("USER ")]
        assert users, name
        assert users[-1].split(":")[0] not in {"root", "0"}, users
    elif name == "nats":
        assert s["user"] == "65534:65534"  # the image's default is root


def test_nats_is_the_release_the_code_is_tested_against() -> None:
    go_mod = (ROOT / "edge-go" / "go.mod").read_text()
    (version,) = re.findall(r"github.com/nats-io/nats-server/v2 v(\S+)", go_mod)
    assert services()["nats"]["image"] == f"nats:{version}-alpine"


def test_observability_is_a_profile_and_the_core_is_not() -> None:
    """NATS, the workers and the gateway run whatever the profiles; the rest is opt-in,
    and .env.example (which `make up` follows) opts in to all of it."""
    profiles = {n: s.get("profiles", []) for n, s in services().items()}
    assert {n for n, p in profiles.items() if not p} == {"nats", "inference", "gateway"}
    named = {p for ps in profiles.values() for p in ps}
    assert named == {"observability", "load"}
    env = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(env["COMPOSE_PROFILES"].split(",")) == named
    makefile = (ROOT / "Makefile").read_text()
    assert f'print("COMPOSE_PROFILES={env["COMPOSE_PROFILES"]}")' in makefile


def test_env_example_names_every_required_variable() -> None:
    text = (ROOT / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    env = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert required
    assert required <= env, required - env
    makefile = (ROOT / "Makefile").read_text()
    for var in required:
        assert var.removesuffix("_PASSWORD") in makefile, f"make's .env does not write {var}"


def test_workers_scale_with_no_other_change() -> None:
    """`--scale inference=4`: nothing in a worker is unique to one (no name, no host port),
    the gateway reaches them through NATS, and Prometheus finds them by DNS."""
    worker = services()["inference"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["environment"]["TANDEM_SERVE"].split(",")[-1] == "nats"
    assert worker["deploy"]["replicas"] == 2
    prom = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "tandem-inference"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["inference"]
    assert str(sd["port"]) == worker["environment"]["TANDEM_METRICS_ADDR"].rsplit(":")[-1]


def port(addr: str) -> str:
    return addr.rsplit(":", 1)[-1].strip("/")


def test_addresses_agree_across_the_configs() -> None:
    """Each address one service is given for another is one that service listens on."""
    s = services()
    gateway, worker = s["gateway"]["environment"], s["inference"]["environment"]
    prom = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    targets = {
        j["job_name"]: t for j in prom["scrape_configs"] for t in j.get("static_configs", [])
    }
    assert targets["tandem-gateway"]["targets"] == [f"gateway:{port(gateway['TANDEM_ADMIN_ADDR'])}"]
    assert targets["nats"]["targets"] == ["nats-exporter:7777"]
    assert "-port=7777" in s["nats-exporter"]["command"]
    collector = yaml.safe_load((COMPOSE_DIR / "otel-collector.yaml").read_text())
    grpc_receiver = collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    for env in (gateway, worker):
        endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert endpoint == f"http://otel-collector:{port(grpc_receiver)}"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    telemetry = collector["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]
    assert targets["otel-collector"]["targets"] == [
        f"otel-collector:{telemetry['prometheus']['port']}"
    ]
    locust = s["locust"]["environment"]
    assert (
        locust["TANDEM_BENCH_GATEWAY_URL"] == f"http://gateway:{port(gateway['TANDEM_HTTP_ADDR'])}"
    )
    assert locust["TANDEM_BENCH_GATEWAY_GRPC"] == f"gateway:{port(gateway['TANDEM_GRPC_ADDR'])}"
    assert locust["TANDEM_BENCH_PYTHON_GRPC"] == f"inference:{port(worker['TANDEM_GRPC_ADDR'])}"
    locustfile = (ROOT / "bench" / "locustfile.py").read_text()
    for var in locust:
        assert var in locustfile, f"the locustfile reads no {var}"
    for user in ("GatewayRestJson", "GatewayRestBinary", "GatewayGrpc"):
        assert user in s["locust"]["command"]
        assert f"class {user}(" in locustfile
    assert s["gateway"]["environment"]["TANDEM_DEMO_TRACE_URL"].startswith(
        f"http://localhost:{port(s['jaeger']['ports'][0].rsplit(':', 1)[0])}/"
    )


def test_collector_pipeline_is_complete() -> None:
    """Every component a pipeline names is configured and every configured one is used;
    traces leave for Jaeger's OTLP port on the compose network; tail sampling keeps
    errors and slow traces and a share of the rest set from the environment."""
    c = yaml.safe_load((COMPOSE_DIR / "otel-collector.yaml").read_text())
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for pipeline in c["service"]["pipelines"].values():
        for kind in used:
            used[kind] |= set(pipeline.get(kind, []))
    for kind, names in used.items():
        assert names == set(c[kind]), kind
    assert set(c["service"]["extensions"]) == set(c["extensions"])
    assert c["service"]["pipelines"]["traces"]["processors"][0] == "memory_limiter"
    assert c["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    policies = {p["type"]: p for p in c["processors"]["tail_sampling"]["policies"]}
    assert policies.keys() == {"status_code", "latency", "probabilistic"}
    percent = policies["probabilistic"]["probabilistic"]["sampling_percentage"]
    assert percent == "${env:TANDEM_TRACE_SAMPLE_PERCENT}"
    assert "TANDEM_TRACE_SAMPLE_PERCENT" in services()["otel-collector"]["environment"]


def test_grafana_is_provisioned() -> None:
    """The dashboard's datasource exists, Prometheus' exemplars point at Jaeger's uid, and
    the dashboard provider reads the folder the dashboard is mounted in."""
    grafana = services()["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    ds = yaml.safe_load((COMPOSE_DIR / "grafana-datasources.yaml").read_text())["datasources"]
    by_uid = {d["uid"]: d for d in ds}
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    assert by_uid["jaeger"]["url"] == f"http://jaeger:{port(services()['jaeger']['ports'][0])}"
    (dest,) = by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert dest == {"name": "trace_id", "datasourceUid": "jaeger"}
    providers = yaml.safe_load((COMPOSE_DIR / "grafana-dashboards.yaml").read_text())["providers"]
    (provider,) = providers
    target = mounts["./deploy/compose/grafana-dashboard-tandem.json"]
    assert Path(target).parent == Path(provider["options"]["path"])
    dashboard = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} <= by_uid.keys()


def exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p["targets"]]


def test_dashboard_has_the_panels_the_issue_names() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    by_title = {p["title"]: p for p in panels}
    assert len(by_title) == len(panels)
    text = "\n".join(exprs())
    assert "sum by (model, transport) (rate(tandem_gateway_requests_total" in text
    for q in ("0.5", "0.99"):
        assert f"histogram_quantile({q}, sum by (le, model, transport)" in text
    latency = by_title["Latency p50 / p99 by model and transport"]
    assert all(t["exemplar"] is True for t in latency["targets"])
    assert "tandem_inference_batch_size" in text
    assert "tandem_inference_queue_depth" in text
    assert "sum by (model, code)" in text


def metric_names(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M)}


@cache
def live_metrics() -> frozenset[str]:
    """Every series name the real gateway and Python service export once every label set
    has been used: infer calls to both models, a bad request, an unknown model, a call
    without the API key (refused), and one after the worker stopped (a hop error)."""
    key = {"Authorization": "Bearer dashboard-key"}
    stack = Stack(gateway_args=["--api-keys", "dashboard-key"])
    with stack as s, httpx.Client(base_url=s.rest_url, timeout=30, headers=key) as c:
        for model in MODEL_NAMES:
            r = c.post(f"/v2/models/{model}/infer", json=infer_body(np.zeros(64)))
            assert r.status_code == 200, r.text
        assert c.post("/v2/models/digits/infer", json={"inputs": []}).status_code == 400
        assert c.post("/v2/models/nope/infer", json=infer_body(np.zeros(64))).status_code == 404
        anonymous = httpx.post(f"{s.rest_url}/v2/models/digits/infer", json={}, timeout=30)
        assert anonymous.status_code == 401
        python = httpx.get(f"http://{s.python_metrics_addr}/metrics", timeout=10).text
        s.process("inference-py").stop()
        r = c.post("/v2/models/digits/infer", json=infer_body(np.zeros(64)))
        assert r.status_code == 503, r.text
        gateway = httpx.get(f"http://{s.admin_addr}/metrics", timeout=10).text
    return frozenset(metric_names(gateway) | metric_names(python))


@pytest.fixture(scope="module")
def exported() -> frozenset[str]:
    return live_metrics()


def test_dashboard_metrics_are_exported(exported: frozenset[str]) -> None:
    named = {m for e in exprs() for m in re.findall(r"\b(tandem_[a-z0-9_]+)", e)}
    assert named
    assert named <= exported, sorted(named - exported)


@pytest.mark.parametrize(
    "dockerfile", ["edge-go/Dockerfile", "inference-py/Dockerfile"], ids=["gateway", "inference"]
)
def test_dockerfile_is_hadolint_clean(dockerfile: str) -> None:
    out = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(ROOT / dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert not out.stdout.strip(), out.stdout


def test_dockerignore_keeps_the_venv_and_built_models_out() -> None:
    """The inference build context is the repository root: it sends an allow-list, so
    neither .venv/ nor models built here nor .env can reach the daemon."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "**"
    allowed = [r[1:] for r in rules if r.startswith("!")]
    assert "models/" in allowed
    assert "models/*/[0-9]*/" in rules  # built here: the image trains its own
    assert not [a for a in allowed if a.startswith((".venv", ".env", "edge-go"))]
    copies = [
        token
        for line in (ROOT / "inference-py" / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY") and "--from=" not in line
        for token in line.split()[1:-1]
    ]
    for src in copies:
        assert any(a.startswith(src) or src.startswith(a.split("*")[0]) for a in allowed), src
    gateway_rules = (ROOT / "edge-go" / ".dockerignore").read_text().splitlines()
    assert "bin/" in gateway_rules
