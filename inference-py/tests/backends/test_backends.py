"""Both backends on the held-out digits: accurate, and in agreement with each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tandem_inference.backends import backend_class
from tandem_inference.errors import ModelConfigError
from tandem_inference.model_config import ModelConfig, read_config
from tandem_inference.train import MIN_ACCURACY

ARTIFACTS = {"digits": "1/model.onnx", "digits-torch": "1/model.pt2"}


def load(repository: Path, model: str, **options: Any) -> Any:
    config = read_config(repository / model)
    if options:
        config = ModelConfig(**{**_fields(config), "options": options})
    return backend_class(config.backend).load(repository / model / ARTIFACTS[model], config)


def _fields(config: ModelConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in ModelConfig.__slots__}


@pytest.fixture(scope="module")
def probabilities(model_repository: Path, digits: Any) -> dict[str, np.ndarray]:
    pixels = digits[0]
    out = {}
    for model in ARTIFACTS:
        backend = load(model_repository, model)
        out[model] = backend.run({"pixels": pixels})["probabilities"]
    return out


@pytest.mark.parametrize("model", ARTIFACTS)
def test_accuracy_on_heldout_digits(
    probabilities: dict[str, np.ndarray], digits: Any, model: str
) -> None:
    got = probabilities[model]
    assert got.shape == (360, 10)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    assert (got.argmax(axis=1) == digits[1]).mean() >= MIN_ACCURACY


def test_backends_agree(probabilities: dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(probabilities["digits"], probabilities["digits-torch"], atol=1e-5)


@pytest.mark.parametrize("model", ARTIFACTS)
def test_read_only_inputs_and_any_batch_size(
    model_repository: Path, probabilities: dict[str, np.ndarray], digits: Any, model: str
) -> None:
    backend = load(model_repository, model)
    for rows in (1, 7, 128):
        pixels = np.frombuffer(digits[0][:rows].tobytes(), dtype=np.float32).reshape(rows, 64)
        got = backend.run({"pixels": pixels})["probabilities"]
        np.testing.assert_allclose(got, probabilities[model][:rows], atol=1e-6)


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        ("digits", {"threads": 2}, "unknown [options] ['threads']"),
        ("digits", {"intra_op_num_threads": "2"}, "option intra_op_num_threads must be a int"),
        ("digits", {"execution_mode": "eager"}, "execution_mode must be one of sequential"),
        ("digits-torch", {"num_threads": 1.5}, "option num_threads must be a int"),
    ],
)
def test_bad_options(
    model_repository: Path, model: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelConfigError) as caught:
        load(model_repository, model, **options)
    assert message in caught.value.message


@pytest.mark.parametrize("model", ARTIFACTS)
def test_platform_must_suit_the_backend(model_repository: Path, model: str) -> None:
    config = read_config(model_repository / model)
    wrong = ModelConfig(**{**_fields(config), "platform": "tensorflow_savedmodel"})
    with pytest.raises(ModelConfigError, match='not "tensorflow_savedmodel"'):
        backend_class(config.backend).load(model_repository / model / ARTIFACTS[model], wrong)


@pytest.mark.parametrize("model", ARTIFACTS)
def test_unreadable_artifact(tmp_path: Path, model_repository: Path, model: str) -> None:
    config = read_config(model_repository / model)
    artifact = tmp_path / Path(ARTIFACTS[model]).name
    artifact.write_bytes(b"not a model")
    with pytest.raises(ModelConfigError, match=str(artifact)):
        backend_class(config.backend).load(artifact, config)


def test_onnx_names_must_match_the_config(model_repository: Path) -> None:
    config = read_config(model_repository / "digits")
    renamed = ModelConfig(
        **{**_fields(config), "inputs": (config.inputs[0].__class__("image", "FP32", (-1, 64)),)}
    )
    with pytest.raises(ModelConfigError, match=r"declares inputs \['image'\], the ONNX graph"):
        backend_class("onnxruntime").load(
            model_repository / "digits" / ARTIFACTS["digits"], renamed
        )


def test_unknown_backend() -> None:
    with pytest.raises(ModelConfigError, match='unknown backend "tensorrt"'):
        backend_class("tensorrt")
