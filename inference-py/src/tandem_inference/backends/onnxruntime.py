"""The ONNX Runtime backend (platform onnxruntime_onnx), on the CPU."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import onnxruntime as ort

from tandem_inference.backends.base import Backend, take_options
from tandem_inference.errors import ModelConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from tandem_inference.model_config import ModelConfig

# One thread and sequential execution: a small model gains nothing from a thread
# pool (a batch of 128 digits runs in tens of microseconds), and pools spinning in
# every model would fight the event loop and each other for the cores. Throughput
# comes from batching calls, not from threads inside one call.
DEFAULT_OPTIONS: dict[str, Any] = {
    "intra_op_num_threads": 1,
    "inter_op_num_threads": 1,
    "execution_mode": "sequential",
}
_EXECUTION_MODES = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}


class OnnxRuntimeBackend(Backend):
    """An `onnxruntime.InferenceSession` on the CPU execution provider."""

    platforms = ("onnxruntime_onnx",)
    default_filename = "model.onnx"

    def __init__(self, session: ort.InferenceSession, output_names: list[str]) -> None:
        self._session = session
        self._output_names = output_names

    @classmethod
    def load(cls, artifact: Path, config: ModelConfig) -> Self:
        cls.check_platform(config)
        options = take_options(config, DEFAULT_OPTIONS)
        so = ort.SessionOptions()
        so.intra_op_num_threads = options["intra_op_num_threads"]
        so.inter_op_num_threads = options["inter_op_num_threads"]
        try:
            so.execution_mode = _EXECUTION_MODES[options["execution_mode"]]
        except KeyError:
            raise ModelConfigError(
                f'model "{config.name}": execution_mode must be one of '
                f"{', '.join(_EXECUTION_MODES)}"
            ) from None
        try:
            session = ort.InferenceSession(
                str(artifact), sess_options=so, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # ORT raises its own unexported exception types
            raise ModelConfigError(f'model "{config.name}": {artifact}: {err}') from err
        _check_names(config, "inputs", [i.name for i in session.get_inputs()])
        _check_names(config, "outputs", [o.name for o in session.get_outputs()])
        return cls(session, [o.name for o in config.outputs])

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {name: _as_ort(array) for name, array in inputs.items()}
        results = self._session.run(self._output_names, feeds)
        return {name: np.asarray(r) for name, r in zip(self._output_names, results, strict=True)}


def _as_ort(array: np.ndarray) -> np.ndarray:
    """A BYTES tensor (bytes objects) as ONNX Runtime's string tensors want it: str.
    ORT would take a bytes object for its repr ("b'...'"). The elements were checked
    as UTF-8 before the batcher (validation.py)."""
    if array.dtype != object:
        return array
    texts = np.empty(array.shape, dtype=object)
    texts.ravel()[:] = [bytes(item).decode() for item in array.ravel()]
    return texts


def _check_names(config: ModelConfig, kind: str, in_graph: list[str]) -> None:
    declared = [t.name for t in getattr(config, kind)]
    if sorted(declared) != sorted(in_graph):
        raise ModelConfigError(
            f'model "{config.name}": config.toml declares {kind} {declared}, '
            f"the ONNX graph has {in_graph}"
        )
