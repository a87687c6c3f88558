"""Bring your own model: an ONNX graph made here, dropped into a repository with no
config.toml, served through the gateway on both hops with the config the service
infers from the graph, as Triton's auto-complete does."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from tandem_stack.stack import MODELS, PYTHON, ROOT, TRANSPORTS, Stack

W = np.arange(6, dtype=np.float32).reshape(3, 2) / 10
B = np.array([1.0, -1.0], dtype=np.float32)


def affine_onnx(path: Path) -> Path:
    """y = x @ W + b: x FP32 [batch, 3], y FP32 [batch, 2], with a symbolic batch."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "affine",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module", params=TRANSPORTS)
def byom(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A repository with digits and two models of ours: `affine` as a bare ONNX file,
    `affine-init` written by `tandem-inference init-model`."""
    repository = tmp_path_factory.mktemp("models")
    shutil.copytree(MODELS / "digits", repository / "digits")
    affine_onnx(repository / "affine" / "1" / "model.onnx")
    source = affine_onnx(tmp_path_factory.mktemp("onnx") / "affine.onnx")
    init = [str(PYTHON), "-m", "tandem_inference", "init-model", "affine-init"]
    init += ["--from", str(source), "--repository", str(repository)]
    subprocess.run(init, check=True, cwd=ROOT, capture_output=True)
    assert (repository / "affine-init" / "config.toml").is_file()
    with Stack(transport=request.param, models=repository) as s:
        yield s


@pytest.mark.parametrize("model", ["affine", "affine-init"])
def test_served_with_the_config_from_its_graph(byom: Stack, model: str) -> None:
    with httpx.Client(base_url=byom.rest_url, timeout=30) as c:
        meta = c.get(f"/v2/models/{model}").json()
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
        assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]
        config = c.get(f"/v2/models/{model}/config").json()
        assert config["platform"] == "onnxruntime_onnx"
        assert [i["dims"] for i in config["input"]] == [[3]]

        x = np.array([[1, 2, 3], [0.5, -1, 4]], dtype=np.float32)
        body = {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": x.ravel().tolist()}
            ]
        }
        r = c.post(f"/v2/models/{model}/infer", json=body)
        assert r.status_code == 200, r.text
        (out,) = r.json()["outputs"]
        got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
        np.testing.assert_allclose(got, x @ W + B, rtol=1e-6)

        wrong = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}]}
        bad = c.post(f"/v2/models/{model}/infer", json=wrong)
        assert bad.status_code == 400
        assert "shape" in bad.json()["error"]
