"""Checks an infer request against the model's config and decodes its inputs.

Everything here runs before the model does, so a bad request costs no model time
and gets an InvalidArgument whose message names the tensor and what was expected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tandem_inference import codec
from tandem_inference.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

    from tandem_inference.model_config import ModelConfig, TensorSpec
    from tandem_inference.pb.grpc_service_pb2 import ModelInferRequest


def decode_inputs(config: ModelConfig, request: ModelInferRequest) -> dict[str, np.ndarray]:
    """The request's inputs as arrays, named as config.toml names them."""
    raw = request.raw_input_contents
    if raw:
        _check_raw_only(request)
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        label = f'input "{tensor.name}"'
        spec = config.input(tensor.name)
        if spec is None:
            raise InvalidArgument(
                f'unknown {label}; model "{config.name}" takes {_names(config.inputs)}'
            )
        if tensor.name in arrays:
            raise InvalidArgument(f"{label} appears more than once")
        if tensor.datatype != spec.datatype:
            raise InvalidArgument(
                f"{label}: datatype {tensor.datatype} given, the model takes {spec.datatype}"
            )
        shape = tuple(tensor.shape)
        check_shape(config, spec, shape)
        if raw:
            arrays[tensor.name] = codec.decode_raw(label, spec.datatype, shape, raw[i])
        elif tensor.HasField("contents"):
            arrays[tensor.name] = codec.decode_contents(
                label, spec.datatype, shape, tensor.contents
            )
        else:
            raise InvalidArgument(f"{label} has no data: set contents or raw_input_contents")
    missing = [spec.name for spec in config.inputs if spec.name not in arrays]
    if missing:
        raise InvalidArgument(
            f"missing input {_names_of(missing)}; "
            f'model "{config.name}" takes {_names(config.inputs)}'
        )
    if config.batched:
        batches = {name: a.shape[0] for name, a in arrays.items()}
        if len(set(batches.values())) > 1:
            raise InvalidArgument(f"inputs disagree on the batch size: {batches}")
    _check_text_inputs(config, arrays)
    return arrays


def _check_text_inputs(config: ModelConfig, arrays: dict[str, np.ndarray]) -> None:
    # A text model reads its BYTES as UTF-8 text; so does ONNX Runtime, whose string
    # tensors are str in Python: anything else would fail the whole batch later.
    if config.tokenizer is None and config.backend != "onnxruntime":
        return
    max_bytes = config.tokenizer.max_text_bytes if config.tokenizer else None
    for spec in config.inputs:
        if spec.datatype == "BYTES":
            check_texts(f'input "{spec.name}"', arrays[spec.name], max_bytes)


def check_texts(label: str, texts: np.ndarray, max_bytes: int | None) -> None:
    """Each element is UTF-8 of at most `max_bytes` (None: any length): checked per
    request, before the batcher, so that one bad text is its caller's 400 and never
    fails a batch."""
    for i, item in enumerate(texts.ravel()):
        if max_bytes is not None and len(item) > max_bytes:
            raise InvalidArgument(
                f"{label}: element {i} is {len(item)} bytes, over the model's "
                f"max_text_bytes {max_bytes}"
            )
        try:
            item.decode()
        except UnicodeDecodeError as err:
            raise InvalidArgument(
                f"{label}: element {i} is not valid UTF-8 ({err.reason} at byte {err.start})"
            ) from None


def _check_raw_only(request: ModelInferRequest) -> None:
    raw = request.raw_input_contents
    if len(raw) != len(request.inputs):
        raise InvalidArgument(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    typed = next((t.name for t in request.inputs if t.HasField("contents")), None)
    if typed is not None:
        raise InvalidArgument(
            f'input "{typed}": has typed contents in a request with raw_input_contents; '
            "send all inputs one way"
        )


def check_shape(config: ModelConfig, spec: TensorSpec, shape: Sequence[int]) -> None:
    """`shape` fits `spec`: same rank, fixed dimensions equal, batch within max_batch_size."""
    label = f'input "{spec.name}"'
    given, wanted = codec.format_shape(shape), codec.format_shape(spec.shape)
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"{label}: shape {given} has a negative dimension")
    if len(shape) != len(spec.shape) or any(
        want not in (-1, have) for want, have in zip(spec.shape, shape, strict=True)
    ):
        raise InvalidArgument(f"{label}: shape {given} does not match the model's {wanted}")
    if config.batched:
        batch = shape[0]
        if batch > config.max_batch_size:
            raise InvalidArgument(
                f"{label}: batch of {batch} exceeds the model's max_batch_size "
                f"{config.max_batch_size}"
            )
        if batch == 0:
            raise InvalidArgument(f"{label}: batch of 0; send at least one row")


def requested_outputs(config: ModelConfig, request: ModelInferRequest) -> list[TensorSpec]:
    """The outputs the request asks for, in its order; all of them when it names none."""
    if not request.outputs:
        return list(config.outputs)
    specs: list[TensorSpec] = []
    for wanted in request.outputs:
        spec = config.output(wanted.name)
        if spec is None:
            raise InvalidArgument(
                f'unknown output "{wanted.name}" requested; model "{config.name}" has '
                f"{_names(config.outputs)}"
            )
        if spec in specs:
            raise InvalidArgument(f'output "{wanted.name}" requested more than once')
        specs.append(spec)
    return specs


def _names(specs: Sequence[TensorSpec]) -> str:
    return _names_of([s.name for s in specs])


def _names_of(names: Sequence[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)
