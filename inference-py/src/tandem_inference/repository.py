"""The model repository: every model folder under one root, loaded at start-up.

Layout (Triton's)::

    <root>/<model>/config.toml       see tandem_inference.model_config
    <root>/<model>/<version>/<file>  one folder per version, named by a positive integer

Every version found is loaded; a request without a version gets the highest.
Each loaded version is checked by running a batch of one through it, so a model
whose artifact disagrees with its config.toml fails the start, not the first request.

A folder whose `<version>/model.onnx` comes without a config.toml, or with one that
leaves out the inputs and outputs, is completed from the ONNX graph
(autocomplete.py), and what was filled in is logged.

With explicit model control (`--model-control explicit`, Triton's term) the set of
models served changes at run time: `load_model` reads a model's folder again and
loads it (a reload swaps the new versions in once they are warm), `unload_model`
stops new requests to it, waits for those in flight, then releases it. Listeners
(the NATS worker) hear of each change, so they can (un)subscribe the model's subjects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tandem_inference import autocomplete, codec
from tandem_inference.backends import BACKEND_NAMES, backend_class
from tandem_inference.batcher import DynamicBatcher
from tandem_inference.errors import ModelConfigError, NotFound, Unavailable
from tandem_inference.model_config import (
    CONFIG_FILENAME,
    ModelConfig,
    TensorSpec,
    parse_config,
    read_raw,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from tandem_inference.backends import Backend
    from tandem_inference.runner import Runner, RunnerFactory

    # Told (model name, serving now?) after a model is loaded or unloaded.
    Listener = Callable[[str, bool], Awaitable[None]]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One loaded version of a model, ready to serve."""

    config: ModelConfig
    version: str
    runner: Runner


