"""The TVM ``.params`` writer/reader: bit-exact round trips and the byte layout of the spec."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from ggic.modelgen.params import ParamsFormatError, decode_params, read_params, write_params

DTYPES = [
    "float32",
    "float64",
    "float16",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
]


def _random(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype.startswith("float"):
        return (rng.standard_normal(shape) * 1e3).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_is_bit_exact(tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(DTYPES.index(dtype))
    params = {
        "scalar": _random(rng, dtype, ()),
        "vector": _random(rng, dtype, (7,)),
        "conv.weight": _random(rng, dtype, (4, 3, 3, 3)),
        "odd shape": _random(rng, dtype, (1, 5, 1, 2, 3)),
    }
    path = tmp_path / "x.params"
    write_params(path, params)
    back = read_params(path)
    assert list(back) == list(params)
    for name, value in params.items():
        assert back[name].dtype == value.dtype
        assert back[name].shape == value.shape
        assert back[name].tobytes() == value.tobytes(), name


def test_round_trip_keeps_nan_and_negative_zero_bits(tmp_path: Path) -> None:
    value = np.array([np.nan, -0.0, np.inf, -np.inf, 1e-45], dtype=np.float32)
    write_params(tmp_path / "x.params", {"v": value})
    assert read_params(tmp_path / "x.params")["v"].tobytes() == value.tobytes()


def test_non_contiguous_and_big_endian_input_is_written_as_compact_little_endian(
    tmp_path: Path,
) -> None:
    base = np.arange(24, dtype=">i4").reshape(4, 6)
    view = base[:, ::2].T  # strided, transposed, big-endian
    write_params(tmp_path / "x.params", {"v": view})
    back = read_params(tmp_path / "x.params")["v"]
    np.testing.assert_array_equal(back, view)
    assert back.flags.c_contiguous


def test_byte_layout_of_a_tiny_file_matches_the_spec(tmp_path: Path) -> None:
    write_params(tmp_path / "x.params", {"w": np.array([[1.5, -2.0]], dtype=np.float32)})
    expected = bytes.fromhex(
        "b79c04054f8de5f7"  # list magic 0xF7E58D4F05049CB7, little-endian
        "0000000000000000"  # reserved
        "0100000000000000"  # one name
        "0100000000000000"
        "77"  # len 1, "w"
        "0100000000000000"  # one array
        "3fa1b496f0405edd"  # array magic 0xDD5E40F096B4A13F
        "0000000000000000"  # reserved
        "01000000"
        "00000000"  # device type CPU, device id 0
        "02000000"  # ndim 2
        "02"
        "20"
        "0100"  # float, 32 bits, 1 lane
        "0100000000000000"
        "0200000000000000"  # shape (1, 2)
        "0800000000000000"  # 8 data bytes
        "0000c03f"
        "000000c0"  # 1.5f, -2.0f
    )
    assert (tmp_path / "x.params").read_bytes() == expected


def test_int_and_uint_type_codes(tmp_path: Path) -> None:
    write_params(tmp_path / "x.params", {"a": np.zeros(1, np.int64), "b": np.zeros(1, np.uint8)})
    blob = (tmp_path / "x.params").read_bytes()
    # the DLDataType of each array follows its 16-byte magic+reserved, 8-byte device, 4-byte ndim
    first = blob.index(bytes.fromhex("3fa1b496f0405edd"))
    second = blob.index(bytes.fromhex("3fa1b496f0405edd"), first + 1)
    assert blob[first + 28 : first + 32] == bytes([0, 64, 1, 0])  # int64
    assert blob[second + 28 : second + 32] == bytes([1, 8, 1, 0])  # uint8


def test_empty_params_file(tmp_path: Path) -> None:
    write_params(tmp_path / "x.params", {})
    assert read_params(tmp_path / "x.params") == {}


def test_unsupported_dtype_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        write_params(tmp_path / "x.params", {"b": np.zeros(2, dtype=bool)})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"\0" + b[1:], "bad magic"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\0", "trailing"),
        (lambda b: b.replace(bytes.fromhex("3fa1b496f0405edd"), bytes(8)), "array magic"),
    ],
)
def test_corrupt_files_are_reported(tmp_path: Path, mutate, message: str) -> None:
    write_params(tmp_path / "x.params", {"w": np.ones((2, 2), np.float32)})
    blob = mutate((tmp_path / "x.params").read_bytes())
    with pytest.raises(ParamsFormatError, match=message):
        decode_params(blob)


def test_inconsistent_byte_count_is_reported(tmp_path: Path) -> None:
    write_params(tmp_path / "x.params", {"w": np.ones(3, np.float32)})
    blob = bytearray((tmp_path / "x.params").read_bytes())
    nbytes_at = len(blob) - 12 - 8
    assert struct.unpack_from("<q", blob, nbytes_at) == (12,)
    struct.pack_into("<q", blob, nbytes_at, 16)
    with pytest.raises(ParamsFormatError, match="data bytes"):
        decode_params(bytes(blob))
