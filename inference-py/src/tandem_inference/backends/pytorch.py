"""The PyTorch backend (platform pytorch_export): a `torch.export` program, on the CPU.

The artifact is a `.pt2` file written by `torch.export.save`; it holds the graph and
the weights, so serving needs no Python class of the model. Inputs are passed
positionally in the order of config.toml's [[inputs]]; the program's outputs (one
tensor or a tuple) are named in the order of [[outputs]].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import torch

from tandem_inference.backends.base import Backend, take_options
from tandem_inference.errors import ModelConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from tandem_inference.model_config import ModelConfig

# torch.set_num_threads is process-wide: the last model loaded decides it for all.
# One thread, for the same reason as in the ONNX Runtime backend: throughput comes
# from batches, and an intra-op pool would compete with the event loop.
DEFAULT_OPTIONS: dict[str, Any] = {"num_threads": 1}


class PyTorchBackend(Backend):
    """A `torch.export.ExportedProgram`'s module, run under `torch.inference_mode`."""

    platforms = ("pytorch_export",)
    default_filename = "model.pt2"

    def __init__(
        self, module: torch.nn.Module, input_names: list[str], output_names: list[str]
    ) -> None:
        self._module = module
        self._input_names = input_names
        self._output_names = output_names

    @classmethod
    def load(cls, artifact: Path, config: ModelConfig) -> Self:
        cls.check_platform(config)
        options = take_options(config, DEFAULT_OPTIONS)
        torch.set_num_threads(options["num_threads"])
        try:
            module = torch.export.load(artifact).module()
        except Exception as err:  # a bad .pt2 fails in zipfile, pickle or torch itself
            raise ModelConfigError(f'model "{config.name}": {artifact}: {err}') from err
        return cls(module, [t.name for t in config.inputs], [t.name for t in config.outputs])

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Decoded raw tensors are read-only views of the request; torch wants writable
        # memory, so those (and only those) are copied.
        args = [
            torch.from_numpy(np.require(inputs[name], requirements="W"))
            for name in self._input_names
        ]
        with torch.inference_mode():
            result = self._module(*args)
        tensors = (result,) if isinstance(result, torch.Tensor) else tuple(result)
        if len(tensors) != len(self._output_names):
            raise ModelConfigError(
                f"the program returned {len(tensors)} outputs, config.toml declares "
                f"{self._output_names}"
            )
        return {name: t.numpy() for name, t in zip(self._output_names, tensors, strict=True)}