class ModelState(StrEnum):
    """A model's state in RepositoryIndex, in Triton's words."""

    READY = "READY"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One row of RepositoryIndex: a loaded version, or a model that is not loaded."""

    name: str
    version: str
    state: ModelState
    reason: str = ""


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
        # Explicit model control: the state of the models not simply READY, and why.
        self._states: dict[str, tuple[ModelState, str]] = {}
        self._in_flight: Counter[str] = Counter()
        self._drained: dict[str, asyncio.Event] = {}
        self._listeners: list[Listener] = []

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def model_names(self) -> list[str]:
        return sorted(self._models)

    @property
    def serving_names(self) -> list[str]:
        """The models with a loaded version that takes requests."""
        return sorted({name for name, _ in self._loaded} - set(self._states))

    def __contains__(self, name: object) -> bool:
        """Whether the repository has a model of this name (loaded or not)."""
        return name in self._models

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def load(self) -> None:
        """Load every version of every model; blocking, so start-up runs it on a thread."""
        for model in self._models.values():
            self._loaded.update(self._load_versions(model))
        self._ready = True

    def _load_versions(self, model: _Model) -> dict[tuple[str, str], ModelVersion]:
        cls = backend_class(model.config.backend)
        filename = model.config.default_model_filename or cls.default_filename
        if model.config.tokenizer is not None:
            # Imported here: only text models need the tokenizers library.
            from tandem_inference.text import TextBackend  # noqa: PLC0415

            cls = TextBackend
        loaded: dict[tuple[str, str], ModelVersion] = {}
        for version in model.versions:
            artifact = model.path / version / filename
            if not artifact.is_file():
                raise ModelConfigError(
                    f'model "{model.config.name}" version {version}: {artifact} is missing'
                )
            backend = cls.load(artifact, model.config)
            _warm_up(model.config, version, backend)
            loaded[model.config.name, version] = ModelVersion(
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
        return loaded

    async def load_model(self, name: str) -> None:
        """Read `name`'s folder again and load it (explicit model control).

        A model already loaded keeps serving until the new versions are warm, then
        they take over and the old ones are released. ModelConfigError (with the
        model left as it was) when the folder or an artifact is unusable."""
        model_dir = self.root / name
        if name not in self._models and not _is_model_dir(model_dir):
            raise NotFound(
                f'model "{name}" not found in the repository {self.root}; '
                f"models: {', '.join(self.model_names)}"
            )
        was = self._states.get(name)
        if was is not None and was[0] in (ModelState.LOADING, ModelState.UNLOADING):
            raise Unavailable(f'model "{name}" is {was[0].value.lower()}; retry later')
        previous = self._state_of(name)
        self._states[name] = (ModelState.LOADING, "")
        try:
            model = await asyncio.to_thread(_read_model, model_dir)
            loaded = await asyncio.to_thread(self._load_versions, model)
        except Exception as err:
            self._restore_state(name, previous, err)
            raise
        old = {key: v for key, v in self._loaded.items() if key[0] == name}
        self._models[name] = model
        for key in old:
            del self._loaded[key]
        self._loaded.update(loaded)
        self._states.pop(name, None)
        await self._release(name, list(old.values()))
        for listener in self._listeners:
            await listener(name, True)

    async def unload_model(self, name: str, grace_s: float | None = None) -> None:
        """Stop serving `name` (explicit model control): new requests are refused at
        once (Unavailable), those in flight are answered (for up to `grace_s`), then
        its versions are released."""
        self._model(name)
        state = self._state_of(name)
        if state[0] is not ModelState.READY:
            if state[0] is ModelState.UNAVAILABLE:
                return  # Triton: unloading a model that is not loaded succeeds
            raise Unavailable(f'model "{name}" is {state[0].value.lower()}; retry later')
        self._states[name] = (ModelState.UNLOADING, "")
        for listener in self._listeners:
            await listener(name, False)
        old = [v for key, v in self._loaded.items() if key[0] == name]
        await self._release(name, old, grace_s)
        for version in old:
            del self._loaded[name, version.version]
        self._states[name] = (ModelState.UNAVAILABLE, "unloaded")
        log.info("model unloaded", extra={"model": name})

    async def _release(
        self, name: str, versions: list[ModelVersion], grace_s: float | None = None
    ) -> None:
        if not versions:
            return
        if self._in_flight[name]:
            event = self._drained.setdefault(name, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), grace_s)
        for version in versions:
            await asyncio.to_thread(version.runner.close)

    def _restore_state(
        self, name: str, previous: tuple[ModelState, str], err: BaseException
    ) -> None:
        if previous[0] is ModelState.READY:
            self._states.pop(name, None)
        else:
            reason = err.message if isinstance(err, ModelConfigError) else "load failed"
            self._states[name] = (ModelState.UNAVAILABLE, reason)

    def _state_of(self, name: str) -> tuple[ModelState, str]:
        if name in self._states:
            return self._states[name]
        if any(key[0] == name for key in self._loaded):
            return ModelState.READY, ""
        return ModelState.UNAVAILABLE, "not loaded"

    def index(self, *, ready_only: bool = False) -> list[IndexEntry]:
        """RepositoryIndex: each loaded version, and each model folder (including
        ones added since the start) that is not loaded, by name."""
        names = set(self._models) | {p.name for p in _model_dirs(self.root)}
        entries: list[IndexEntry] = []
        for name in sorted(names):
            state, reason = self._state_of(name)
            versions = [v for n, v in self._loaded if n == name]
            if versions and state in (ModelState.READY, ModelState.UNLOADING):
                entries += [IndexEntry(name, v, state, reason) for v in sorted(versions, key=int)]
            else:
                entries.append(IndexEntry(name, "", state, reason))
        if ready_only:
            return [e for e in entries if e.state is ModelState.READY]
        return entries

    def busy(self, name: str) -> int:
        """Requests to `name` running now (what an unload waits for)."""
        return self._in_flight[name]

    @contextlib.contextmanager
    def in_flight(self, name: str) -> Iterator[None]:
        """Counts a request to `name` while it runs, for unload to wait for."""
        self._in_flight[name] += 1
        try:
            yield
        finally:
            self._in_flight[name] -= 1
            if not self._in_flight[name]:
                del self._in_flight[name]
                event = self._drained.pop(name, None)
                if event is not None:
                    event.set()

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
        state = self._states.get(name)
        if state is not None and state[0] is not ModelState.LOADING:
            raise Unavailable(f'model "{name}" is {state[1] or state[0].value.lower()}')
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
    for model_dir in _model_dirs(root):
        model = _read_model(model_dir)
        models[model.config.name] = model
    if not models:
        raise ModelConfigError(
            f"model repository {root} holds no <model>/{CONFIG_FILENAME} "
            f"nor <model>/1/{autocomplete.ONNX_FILENAME}"
        )
    return models


def _model_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if _is_model_dir(p))


def _is_model_dir(path: Path) -> bool:
    """A folder with a config.toml, or a version folder holding a model.onnx."""
    return path.is_dir() and (
        (path / CONFIG_FILENAME).is_file() or autocomplete.onnx_artifact(path) is not None
    )


def _read_model(model_dir: Path) -> _Model:
    """One model's config (completed from its ONNX graph where it is missing) and versions."""
    raw = read_raw(model_dir)
    raw, filled = autocomplete.complete(raw, model_dir, autocomplete.onnx_artifact(model_dir))
    config = parse_config(raw, model_dir)
    if filled:
        log.info(
            "model config completed from the ONNX graph",
            extra={
                "model": config.name,
                "filled_in": filled,
                "max_batch_size": config.max_batch_size,
                "inputs": [f"{t.name} {t.datatype} {list(t.shape)}" for t in config.inputs],
                "outputs": [f"{t.name} {t.datatype} {list(t.shape)}" for t in config.outputs],
            },
        )
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
    return _Model(config, tuple(versions), model_dir)


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
