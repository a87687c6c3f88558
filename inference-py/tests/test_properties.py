"""Property tests (Hypothesis) of the tensor codec and the request validation.

Round trips: every datatype, raw and typed contents, any shape; BYTES elements
with NUL bytes, non-ASCII text and empty strings. Validation: whatever shapes,
datatypes and bytes a request carries, it fails only with a TandemError.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tandem_inference import codec
from tandem_inference.errors import TandemError
from tandem_inference.model_config import ModelConfig, TensorSpec
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.validation import decode_inputs, requested_outputs

LABEL = 'input "x"'
FIXED = sorted(name for name, dt in codec.DATATYPES.items() if not dt.is_bytes)
TYPED = sorted(name for name, dt in codec.DATATYPES.items() if dt.contents_field)
CONTENTS_FIELDS = sorted(
    {dt.contents_field for dt in codec.DATATYPES.values() if dt.contents_field}
)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)
ELEMENT = st.one_of(
    st.binary(max_size=12),  # NUL bytes and any other byte
    st.text(max_size=6).map(str.encode),  # non-ASCII text, UTF-8
    st.just(b""),
)
# Shapes a caller may claim: negative, zero, huge (beyond what any message holds).
CLAIMED_SHAPE = st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=4)
SMALL_SHAPE = st.lists(st.integers(min_value=-2, max_value=6), max_size=4)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal in shape, dtype and bits (so NaNs and -0.0 count)."""
    if a.dtype == object:
        return a.shape == b.shape and b.dtype == object and a.tolist() == b.tolist()
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@st.composite
def fixed_arrays(draw: st.DrawFn, datatypes: list[str]) -> tuple[str, np.ndarray]:
    name = draw(st.sampled_from(datatypes))
    return name, draw(hnp.arrays(codec.DATATYPES[name].dtype, SHAPES))


@st.composite
def bytes_arrays(draw: st.DrawFn) -> np.ndarray:
    shape = draw(SHAPES)
    items = draw(st.lists(ELEMENT, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


@given(fixed_arrays(FIXED))
def test_raw_round_trip_of_fixed_size_datatypes(case: tuple[str, np.ndarray]) -> None:
    name, array = case
    decoded = codec.decode_raw(LABEL, name, array.shape, codec.encode_raw(array))
    assert same(decoded, array)


@given(fixed_arrays([t for t in TYPED if t != "BYTES"]))
def test_typed_round_trip_of_fixed_size_datatypes(case: tuple[str, np.ndarray]) -> None:
    name, array = case
    contents = codec.encode_contents(array)
    decoded = codec.decode_contents(LABEL, name, array.shape, contents)
    # Typed contents carry values, not bits: NaN payloads may not survive, NaN does.
    if array.dtype.kind == "f":
        assert decoded.dtype == array.dtype
        assert np.array_equal(decoded, array, equal_nan=True)
    else:
        assert same(decoded, array)


@given(bytes_arrays())
def test_bytes_round_trip_raw_and_typed(array: np.ndarray) -> None:
    raw = codec.encode_raw(array)
    assert same(codec.decode_raw(LABEL, "BYTES", array.shape, raw), array)
    contents = codec.encode_contents(array)
    assert same(codec.decode_contents(LABEL, "BYTES", array.shape, contents), array)


@given(
    datatype=st.one_of(st.sampled_from(sorted(codec.DATATYPES)), st.text(max_size=8)),
    shape=st.one_of(CLAIMED_SHAPE, SMALL_SHAPE),
    raw=st.binary(max_size=64),
)
# Found by this test: BYTES allocated its elements before checking the bytes.
@example(datatype="BYTES", shape=[2**40], raw=b"")
@example(datatype="BYTES", shape=[10**12, 10**6], raw=b"\x00" * 8)
def test_decoding_any_raw_bytes_fails_only_with_a_tandem_error(
    datatype: str, shape: list[int], raw: bytes
) -> None:
    try:
        array = codec.decode_raw(LABEL, datatype, shape, raw)
    except TandemError:
        return
    assert list(array.shape) == shape


# A model taking one input of every datatype, any shape after the batch dimension.
EVERY_DATATYPE = ModelConfig(
    name="every",
    backend="onnxruntime",
    platform="onnxruntime_onnx",
    max_batch_size=8,
    inputs=tuple(TensorSpec(name.lower(), name, (-1, -1)) for name in sorted(codec.DATATYPES)),
    outputs=(TensorSpec("out", "FP32", (-1,)),),
)
INPUT_NAMES = [spec.name for spec in EVERY_DATATYPE.inputs]


@st.composite
def infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="every")
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 4))):
        tensor = request.inputs.add(
            name=draw(st.one_of(st.sampled_from(INPUT_NAMES), st.text(max_size=5))),
            datatype=draw(st.one_of(st.sampled_from(sorted(codec.DATATYPES)), st.text(max_size=5))),
            shape=draw(st.one_of(SMALL_SHAPE, CLAIMED_SHAPE)),
        )
        if raw:
            request.raw_input_contents.append(draw(st.binary(max_size=48)))
        elif draw(st.booleans()):
            contents: Any = tensor.contents
            field = draw(st.sampled_from(CONTENTS_FIELDS))
            values = getattr(contents, field)
            if field == "bytes_contents":
                values.extend(draw(st.lists(ELEMENT, max_size=6)))
            elif field == "bool_contents":
                values.extend(draw(st.lists(st.booleans(), max_size=6)))
            elif field in ("fp32_contents", "fp64_contents"):
                values.extend(draw(st.lists(st.floats(width=32), max_size=6)))
            else:
                signed = field.startswith("int")
                bits = 64 if "64" in field else 32
                low, high = (
                    (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
                )
                values.extend(draw(st.lists(st.integers(low, high), max_size=6)))
    if raw and draw(st.booleans()):  # a mismatch between inputs and raw entries
        request.raw_input_contents.append(b"")
    for name in draw(
        st.lists(st.one_of(st.sampled_from(["out"]), st.text(max_size=4)), max_size=2)
    ):
        request.outputs.add(name=name)
    return request


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(infer_requests())
def test_validation_fails_only_with_a_tandem_error(request: pb.ModelInferRequest) -> None:
    try:
        arrays = decode_inputs(EVERY_DATATYPE, request)
        requested_outputs(EVERY_DATATYPE, request)
    except TandemError:
        return
    assert set(arrays) == set(INPUT_NAMES)
