from __future__ import annotations

import struct

import numpy as np
import pytest

from tandem_inference import codec
from tandem_inference.errors import InvalidArgument
from tandem_inference.pb.grpc_service_pb2 import InferTensorContents

LABEL = 'input "x"'

# One array per datatype, with values at the edges of each type's range.
SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([0, 1, 255], dtype=np.uint8),
    "UINT16": np.array([0, 1, 65535], dtype=np.uint16),
    "UINT32": np.array([0, 1, 2**32 - 1], dtype=np.uint32),
    "UINT64": np.array([0, 1, 2**64 - 1], dtype=np.uint64),
    "INT8": np.array([-128, 0, 127], dtype=np.int8),
    "INT16": np.array([-32768, 0, 32767], dtype=np.int16),
    "INT32": np.array([-(2**31), 0, 2**31 - 1], dtype=np.int32),
    "INT64": np.array([[-(2**63), 0], [1, 2**63 - 1]], dtype=np.int64),
    "FP16": np.array([-1.5, 0.0, 65504.0], dtype=np.float16),
    "FP32": np.array([[-1.5, 0.0], [np.inf, 3.25]], dtype=np.float32),
    "FP64": np.array([-1e300, 0.0, 1e-300], dtype=np.float64),
    "BYTES": np.array([[b"", b"a"], [b"\x00\xff", "é".encode()]], dtype=object),
}


def test_every_datatype_has_a_sample() -> None:
    assert set(SAMPLES) == set(codec.DATATYPES)


@pytest.mark.parametrize("datatype", SAMPLES)
def test_raw_round_trip(datatype: str) -> None:
    array = SAMPLES[datatype]
    assert codec.datatype_of(array.dtype).name == datatype
    decoded = codec.decode_raw(LABEL, datatype, array.shape, codec.encode_raw(array))
    assert decoded.shape == array.shape
    assert decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize("datatype", [d for d in SAMPLES if d != "FP16"])
def test_contents_round_trip(datatype: str) -> None:
    array = SAMPLES[datatype]
    contents = codec.encode_contents(array)
    decoded = codec.decode_contents(LABEL, datatype, array.shape, contents)
    assert decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)


def test_raw_decode_is_a_view_not_a_copy() -> None:
    raw = np.arange(6, dtype="<f4").tobytes()
    decoded = codec.decode_raw(LABEL, "FP32", [2, 3], raw)
    assert not decoded.flags.writeable
    assert decoded.base is not None


def test_raw_is_little_endian() -> None:
    assert codec.encode_raw(np.array([1], dtype=">i4")) == b"\x01\x00\x00\x00"
    assert codec.decode_raw(LABEL, "INT32", [1], b"\x01\x00\x00\x00")[0] == 1


def test_raw_bytes_layout_is_length_prefixed() -> None:
    raw = codec.encode_raw(np.array([b"ab", b""], dtype=object))
    assert raw == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)


def test_bytes_from_fixed_width_numpy_strings() -> None:
    raw = codec.encode_raw(np.array([b"ab", b"c"]))
    assert list(codec.decode_raw(LABEL, "BYTES", [2], raw)) == [b"ab", b"c"]


def test_zero_elements() -> None:
    assert codec.decode_raw(LABEL, "FP32", [0, 64], b"").shape == (0, 64)
    assert codec.decode_raw(LABEL, "BYTES", [0], b"").shape == (0,)


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "words"),
    [
        ("FP32", [2, 3], b"\x00" * 20, ["needs 24 bytes", "hold 20"]),
        ("FP32", [2, 3], b"\x00" * 28, ["needs 24 bytes", "hold 28"]),
        ("INT64", [1], b"", ["needs 8 bytes", "hold 0"]),
        ("BYTES", [2], struct.pack("<I", 1) + b"a", ["needs 2 elements", "hold 1"]),
        ("BYTES", [1], struct.pack("<I", 5) + b"ab", ["claims 5 bytes", "2 remain"]),
        ("BYTES", [1], b"\x01\x00", ["needs 1 elements", "hold 0"]),
        ("BYTES", [1], struct.pack("<I", 1) + b"ab", ["1 bytes more"]),
        ("FP32", [-1, 64], b"", ["negative dimension"]),
    ],
)
def test_raw_length_mismatch(datatype: str, shape: list[int], raw: bytes, words: list[str]) -> None:
    with pytest.raises(InvalidArgument) as caught:
        codec.decode_raw(LABEL, datatype, shape, raw)
    assert caught.value.message.startswith(LABEL)
    for word in words:
        assert word in caught.value.message


def test_huge_claimed_shape_does_not_overflow() -> None:
    with pytest.raises(InvalidArgument, match="needs 256000000000000 bytes"):
        codec.decode_raw(LABEL, "FP32", [10**12, 64], b"\x00" * 256)


def test_contents_count_mismatch() -> None:
    contents = InferTensorContents(fp32_contents=[1.0, 2.0])
    with pytest.raises(InvalidArgument, match=r'input "x": shape \[3\] needs 3 elements, '):
        codec.decode_contents(LABEL, "FP32", [3], contents)


def test_contents_in_another_field_count_as_missing() -> None:
    contents = InferTensorContents(int_contents=[1, 2, 3])
    with pytest.raises(InvalidArgument, match="fp32_contents holds 0"):
        codec.decode_contents(LABEL, "FP32", [3], contents)


@pytest.mark.parametrize(
    ("datatype", "contents"),
    [
        ("INT8", InferTensorContents(int_contents=[128])),
        ("INT16", InferTensorContents(int_contents=[-32769])),
        ("UINT8", InferTensorContents(uint_contents=[256])),
    ],
)
def test_contents_out_of_range(datatype: str, contents: InferTensorContents) -> None:
    with pytest.raises(InvalidArgument, match=f"outside the range of {datatype}"):
        codec.decode_contents(LABEL, datatype, [1], contents)


def test_fp16_only_travels_raw() -> None:
    with pytest.raises(InvalidArgument, match="FP16 travels only as raw contents"):
        codec.decode_contents(LABEL, "FP16", [1], InferTensorContents())
    with pytest.raises(InvalidArgument, match="FP16 travels only as raw contents"):
        codec.encode_contents(np.zeros(1, dtype=np.float16))


@pytest.mark.parametrize("name", ["FP128", "BF16", "fp32", ""])
def test_unsupported_datatype(name: str) -> None:
    with pytest.raises(InvalidArgument, match=f'unsupported datatype "{name}"; supported: BOOL'):
        codec.lookup(name)


def test_numpy_dtype_without_datatype() -> None:
    with pytest.raises(InvalidArgument, match="complex64"):
        codec.datatype_of(np.dtype(np.complex64))
