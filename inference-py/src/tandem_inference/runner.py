"""The seam between the service and a model: every inference goes through a Runner.

One runner per loaded model version. The service hands it one request's decoded
inputs and awaits that request's outputs; how the call reaches the backend (on
which thread, merged with which other requests) is the runner's business. The
repository makes a `DynamicBatcher` (batcher.py) for every version unless told
otherwise.
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

    async def infer(
        self, inputs: Mapping[str, np.ndarray], deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        """The outputs for `inputs`, every output the model declares.

        `deadline` is the event loop's clock (`loop.time()`) by which the caller
        must have its answer; work not started by then is not run (DeadlineExceeded).
        """
        ...

    def close(self) -> None:
        """Release threads; called once no more requests come."""
        ...


class RunnerFactory(Protocol):
    def __call__(self, backend: Backend, config: ModelConfig) -> Runner: ...
