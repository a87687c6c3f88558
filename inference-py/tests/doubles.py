"""Test doubles that wrap the real backends; used only where a test needs to hold a model call."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tandem_inference.backends import Backend
from tandem_inference.model_config import ModelConfig


class Gated(Backend):
    """The real backend behind a gate: a call starts, then waits until the test opens it."""

    platforms = ("onnxruntime_onnx", "pytorch_export")
    default_filename = "model.onnx"

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.started = threading.Event()
        self.gate = threading.Event()

    @classmethod
    def load(cls, artifact: Path, config: ModelConfig) -> Gated:
        raise NotImplementedError("wrap a loaded backend instead")

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.started.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return self.inner.run(inputs)
