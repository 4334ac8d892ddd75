"""Tensor element types as TVM names them ("float32") and as DLPack encodes them.

DLPack's ``DLDataType`` is ``{u8 code, u8 bits, u16 lanes}`` with code 0 = int, 1 = uint,
2 = float. Only scalar types (lanes = 1) that numpy and DLR both know are supported.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DL_INT = 0
DL_UINT = 1
DL_FLOAT = 2

_CODE_PREFIX = {DL_INT: "int", DL_UINT: "uint", DL_FLOAT: "float"}


class DLType(NamedTuple):
    code: int
    bits: int
    lanes: int = 1


SUPPORTED_DTYPES = (
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
)


def check_dtype(dtype: str) -> str:
    """Return ``dtype`` if it is a supported TVM type name, else raise ValueError."""
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}: use one of {', '.join(SUPPORTED_DTYPES)}")
    return dtype


def dl_type(dtype: str) -> DLType:
    """The DLPack encoding of a TVM dtype name."""
    check_dtype(dtype)
    for code, prefix in _CODE_PREFIX.items():
        rest = dtype[len(prefix) :]
        if dtype.startswith(prefix) and rest.isdigit():
            return DLType(code, int(rest))
    raise AssertionError(dtype)  # pragma: no cover - every supported name parses


def dtype_name(code: int, bits: int, lanes: int = 1) -> str:
    """The TVM dtype name of a DLPack encoding; ValueError when unsupported."""
    prefix = _CODE_PREFIX.get(code)
    name = f"{prefix}{bits}" if prefix is not None else f"code{code}/{bits}"
    if lanes != 1 or name not in SUPPORTED_DTYPES:
        raise ValueError(f"unsupported DLPack type code={code} bits={bits} lanes={lanes}")
    return name


def numpy_dtype(dtype: str) -> np.dtype:
    """The little-endian numpy dtype for a TVM dtype name."""
    return np.dtype(check_dtype(dtype)).newbyteorder("<")


def dtype_of_array(value: np.ndarray) -> str:
    """The TVM dtype name of a numpy array; ValueError when unsupported."""
    name = np.dtype(value.dtype).name
    if name not in SUPPORTED_DTYPES:
        raise ValueError(
            f"unsupported array dtype {name!r}: use one of {', '.join(SUPPORTED_DTYPES)}"
        )
    return name
