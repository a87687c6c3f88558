from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tandem_inference.errors import ModelConfigError
from tandem_inference.train import ONNX_ARTIFACT, TORCH_ARTIFACT, build_models


def test_builds_both_artifacts(model_repository: Path) -> None:
    for artifact in (ONNX_ARTIFACT, TORCH_ARTIFACT):
        assert (model_repository / artifact).stat().st_size > 10_000
    # One self-contained ONNX file, and no scratch left behind.
    assert sorted(p.name for p in (model_repository / "digits" / "1").iterdir()) == ["model.onnx"]
    assert sorted(p.name for p in (model_repository / "digits-torch" / "1").iterdir()) == [
        "model.pt2"
    ]


def test_skips_existing_artifacts_unless_forced(model_repository: Path, tmp_path: Path) -> None:
    # A copy: the session's repository stays as the other tests loaded it.
    root = shutil.copytree(model_repository, tmp_path / "models")
    onnx = root / ONNX_ARTIFACT
    os.utime(onnx, (0, 0))
    assert not build_models(root)
    assert onnx.stat().st_mtime == 0
    assert build_models(root, force=True)
    assert onnx.stat().st_mtime > 0
    # Seeded training: the rebuild writes the same network.
    assert onnx.read_bytes() == (model_repository / ONNX_ARTIFACT).read_bytes()


def test_refuses_a_folder_without_the_configs(tmp_path: Path) -> None:
    with pytest.raises(
        ModelConfigError, match=r"digits/config.toml is missing: is .* the model repository\?"
    ):
        build_models(tmp_path)
    assert list(tmp_path.iterdir()) == []
