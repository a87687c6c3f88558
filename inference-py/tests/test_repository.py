from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tandem_inference.backends import Backend
from tandem_inference.batcher import DynamicBatcher
from tandem_inference.errors import ModelConfigError, NotFound, Unavailable
from tandem_inference.model_config import ModelConfig
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.repository import ModelRepository
from tandem_inference.runner import Runner
from tandem_inference.service import InferenceService


def onnx_only(built: Path, destination: Path, versions: tuple[str, ...] = ("1",)) -> Path:
    """A repository holding the built `digits` model under the given version folders."""
    model = destination / "digits"
    model.mkdir(parents=True)
    shutil.copy(built / "digits" / "config.toml", model)
    for version in versions:
        shutil.copytree(built / "digits" / "1", model / version)
    return destination


def test_loads_every_model(repository: ModelRepository) -> None:
    assert repository.ready
    assert repository.model_names == ["digits", "digits-torch"]
    for name in repository.model_names:
        loaded = repository.resolve(name)
        assert (loaded.config.name, loaded.version) == (name, "1")
        assert repository.resolve(name, "1") == loaded


def test_latest_version_by_number(model_repository: Path, tmp_path: Path) -> None:
    root = onnx_only(model_repository, tmp_path, versions=("2", "10", "1"))
    (root / "digits" / "v3").mkdir()  # not a version: ignored
    (root / "digits" / "0").mkdir()
    repo = ModelRepository(root)
    assert repo.versions("digits") == ("1", "2", "10")
    repo.load()
    assert repo.resolve("digits").version == "10"
    assert repo.resolve("digits", "2").version == "2"
    with pytest.raises(NotFound, match='model "digits" has no version "3"; versions: 1, 2, 10'):
        repo.resolve("digits", "3")


async def test_not_ready_until_loaded(model_repository: Path, tmp_path: Path) -> None:
    repo = ModelRepository(onnx_only(model_repository, tmp_path))
    service = InferenceService(repo)
    assert not repo.ready
    assert not (await service.server_ready(pb.ServerReadyRequest())).ready
    assert not (await service.model_ready(pb.ModelReadyRequest(name="digits"))).ready
    with pytest.raises(Unavailable, match='model "digits" version 1 is not loaded yet'):
        await service.model_infer(pb.ModelInferRequest(model_name="digits"))
    # Metadata comes from config.toml and is there before the artifacts load.
    meta = await service.model_metadata(pb.ModelMetadataRequest(name="digits"))
    assert meta.platform == "onnxruntime_onnx"
    repo.load()
    assert (await service.model_ready(pb.ModelReadyRequest(name="digits"))).ready


def test_runner_factory_is_the_seam(model_repository: Path, tmp_path: Path) -> None:
    made: list[tuple[str, str]] = []

    def factory(backend: Backend, config: ModelConfig) -> Runner:
        made.append((type(backend).__name__, config.name))
        return DynamicBatcher(backend, config)

    repo = ModelRepository(onnx_only(model_repository, tmp_path), runner_factory=factory)
    repo.load()
    assert made == [("OnnxRuntimeBackend", "digits")]


def test_missing_artifact(model_repository: Path, tmp_path: Path) -> None:
    root = onnx_only(model_repository, tmp_path)
    (root / "digits" / "1" / "model.onnx").unlink()
    repo = ModelRepository(root)
    with pytest.raises(
        ModelConfigError, match=r'model "digits" version 1: .*model.onnx is missing'
    ):
        repo.load()
    assert not repo.ready


def test_no_version_folder(model_repository: Path, tmp_path: Path) -> None:
    root = onnx_only(model_repository, tmp_path, versions=())
    with pytest.raises(ModelConfigError, match=r"no version folder.*build-models"):
        ModelRepository(root)


def test_an_unknown_backend_fails_the_scan(model_repository: Path, tmp_path: Path) -> None:
    root = onnx_only(model_repository, tmp_path)
    config = root / "digits" / "config.toml"
    config.write_text(config.read_text().replace('backend = "onnxruntime"', 'backend = "tf"'))
    with pytest.raises(ModelConfigError) as caught:
        ModelRepository(root)
    assert caught.value.message == (f'{config}: backend "tf" is not one of onnxruntime, pytorch')


def test_model_config_imports_no_backend() -> None:
    """model_config is a leaf: the backends import it, never the other way round."""
    script = (
        "import sys\n"
        "import tandem_inference.model_config\n"
        "assert not [m for m in sys.modules if m.startswith('tandem_inference.backends')]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_empty_or_missing_repository(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match=r"holds no <model>/config\.toml"):
        ModelRepository(tmp_path)
    with pytest.raises(ModelConfigError, match="is not a folder"):
        ModelRepository(tmp_path / "nowhere")


def test_warm_up_checks_outputs_against_the_config(model_repository: Path, tmp_path: Path) -> None:
    root = onnx_only(model_repository, tmp_path)
    config = root / "digits" / "config.toml"
    config.write_text(config.read_text().replace("shape = [-1, 10]", "shape = [-1, 12]"))
    with pytest.raises(
        ModelConfigError,
        match=r'output "probabilities" is FP32 \[1, 10\], config.toml declares FP32 \[-1, 12\]',
    ):
        ModelRepository(root).load()


def test_unknown_model(repository: ModelRepository) -> None:
    with pytest.raises(NotFound, match='model "digit" not found; models: digits, digits-torch'):
        repository.resolve("digit")


async def test_direct_runner_returns_the_backend_outputs(repository: ModelRepository) -> None:
    loaded = repository.resolve("digits")
    out = await loaded.runner.infer({"pixels": np.zeros((2, 64), dtype=np.float32)})
    assert out["probabilities"].shape == (2, 10)


def test_onnx_models_are_served_without_importing_torch(
    model_repository: Path, tmp_path: Path
) -> None:
    root = onnx_only(model_repository, tmp_path)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tandem_inference.repository import ModelRepository\n"
        "from tandem_inference.service import InferenceService\n"
        "from tandem_inference.grpc_server import GrpcServer\n"
        f"ModelRepository(Path({str(root)!r})).load()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
