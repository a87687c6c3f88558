"""The interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from tandem_inference.errors import ModelConfigError

if TYPE_CHECKING:
    import numpy as np

    from tandem_inference.model_config import ModelConfig


class Backend(ABC):
    """One loaded model version that maps named input arrays to named output arrays.

    `run` is synchronous and may hold the calling thread for the model's whole
    execution; the runner that calls it decides on which thread.
    """

    # The ModelMetadata platforms this backend can load.
    platforms: ClassVar[tuple[str, ...]]
    # The artifact's name inside a version folder, unless config.toml says otherwise.
    default_filename: ClassVar[str]

    @classmethod
    @abstractmethod
    def load(cls, artifact: Path, config: ModelConfig) -> Self:
        """Load the artifact; ModelConfigError when it or config.options is unusable."""

    @abstractmethod
    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs named as in config.outputs, for inputs named as in config.inputs."""

    @classmethod
    def check_platform(cls, config: ModelConfig) -> None:
        if config.platform not in cls.platforms:
            raise ModelConfigError(
                f'model "{config.name}": backend "{config.backend}" serves platforms '
                f'{", ".join(cls.platforms)}, not "{config.platform}"'
            )


def take_options(config: ModelConfig, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """config.options over `defaults`; unknown keys and values of the wrong type are errors."""
    unknown = set(config.options) - set(defaults)
    if unknown:
        raise ModelConfigError(
            f'model "{config.name}": unknown [options] {sorted(unknown)} for backend '
            f'"{config.backend}"; known: {sorted(defaults)}'
        )
    options = dict(defaults)
    for key, value in config.options.items():
        if type(value) is not type(defaults[key]):
            raise ModelConfigError(
                f'model "{config.name}": option {key} must be a {type(defaults[key]).__name__}'
            )
        options[key] = value
    return options
