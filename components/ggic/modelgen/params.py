"""Read and write TVM ``.params`` files (the ``SaveParams`` format DLR loads).

Layout, all little-endian::

    u64 0xF7E58D4F05049CB7        list magic
    u64 0                         reserved
    u64 n, n x (u64 len, utf-8 name)
    u64 n, n x tensor:
        u64 0xDD5E40F096B4A13F    NDArray magic
        u64 0                     reserved
        i32 device_type (1 = CPU), i32 device_id (0)
        i32 ndim
        u8 type code, u8 bits, u16 lanes
        i64 shape[ndim]
        i64 nbytes, then nbytes of C-contiguous data
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .dtypes import dl_type, dtype_name, dtype_of_array, numpy_dtype

log = logging.getLogger(__name__)

PARAMS_LIST_MAGIC = 0xF7E58D4F05049CB7
NDARRAY_MAGIC = 0xDD5E40F096B4A13F
DEVICE_CPU = 1


class ParamsFormatError(ValueError):
    """A ``.params`` file is truncated or not in the TVM format."""


def encode_params(params: Mapping[str, np.ndarray]) -> bytes:
    """The bytes of a ``.params`` file holding ``params`` in the given order."""
    names = list(params)
    chunks = [struct.pack("<QQQ", PARAMS_LIST_MAGIC, 0, len(names))]
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"param names must be non-empty strings, got {name!r}")
        raw = name.encode("utf-8")
        chunks.append(struct.pack("<Q", len(raw)))
        chunks.append(raw)
    chunks.append(struct.pack("<Q", len(names)))
    for name in names:
        chunks.append(_encode_tensor(name, params[name]))
    return b"".join(chunks)


def _encode_tensor(name: str, value: np.ndarray) -> bytes:
    array = np.asarray(value)
    dtype = dtype_of_array(array)
    code, bits, lanes = dl_type(dtype)
    data = np.ascontiguousarray(array, dtype=numpy_dtype(dtype)).tobytes()
    header = struct.pack(
        "<QQiiiBBH", NDARRAY_MAGIC, 0, DEVICE_CPU, 0, array.ndim, code, bits, lanes
    )
    shape = struct.pack(f"<{array.ndim}q", *array.shape)
    log.debug("param %s: %s %s, %d bytes", name, dtype, array.shape, len(data))
    return header + shape + struct.pack("<q", len(data)) + data


def decode_params(blob: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """Parse the bytes of a ``.params`` file into name -> array (copies, writeable)."""
    reader = _Reader(blob, source)
    magic, _reserved = reader.unpack("<QQ")
    if magic != PARAMS_LIST_MAGIC:
        raise ParamsFormatError(f"{source}: bad magic {magic:#x}, not a TVM params file")
    (num_names,) = reader.unpack("<Q")
    names = []
    for _ in range(num_names):
        (length,) = reader.unpack("<Q")
        names.append(reader.take(length).decode("utf-8"))
    (num_arrays,) = reader.unpack("<Q")
    if num_arrays != num_names:
        raise ParamsFormatError(f"{source}: {num_names} names but {num_arrays} arrays")
    out: dict[str, np.ndarray] = {}
    for name in names:
        out[name] = _decode_tensor(reader, name)
    if reader.remaining():
        raise ParamsFormatError(f"{source}: {reader.remaining()} trailing bytes")
    return out


def _decode_tensor(reader: _Reader, name: str) -> np.ndarray:
    magic, _reserved, device_type, _device_id, ndim = reader.unpack("<QQiii")
    if magic != NDARRAY_MAGIC:
        raise ParamsFormatError(f"{reader.source}: param {name}: bad array magic {magic:#x}")
    if device_type != DEVICE_CPU:
        raise ParamsFormatError(f"{reader.source}: param {name}: device {device_type} != CPU")
    code, bits, lanes = reader.unpack("<BBH")
    try:
        dtype = dtype_name(code, bits, lanes)
    except ValueError as exc:
        raise ParamsFormatError(f"{reader.source}: param {name}: {exc}") from None
    shape = reader.unpack(f"<{ndim}q") if ndim else ()
    (nbytes,) = reader.unpack("<q")
    np_dtype = numpy_dtype(dtype)
    expected = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    if nbytes != expected:
        raise ParamsFormatError(
            f"{reader.source}: param {name}: {nbytes} data bytes, shape {shape} needs {expected}"
        )
    data = reader.take(nbytes)
    return np.frombuffer(data, dtype=np_dtype).reshape(shape).astype(np_dtype.newbyteorder("="))


class _Reader:
    def __init__(self, blob: bytes, source: str) -> None:
        self.blob = memoryview(blob)
        self.pos = 0
        self.source = source

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.blob):
            raise ParamsFormatError(f"{self.source}: truncated at byte {self.pos}")
        chunk = bytes(self.blob[self.pos : self.pos + n])
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def remaining(self) -> int:
        return len(self.blob) - self.pos


def write_params(path: str | os.PathLike, params: Mapping[str, np.ndarray]) -> None:
    """Write ``params`` to ``path`` in the TVM ``.params`` format."""
    Path(path).write_bytes(encode_params(params))


def read_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a TVM ``.params`` file into name -> array."""
    p = Path(path)
    return decode_params(p.read_bytes(), str(p))
