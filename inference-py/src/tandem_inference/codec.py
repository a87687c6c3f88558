"""Tensor codec: OIP v2 tensors (typed `contents` or raw bytes) to numpy arrays and back.

Raw tensors are little-endian, row-major and unpadded, one `bytes` entry per tensor;
a BYTES element is a 4-byte little-endian length followed by that many bytes
(Triton's raw format). Fixed-size raw tensors decode with `numpy.frombuffer`, so the
array is a read-only view of the message's bytes, not a copy. BYTES tensors decode to
numpy object arrays holding `bytes`.

Every decode checks the element count implied by the shape against what the
message holds; `label` (for example `input "pixels"`) starts each error message so
that the caller learns which tensor was wrong.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tandem_inference.errors import InvalidArgument
from tandem_inference.pb.grpc_service_pb2 import InferTensorContents

_LENGTH_PREFIX = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Datatype:
    """One OIP datatype: its numpy dtype and the typed-contents field that carries it."""

    name: str
    dtype: np.dtype[Any]
    # None: the datatype travels only as raw contents (the spec has no FP16 field).
    contents_field: str | None
    # The dtype of `contents_field`, when it is wider than `dtype` and values need a range check.
    wire_dtype: np.dtype[Any] | None = None

    @property
    def is_bytes(self) -> bool:
        return self.name == "BYTES"


def _datatype(name: str, dtype: str, field: str | None, wire_dtype: str | None = None) -> Datatype:
    return Datatype(name, np.dtype(dtype), field, np.dtype(wire_dtype) if wire_dtype else None)


DATATYPES: dict[str, Datatype] = {
    d.name: d
    for d in (
        _datatype("BOOL", "?", "bool_contents"),
        _datatype("UINT8", "u1", "uint_contents", "<u4"),
        _datatype("UINT16", "<u2", "uint_contents", "<u4"),
        _datatype("UINT32", "<u4", "uint_contents"),
        _datatype("UINT64", "<u8", "uint64_contents"),
        _datatype("INT8", "i1", "int_contents", "<i4"),
        _datatype("INT16", "<i2", "int_contents", "<i4"),
        _datatype("INT32", "<i4", "int_contents"),
        _datatype("INT64", "<i8", "int64_contents"),
        _datatype("FP16", "<f2", None),
        _datatype("FP32", "<f4", "fp32_contents"),
        _datatype("FP64", "<f8", "fp64_contents"),
        _datatype("BYTES", "O", "bytes_contents"),
    )
}

_BY_DTYPE: dict[np.dtype[Any], Datatype] = {d.dtype: d for d in DATATYPES.values()}


def lookup(name: str) -> Datatype:
    """The datatype called `name`, or InvalidArgument listing the supported ones."""
    try:
        return DATATYPES[name]
    except KeyError:
        supported = ", ".join(DATATYPES)
        raise InvalidArgument(f'unsupported datatype "{name}"; supported: {supported}') from None


def datatype_of(dtype: np.dtype[Any]) -> Datatype:
    """The OIP datatype of a numpy dtype; object and fixed-width bytes arrays are BYTES."""
    if dtype.kind in "OS":
        return DATATYPES["BYTES"]
    try:
        return _BY_DTYPE[dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype]
    except KeyError:
        raise InvalidArgument(f"numpy dtype {dtype} has no OIP datatype") from None


def format_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def element_count(label: str, shape: Sequence[int]) -> int:
    """The number of elements of `shape`; negative dimensions are an error."""
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"{label}: shape {format_shape(shape)} has a negative dimension")
    # Python ints: a claimed shape of 10**12 x 64 must not wrap around.
    return math.prod(shape)


def decode_raw(label: str, datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray:
    """A tensor from its raw bytes; a read-only view of `raw` unless it is BYTES."""
    dt = lookup(datatype)
    count = element_count(label, shape)
    if dt.is_bytes:
        return _split_bytes(label, shape, count, raw).reshape(shape)
    expected = count * dt.dtype.itemsize
    if len(raw) != expected:
        raise InvalidArgument(
            f"{label}: shape {format_shape(shape)} of {dt.name} needs {expected} bytes, "
            f"raw contents hold {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dt.dtype).reshape(shape)


def _split_bytes(label: str, shape: Sequence[int], count: int, raw: bytes) -> np.ndarray:
    view = memoryview(raw)
    # Before allocating: a claimed shape of 2**40 elements in a few bytes must cost
    # an error, not terabytes. Every element takes at least its length prefix.
    at_most = len(view) // _LENGTH_PREFIX.size
    if count > at_most:
        raise InvalidArgument(
            f"{label}: shape {format_shape(shape)} of BYTES needs {count} elements, "
            f"raw contents hold {at_most} at most"
        )
    items = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + _LENGTH_PREFIX.size > len(view):
            raise InvalidArgument(
                f"{label}: shape {format_shape(shape)} of BYTES needs {count} elements, "
                f"raw contents hold {i}"
            )
        (size,) = _LENGTH_PREFIX.unpack_from(view, offset)
        offset += _LENGTH_PREFIX.size
        if offset + size > len(view):
            raise InvalidArgument(
                f"{label}: BYTES element {i} claims {size} bytes, "
                f"{len(view) - offset} remain in raw contents"
            )
        items[i] = bytes(view[offset : offset + size])
        offset += size
    if offset != len(view):
        raise InvalidArgument(
            f"{label}: shape {format_shape(shape)} of BYTES needs {count} elements, "
            f"raw contents hold {len(view) - offset} bytes more"
        )
    return items


def decode_contents(
    label: str, datatype: str, shape: Sequence[int], contents: InferTensorContents
) -> np.ndarray:
    """A tensor from typed contents, from the repeated field that matches its datatype."""
    dt = lookup(datatype)
    count = element_count(label, shape)
    if dt.contents_field is None:
        raise InvalidArgument(f"{label}: {dt.name} travels only as raw contents")
    values = getattr(contents, dt.contents_field)
    if len(values) != count:
        raise InvalidArgument(
            f"{label}: shape {format_shape(shape)} needs {count} elements, "
            f"{dt.contents_field} holds {len(values)}"
        )
    if dt.is_bytes:
        items = np.empty(count, dtype=object)
        items[:] = list(values)
        return items.reshape(shape)
    if dt.wire_dtype is None:
        return np.array(values, dtype=dt.dtype).reshape(shape)
    wide = np.array(values, dtype=dt.wire_dtype)
    limits = np.iinfo(dt.dtype)
    if count and (wide.min() < limits.min or wide.max() > limits.max):
        raise InvalidArgument(
            f"{label}: {dt.contents_field} holds values outside the range of {dt.name} "
            f"[{limits.min}, {limits.max}]"
        )
    return wide.astype(dt.dtype).reshape(shape)


def _as_bytes(item: object) -> bytes:
    # ONNX Runtime hands string tensors back as str: BYTES on the wire are UTF-8.
    return item.encode() if isinstance(item, str) else bytes(item)  # type: ignore[call-overload]


def encode_raw(array: np.ndarray) -> bytes:
    """An array's raw bytes: little-endian and row-major; BYTES with length prefixes."""
    dt = datatype_of(array.dtype)
    if dt.is_bytes:
        return b"".join(
            _LENGTH_PREFIX.pack(len(item)) + item for item in map(_as_bytes, array.ravel())
        )
    return np.ascontiguousarray(array, dtype=dt.dtype).tobytes()


def encode_contents(array: np.ndarray) -> InferTensorContents:
    """An array as typed contents, in the repeated field that matches its datatype."""
    dt = datatype_of(array.dtype)
    if dt.contents_field is None:
        raise InvalidArgument(f"{dt.name} travels only as raw contents")
    contents = InferTensorContents()
    values = array.ravel()
    getattr(contents, dt.contents_field).extend(
        list(map(_as_bytes, values)) if dt.is_bytes else values.tolist()
    )
    return contents
