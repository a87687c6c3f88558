"""Bring your own model: a config.toml completed from the ONNX graph, as Triton's auto-complete.

A model folder that holds `<version>/model.onnx` needs no config.toml, or only part
of one: what it leaves out is read from the graph with an ONNX Runtime session
(`get_inputs()` / `get_outputs()`), which the service depends on anyway, so no
`onnx` package is needed. What the folder's config.toml says always wins; only
missing keys are filled in, and the repository logs what it filled in.

- `name`: the folder's name; `backend`/`platform`: onnxruntime / onnxruntime_onnx.
- `inputs`/`outputs`: every graph input and output, its datatype, and its shape with
  each symbolic or unknown dimension as -1.
- `max_batch_size`: when the first dimension of every input and output is symbolic
  (the graph was exported with a dynamic batch), the model batches and gets
  `DEFAULT_MAX_BATCH_SIZE`; otherwise 0, every shape exactly as the graph says.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from tandem_inference.errors import ModelConfigError
from tandem_inference.model_config import CONFIG_FILENAME, parse_config, to_toml
from tandem_inference.settings import is_subject_token

ONNX_FILENAME = "model.onnx"
BACKEND = "onnxruntime"
PLATFORM = "onnxruntime_onnx"
# Triton's default when it auto-completes a batching model (its default-max-batch-size
# is 4); init-model writes it into config.toml, where it is meant to be tuned.
DEFAULT_MAX_BATCH_SIZE = 4
# ONNX Runtime's type strings -> OIP datatypes.
_DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
# The keys auto-complete may fill in.
FILLED = ("name", "backend", "platform", "max_batch_size", "inputs", "outputs")


class _NodeArg(Protocol):
    """What ONNX Runtime's session tells of one graph input or output."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def shape(self) -> Sequence[int | str | None]: ...


def onnx_artifact(model_dir: Path) -> Path | None:
    """The highest version's model.onnx in `model_dir`, if any version has one."""
    versions = sorted(
        (p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0),
        key=lambda p: int(p.name),
    )
    for version in reversed(versions):
        if (version / ONNX_FILENAME).is_file():
            return version / ONNX_FILENAME
    return None


def complete(
    raw: dict[str, Any], model_dir: Path, artifact: Path | None
) -> tuple[dict[str, Any], list[str]]:
    """`raw` with what it lacks filled in, and the keys that were filled in.

    The graph of `artifact` is opened only when the inputs, outputs or
    max_batch_size are missing; a complete config comes back as it is."""
    missing = [k for k in FILLED if k not in raw]
    done = dict(raw)
    done.setdefault("name", model_dir.name)
    if not any(k in missing for k in ("inputs", "outputs", "max_batch_size")):
        return done, [k for k in missing if k == "name"]
    if artifact is None or done.get("backend", BACKEND) != BACKEND:
        # Nothing to read them from: config.toml's checks name what is missing.
        return done, [k for k in missing if k == "name"]
    inputs, outputs = _graph(artifact)
    tensors = (*inputs, *outputs)
    batched = all(t["symbolic_batch"] for t in tensors)
    done.setdefault("backend", BACKEND)
    done.setdefault("platform", PLATFORM)
    done.setdefault("max_batch_size", DEFAULT_MAX_BATCH_SIZE if batched else 0)
    for key, specs in (("inputs", inputs), ("outputs", outputs)):
        if key not in done:
            done[key] = [
                {
                    "name": t["name"],
                    "datatype": t["datatype"],
                    # With batching the first dimension is the batch, whatever the
                    # graph calls it.
                    "shape": [-1, *t["shape"][1:]] if done["max_batch_size"] else t["shape"],
                }
                for t in specs
            ]
    return done, missing


def _graph(artifact: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import onnxruntime as ort  # noqa: PLC0415 - only models without a full config need it

    try:
        session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    except Exception as err:  # ONNX Runtime raises its own exception types for a bad file
        raise ModelConfigError(
            f"{artifact}: not an ONNX model ONNX Runtime can load: {err}"
        ) from err

    def spec(arg: _NodeArg) -> dict[str, Any]:
        datatype = _DATATYPES.get(arg.type)
        if datatype is None:
            raise ModelConfigError(
                f'{artifact}: tensor "{arg.name}" has type {arg.type}, which no OIP datatype '
                "matches"
            )
        shape = [d if isinstance(d, int) and d > 0 else -1 for d in arg.shape]
        # A named (symbolic) or missing first dimension: exported with a dynamic batch.
        symbolic = bool(arg.shape) and not isinstance(arg.shape[0], int)
        return {"name": arg.name, "datatype": datatype, "shape": shape, "symbolic_batch": symbolic}

    return [spec(a) for a in session.get_inputs()], [spec(a) for a in session.get_outputs()]


def init_model(repository: Path, name: str, source: Path, *, force: bool = False) -> Path:
    """`init-model`: copy `source` to `<repository>/<name>/1/model.onnx` and write the
    complete config.toml that auto-complete would serve, for review; returns its path."""
    if not is_subject_token(name) or "/" in name or name in (".", ".."):
        raise ModelConfigError(
            f'model name "{name}": use a folder name without ".", "*", ">", "/" or spaces '
            "(it is a NATS subject token too)"
        )
    if not source.is_file():
        raise ModelConfigError(f"{source}: no such file")
    model_dir = repository / name
    config_path = model_dir / CONFIG_FILENAME
    artifact = model_dir / "1" / ONNX_FILENAME
    if not force and (config_path.exists() or artifact.exists()):
        raise ModelConfigError(f"{model_dir} already holds a model; --force replaces it")
    # Read the graph before writing anything, so a bad file leaves no half a model.
    raw, _ = complete({}, model_dir, source)
    config = parse_config(raw, model_dir)
    artifact.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, artifact)
    config_path.write_text(to_toml(config), encoding="utf-8")
    return config_path
