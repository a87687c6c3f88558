from __future__ import annotations

from pathlib import Path

import pytest

from tandem_inference.errors import ModelConfigError
from tandem_inference.model_config import DynamicBatching, ModelConfig, TensorSpec, read_config

VALID = """
name = "m"
backend = "onnxruntime"
platform = "onnxruntime_onnx"
max_batch_size = 8

[[inputs]]
name = "x"
datatype = "FP32"
shape = [-1, 3]

[[outputs]]
name = "y"
datatype = "INT64"
shape = [-1]

[options]
intra_op_num_threads = 2
"""


def write(tmp_path: Path, text: str, folder: str = "m") -> Path:
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "config.toml").write_text(text)
    return tmp_path / folder


def test_reads_a_valid_config(tmp_path: Path) -> None:
    assert read_config(write(tmp_path, VALID)) == ModelConfig(
        name="m",
        backend="onnxruntime",
        platform="onnxruntime_onnx",
        max_batch_size=8,
        inputs=(TensorSpec("x", "FP32", (-1, 3)),),
        outputs=(TensorSpec("y", "INT64", (-1,)),),
        options={"intra_op_num_threads": 2},
    )


@pytest.mark.parametrize("model", ["digits", "digits-torch"])
def test_the_committed_configs(committed_models: Path, model: str) -> None:
    config = read_config(committed_models / model)
    assert config.name == model
    assert config.max_batch_size == 128
    assert config.inputs == (TensorSpec("pixels", "FP32", (-1, 64)),)
    assert config.outputs == (TensorSpec("probabilities", "FP32", (-1, 10)),)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('name = "m"', 'name = "other"'), 'name "other" differs from the folder\'s name "m"'),
        (('platform = "onnxruntime_onnx"', ""), "platform must be a non-empty string"),
        (("max_batch_size = 8", "max_batch_size = -1"), "max_batch_size must be an integer >= 0"),
        (('datatype = "FP32"', 'datatype = "FP128"'), 'inputs "x": unsupported datatype "FP128"'),
        (("shape = [-1, 3]", "shape = [-1, 0]"), 'inputs "x": shape must list dimensions > 0'),
        (("shape = [-1, 3]", "shape = [4, 3]"), 'inputs "x": with max_batch_size > 0 the first'),
        (('name = "y"', 'name = "y"\ndims = 1'), "outputs \"y\": unknown keys ['dims']"),
        (("[options]", "[option]"), "unknown keys ['option']"),
        (("[[outputs]]", "[outputs]"), "at least one [[outputs]] is required"),
        (
            ("[options]", "[dynamic_batching]\nmax_queue_delay_us = -1\n[options]"),
            "dynamic_batching.max_queue_delay_us must be an integer >= 0",
        ),
        (
            ("[options]", "[dynamic_batching]\nmax_queue_size = 0\n[options]"),
            "dynamic_batching.max_queue_size must be an integer > 0",
        ),
        (
            ("[options]", "[dynamic_batching]\npreferred_batch_size = [4, 9]\n[options]"),
            "preferred_batch_size must list batch sizes from 1 to max_batch_size (8)",
        ),
        (
            ("[options]", "[dynamic_batching]\nmax_queue_delay = 5\n[options]"),
            "dynamic_batching: unknown keys ['max_queue_delay']",
        ),
    ],
)
def test_invalid_configs(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    folder = write(tmp_path, VALID.replace(*change, 1))
    with pytest.raises(ModelConfigError) as caught:
        read_config(folder)
    assert str(folder / "config.toml") in caught.value.message
    assert message in caught.value.message


def test_dynamic_batching(tmp_path: Path) -> None:
    assert read_config(write(tmp_path, VALID)).dynamic_batching == DynamicBatching()
    table = "[dynamic_batching]\nmax_queue_delay_us = 100\npreferred_batch_size = [8, 4, 4]\n"
    config = read_config(
        write(
            tmp_path, VALID.replace("[options]", table + "[options]").replace('"m"', '"n"', 1), "n"
        )
    )
    assert config.dynamic_batching == DynamicBatching(
        max_queue_delay_us=100, preferred_batch_size=(4, 8), max_queue_size=1024
    )


def test_unbatched_models_may_fix_every_dimension(tmp_path: Path) -> None:
    text = VALID.replace("max_batch_size = 8", "max_batch_size = 0").replace("[-1, 3]", "[4, 3]")
    config = read_config(write(tmp_path, text))
    assert not config.batched
    assert config.inputs[0].shape == (4, 3)


def test_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match=r"config\.toml"):
        read_config(write(tmp_path, "name = "))


def test_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match=r"config\.toml"):
        read_config(tmp_path)
