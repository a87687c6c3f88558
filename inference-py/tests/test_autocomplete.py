"""Bring your own model: an ONNX graph made here, served with no hand-written config."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import numpy as np
import pytest

from tandem_inference import codec
from tandem_inference.autocomplete import init_model
from tandem_inference.cli import main
from tandem_inference.errors import ModelConfigError
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.repository import ModelRepository
from tandem_inference.service import InferenceService

onnx = pytest.importorskip("onnx")
helper = onnx.helper

W = np.arange(6, dtype=np.float32).reshape(3, 2) / 10
B = np.array([1.0, -1.0], dtype=np.float32)


def affine_onnx(path: Path, batch: str | int = "batch") -> Path:
    """y = x @ W + b, x FP32 [batch, 3], y FP32 [batch, 2]; a symbolic batch by default."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "affine",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [batch, 2])],
        initializer=[onnx.numpy_helper.from_array(W, "W"), onnx.numpy_helper.from_array(B, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


async def infer(service: InferenceService, model: str, x: np.ndarray) -> np.ndarray:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="x", datatype="FP32", shape=x.shape)
    request.raw_input_contents.append(x.tobytes())
    response = await service.model_infer(request)
    out = response.outputs[0]
    return codec.decode_raw(
        out.name, out.datatype, tuple(out.shape), response.raw_output_contents[0]
    )


async def test_a_model_without_config_is_served_from_its_graph(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    affine_onnx(tmp_path / "affine" / "1" / "model.onnx")
    with caplog.at_level(logging.INFO, "tandem_inference.repository"):
        repository = ModelRepository(tmp_path)
    (record,) = [r for r in caplog.records if r.msg == "model config completed from the ONNX graph"]
    assert record.inputs == ["x FP32 [-1, 3]"]  # type: ignore[attr-defined]
    assert record.filled_in == [  # type: ignore[attr-defined]
        "name",
        "backend",
        "platform",
        "max_batch_size",
        "inputs",
        "outputs",
    ]
    repository.load()
    try:
        service = InferenceService(repository)
        x = np.array([[1, 2, 3], [0, 0, 0]], dtype=np.float32)
        np.testing.assert_allclose(await infer(service, "affine", x), x @ W + B, rtol=1e-6)
        config = (await service.model_config(pb.ModelConfigRequest(name="affine"))).config
        assert (config.backend, config.platform, config.max_batch_size) == (
            "onnxruntime",
            "onnxruntime_onnx",
            4,
        )
        assert [(t.name, list(t.dims)) for t in config.input] == [("x", [3])]
        assert [(t.name, list(t.dims)) for t in config.output] == [("y", [2])]
    finally:
        repository.close()


def test_a_partial_config_keeps_what_it_says(tmp_path: Path) -> None:
    affine_onnx(tmp_path / "affine" / "1" / "model.onnx")
    (tmp_path / "affine" / "config.toml").write_text(
        "max_batch_size = 16\n[dynamic_batching]\nmax_queue_size = 8\n"
    )
    config = ModelRepository(tmp_path).config("affine")
    assert (config.name, config.max_batch_size, config.dynamic_batching.max_queue_size) == (
        "affine",
        16,
        8,
    )
    assert [(t.name, t.datatype, t.shape) for t in config.inputs] == [("x", "FP32", (-1, 3))]


def test_a_fixed_shape_graph_does_not_batch(tmp_path: Path) -> None:
    affine_onnx(tmp_path / "fixed" / "1" / "model.onnx", batch=2)
    config = ModelRepository(tmp_path).config("fixed")
    assert config.max_batch_size == 0
    assert [t.shape for t in (*config.inputs, *config.outputs)] == [(2, 3), (2, 2)]


async def test_init_model_writes_a_complete_config(tmp_path: Path) -> None:
    source = affine_onnx(tmp_path / "elsewhere" / "affine.onnx")
    repository = tmp_path / "models"
    assert main(["init-model", "mine", "--from", str(source), "--repository", str(repository)]) == 0
    assert (repository / "mine" / "1" / "model.onnx").read_bytes() == source.read_bytes()
    written = tomllib.loads((repository / "mine" / "config.toml").read_text())
    assert written["name"] == "mine"
    assert written["max_batch_size"] == 4
    assert written["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert written["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]
    # Once written the config is complete: serving reads nothing from the graph.
    served = ModelRepository(repository)
    served.load()
    try:
        x = np.ones((3, 3), dtype=np.float32)
        np.testing.assert_allclose(
            await infer(InferenceService(served), "mine", x), x @ W + B, rtol=1e-6
        )
    finally:
        served.close()
    # Not over a model that is there, unless forced.
    assert main(["init-model", "mine", "--from", str(source), "--repository", str(repository)]) == 1


def test_init_model_refuses_a_name_that_is_not_a_token(tmp_path: Path) -> None:
    source = affine_onnx(tmp_path / "a.onnx")
    with pytest.raises(ModelConfigError, match="model name"):
        init_model(tmp_path, "a.b", source)
