"""`build-models`: train the digits MLP and write it for both backends.

The network is 64 -> 128 (ReLU) -> 10 with a softmax at the end, so the exported
graphs output a probability distribution; it divides the pixels by 16 itself, so
clients send pixels as scikit-learn gives them (0-16). Training is seeded
(TRAIN_SEED) on the fixed split of `tandem_inference.dataset` and takes about a
second on a CPU. Written artifacts:

    <repository>/digits/1/model.onnx        ONNX (torch.onnx.export, dynamo=False: one
                                            self-contained file), dynamic batch
    <repository>/digits-torch/1/model.pt2   torch.export program, dynamic batch

Both come from the same trained weights, so the two backends must agree.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tandem_inference.dataset import heldout, split
from tandem_inference.errors import Internal, ModelConfigError
from tandem_inference.model_config import CONFIG_FILENAME

__all__ = ["MIN_ACCURACY", "build_models", "heldout", "train", "write_artifact"]

log = logging.getLogger(__name__)

TRAIN_SEED = 0
HIDDEN = 128
EPOCHS = 30
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
MIN_ACCURACY = 0.95
PIXEL_MAX = 16.0
ONNX_OPSET = 18

INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
ONNX_ARTIFACT = Path("digits") / "1" / "model.onnx"
TORCH_ARTIFACT = Path("digits-torch") / "1" / "model.pt2"


class DigitsMLP(nn.Module):
    """Pixels (0-16) in, class probabilities out."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Sequential(nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(pixels / PIXEL_MAX), dim=-1)


def train() -> tuple[DigitsMLP, float]:
    """The trained network (in eval mode) and its held-out accuracy."""
    threads = torch.get_num_threads()
    # One thread: parallel reductions sum in a varying order, and the same seed must
    # give the same weights whatever thread count the process had before.
    torch.set_num_threads(1)
    try:
        return _train()
    finally:
        torch.set_num_threads(threads)


def _train() -> tuple[DigitsMLP, float]:
    data = split()
    generator = torch.manual_seed(TRAIN_SEED)
    model = DigitsMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    x = torch.from_numpy(data.x_train) / PIXEL_MAX
    y = torch.from_numpy(data.y_train)
    model.train()
    for epoch in range(1, EPOCHS + 1):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), BATCH_SIZE):
            rows = order[start : start + BATCH_SIZE]
            optimizer.zero_grad()
            # Cross-entropy wants logits; the softmax stays in forward() for serving.
            loss = nn.functional.cross_entropy(model.logits(x[rows]), y[rows])
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            optimizer.step()
            total += loss.detach().item() * len(rows)
        # Progress for `make setup`: a line every few epochs, and the last.
        if epoch % 10 == 0 or epoch == EPOCHS:
            mean_loss = round(total / len(x), 4)
            log.info("epoch", extra={"epoch": f"{epoch}/{EPOCHS}", "loss": mean_loss})
    model.eval()
    with torch.inference_mode():
        predicted = model(torch.from_numpy(data.x_heldout)).argmax(dim=1).numpy()
    return model, float(np.mean(predicted == data.y_heldout))


def build_models(repository: Path, *, force: bool = False) -> bool:
    """Train and write both artifacts unless both exist; True when it wrote them."""
    onnx_path, torch_path = repository / ONNX_ARTIFACT, repository / TORCH_ARTIFACT
    for path in (onnx_path, torch_path):
        config = path.parent.parent / CONFIG_FILENAME
        if not config.is_file():
            raise ModelConfigError(f"{config} is missing: is {repository} the model repository?")
    if not force and onnx_path.is_file() and torch_path.is_file():
        log.info("models exist; --force rebuilds them", extra={"repository": str(repository)})
        return False
    model, accuracy = train()
    if accuracy < MIN_ACCURACY:
        raise Internal(f"held-out accuracy {accuracy:.2%} is below {MIN_ACCURACY:.0%}")
    example = torch.from_numpy(heldout()[0][:2])
    write_artifact(onnx_path, lambda tmp: _export_onnx(model, example, tmp))
    write_artifact(torch_path, lambda tmp: _export_torch(model, example, tmp))
    log.info(
        "models built",
        extra={
            "accuracy": round(accuracy, 4),
            "onnx": str(onnx_path),
            "torch": str(torch_path),
        },
    )
    return True


def write_artifact(path: Path, export: Callable[[Path], None]) -> None:
    """Export into a scratch folder beside `path`, then rename: a build that dies halfway
    leaves no artifact that a later build would take as done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".build-") as scratch:
        tmp = Path(scratch) / path.name
        export(tmp)
        os.replace(tmp, path)


def _export_onnx(model: DigitsMLP, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        # The TorchScript-based exporter is chosen on purpose: the dynamo one needs
        # onnxscript and writes the weights to a separate .onnx.data file.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
        )


def _export_torch(model: DigitsMLP, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim.DYNAMIC
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, path)
