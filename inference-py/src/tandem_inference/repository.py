"""The model repository: every model folder under one root, loaded at start-up.

Layout (Triton's)::

    <root>/<model>/config.toml       see tandem_inference.model_config
    <root>/<model>/<version>/<file>  one folder per version, named by a positive integer

Every version found is loaded; a request without a version gets the highest.
Each loaded version is checked by running a batch of one through it, so a model
whose artifact disagrees with its config.toml fails the start, not the first request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tandem_inference import codec
from tandem_inference.backends import BACKEND_NAMES, backend_class
from tandem_inference.batcher import DynamicBatcher
from tandem_inference.errors import ModelConfigError, NotFound, Unavailable
from tandem_inference.model_config import CONFIG_FILENAME, ModelConfig, TensorSpec, read_config

if TYPE_CHECKING:
    from tandem_inference.backends import Backend
    from tandem_inference.runner import Runner, RunnerFactory

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One loaded version of a model, ready to serve."""

    config: ModelConfig
    version: str
    runner: Runner


@dataclass(frozen=True, slots=True)
class _Model:
    config: ModelConfig
    # Version folder names, ascending by number: the last is the default.
    versions: tuple[str, ...]
    path: Path


class ModelRepository:
    """The models under `root`. Construction reads and checks every config.toml (fast);
    `load()` loads the artifacts (slow) and makes the repository ready."""

    def __init__(self, root: Path, runner_factory: RunnerFactory = DynamicBatcher) -> None:
        self.root = root
        self._runner_factory = runner_factory
        self._models = _scan(root)
        self._loaded: dict[tuple[str, str], ModelVersion] = {}
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def model_names(self) -> list[str]:
        return sorted(self._models)

    def __contains__(self, name: object) -> bool:
        """Whether the repository has a model of this name (loaded or not)."""
        return name in self._models

    def load(self) -> None:
        """Load every version of every model; blocking, so start-up runs it on a thread."""
        for model in self._models.values():
            cls = backend_class(model.config.backend)
            filename = model.config.default_model_filename or cls.default_filename
            for version in model.versions:
                artifact = model.path / version / filename
                if not artifact.is_file():
                    raise ModelConfigError(
                        f'model "{model.config.name}" version {version}: {artifact} is missing'
                    )
                backend = cls.load(artifact, model.config)
                _warm_up(model.config, version, backend)
                self._loaded[model.config.name, version] = ModelVersion(
                    model.config, version, self._runner_factory(backend, model.config)
                )
                log.info(
                    "model loaded",
                    extra={
                        "model": model.config.name,
                        "version": version,
                        "backend": model.config.backend,
                        "artifact": str(artifact),
                    },
                )
        self._ready = True

    def close(self) -> None:
        """Stop every runner's threads; call once the front doors have stopped."""
        self._ready = False
        for loaded in self._loaded.values():
            loaded.runner.close()

    def config(self, name: str) -> ModelConfig:
        return self._model(name).config

    def versions(self, name: str) -> tuple[str, ...]:
        return self._model(name).versions

    def resolve(self, name: str, version: str = "") -> ModelVersion:
        """The version asked for, or the latest when `version` is empty.

        NotFound for an unknown model or version; Unavailable while still loading.
        """
        chosen = self.choose_version(name, version)
        loaded = self._loaded.get((name, chosen))
        if loaded is None:
            raise Unavailable(f'model "{name}" version {chosen} is not loaded yet')
        return loaded

    def choose_version(self, name: str, version: str = "") -> str:
        """`version` if the model has it, the latest when empty; NotFound otherwise."""
        model = self._model(name)
        chosen = version or model.versions[-1]
        if chosen not in model.versions:
            raise NotFound(
                f'model "{name}" has no version "{version}"; versions: {", ".join(model.versions)}'
            )
        return chosen

    def _model(self, name: str) -> _Model:
        try:
            return self._models[name]
        except KeyError:
            raise NotFound(
                f'model "{name}" not found; models: {", ".join(self.model_names)}'
            ) from None


def _scan(root: Path) -> dict[str, _Model]:
    if not root.is_dir():
        raise ModelConfigError(f"model repository {root} is not a folder")
    models: dict[str, _Model] = {}
    for model_dir in sorted(p for p in root.iterdir() if (p / CONFIG_FILENAME).is_file()):
        config = read_config(model_dir)
        if config.backend not in BACKEND_NAMES:
            raise ModelConfigError(
                f'{model_dir / CONFIG_FILENAME}: backend "{config.backend}" is not one of '
                f"{', '.join(BACKEND_NAMES)}"
            )
        versions = sorted(
            (p.name for p in model_dir.iterdir() if p.is_dir() and _is_version(p.name)),
            key=int,
        )
        if not versions:
            raise ModelConfigError(
                f'model "{config.name}": no version folder in {model_dir}; '
                "`tandem-inference build-models` writes the digits models"
            )
        models[config.name] = _Model(config, tuple(versions), model_dir)
    if not models:
        raise ModelConfigError(f"model repository {root} holds no <model>/{CONFIG_FILENAME}")
    return models


def _is_version(name: str) -> bool:
    return name.isascii() and name.isdigit() and int(name) > 0


def _warm_up(config: ModelConfig, version: str, backend: Backend) -> None:
    """Run a batch of one, and check the outputs against config.toml."""
    outputs = backend.run({spec.name: _zeros(spec) for spec in config.inputs})
    where = f'model "{config.name}" version {version}'
    if set(outputs) != {spec.name for spec in config.outputs}:
        raise ModelConfigError(
            f"{where}: the model returns {sorted(outputs)}, "
            f"config.toml declares {[s.name for s in config.outputs]}"
        )
    for spec in config.outputs:
        got = outputs[spec.name]
        datatype = codec.datatype_of(got.dtype).name
        fits = len(got.shape) == len(spec.shape) and all(
            want in (-1, have) for want, have in zip(spec.shape, got.shape, strict=True)
        )
        if datatype != spec.datatype or not fits:
            raise ModelConfigError(
                f'{where}: output "{spec.name}" is {datatype} {codec.format_shape(got.shape)}, '
                f"config.toml declares {spec.datatype} {codec.format_shape(spec.shape)}"
            )


def _zeros(spec: TensorSpec) -> np.ndarray:
    shape = tuple(1 if d == -1 else d for d in spec.shape)
    dt = codec.lookup(spec.datatype)
    if dt.is_bytes:
        return np.full(shape, b"", dtype=object)
    return np.zeros(shape, dtype=dt.dtype)
