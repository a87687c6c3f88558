"""Shared fixtures: a model repository built for this test session, and the service over it.

The repository is built into a temporary folder from the committed configs in
models/ (training takes a couple of seconds), so the suite needs no earlier
`build-models` and never reads artifacts that an older build left behind.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from tandem_inference.dataset import heldout
from tandem_inference.model_config import CONFIG_FILENAME
from tandem_inference.repository import ModelRepository
from tandem_inference.service import InferenceService
from tandem_inference.train import build_models

MODELS = Path(__file__).resolve().parents[2] / "models"

# Hypothesis keeps a .hypothesis/ folder in whatever directory the tests run from;
# keep it out of the checkout, and keep no example database (the failing examples
# that matter are pinned with @example).
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "tandem-hypothesis"))
settings.register_profile("tandem", database=None)
settings.load_profile("tandem")


# The models build_models trains; the MiniLM ones (an export of 175 MB) are tested
# from the repository's own models/, which `make models` builds (test_text.py).
DIGITS_MODELS = ("digits", "digits-torch")


def copy_configs(destination: Path, names: tuple[str, ...] = DIGITS_MODELS) -> Path:
    """The committed configs of the models `names`, configs only, under `destination`."""
    for name in names:
        (destination / name).mkdir(parents=True)
        shutil.copy(MODELS / name / CONFIG_FILENAME, destination / name / CONFIG_FILENAME)
    return destination


@pytest.fixture(scope="session")
def committed_models() -> Path:
    """The repository's models/ folder: configs, and artifacts only if built."""
    return MODELS


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_configs(tmp_path_factory.mktemp("models"))
    assert build_models(root)
    return root


@pytest.fixture(scope="session")
def repository(model_repository: Path) -> ModelRepository:
    repo = ModelRepository(model_repository)
    repo.load()
    return repo


@pytest.fixture(scope="session")
def service(repository: ModelRepository) -> InferenceService:
    return InferenceService(repository)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return heldout()
