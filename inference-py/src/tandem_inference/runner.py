"""The seam between the service and a model: every inference goes through a Runner.

One runner per loaded model version. The service hands it one request's decoded
inputs and awaits that request's outputs; how the call reaches the backend (inline,
on a thread, merged with other requests into one batch) is the runner's business,
so the dynamic batcher replaces `DirectRunner` without touching the service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from tandem_inference.backends import Backend
    from tandem_inference.config import ModelConfig


class Runner(Protocol):
    """Runs one request's inputs through a model version."""

    async def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class RunnerFactory(Protocol):
    def __call__(self, backend: Backend, config: ModelConfig) -> Runner: ...


class DirectRunner:
    """Calls the backend inline on the event loop.

    Right for models that run in microseconds (the digits MLP takes ~6 us per
    call on ONNX Runtime): handing the call to a thread would cost more than the
    model. A slow model would stall the loop and needs a runner that offloads it.
    """

    def __init__(self, backend: Backend, config: ModelConfig) -> None:
        # `config` is part of the factory's signature for runners that need it
        # (a batcher needs max_batch_size); running inline needs only the backend.
        self._backend = backend

    async def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._backend.run(inputs)
