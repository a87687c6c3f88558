"""deploy/kserve: the manifests parse, and the runtime's args are real `serve` flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tandem_inference.cli import _parser
from tandem_inference.settings import Settings

yaml = pytest.importorskip("yaml")

KSERVE = Path(__file__).resolve().parents[2] / "deploy" / "kserve"


def manifest(name: str) -> dict[str, Any]:
    (document,) = yaml.safe_load_all((KSERVE / name).read_text())
    assert isinstance(document, dict)
    return document


def test_the_runtime_args_are_serve_flags_with_usable_values() -> None:
    runtime = manifest("servingruntime.yaml")
    assert (runtime["apiVersion"], runtime["kind"]) == (
        "serving.kserve.io/v1alpha1",
        "ServingRuntime",
    )
    (container,) = runtime["spec"]["containers"]
    # The image's entrypoint is `tandem-inference serve`: args are its flags.
    args = _parser().parse_args(["serve", *container["args"]])
    settings = Settings.from_args(args, environ={})
    assert settings.model_repository == Path("/mnt/models")
    port = int(settings.grpc_addr.rpartition(":")[2])
    assert settings.grpc_addr.startswith("0.0.0.0:")
    assert {"name": "h2c", "containerPort": port, "protocol": "TCP"} in container["ports"]
    assert container["readinessProbe"]["grpc"]["port"] == port
    assert (
        runtime["spec"]["annotations"]["prometheus.kserve.io/port"]
        == (settings.metrics_addr.rpartition(":")[2])
    )
    assert runtime["spec"]["protocolVersions"] == ["grpc-v2"]


def test_the_inference_service_uses_the_runtime() -> None:
    runtime = manifest("servingruntime.yaml")
    service = manifest("inferenceservice.yaml")
    assert (service["apiVersion"], service["kind"]) == (
        "serving.kserve.io/v1beta1",
        "InferenceService",
    )
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert model["modelFormat"]["name"] in {
        f["name"] for f in runtime["spec"]["supportedModelFormats"]
    }
