"""Reading a request's input: files within the allowed directories, inline bytes, tensors.

Everything here turns a bad input into a typed ClassificationError (INVALID_REQUEST,
IMAGE_NOT_FOUND, PATH_NOT_ALLOWED, IMAGE_TOO_LARGE, BAD_TENSOR) instead of an exception from
deep inside, and never blocks or allocates more than the limits allow:

- A path is resolved once, by the kernel (``O_PATH``: nothing is opened for reading, so no
  device driver runs and no FIFO blocks). The allowed-directory check applies to the real path
  of the descriptor that was resolved (``/proc/self/fd/N``), and the file is then opened
  through that same descriptor, so renaming or swapping a directory for a symlink in between
  cannot make the classifier read a file outside ``AllowedImageDirs``.
- Only regular files are read (a FIFO, socket, device or directory is refused at once), with
  ``O_NONBLOCK | O_NOCTTY``, and never more than ``MaxImageBytes + 1`` bytes.
- A ``.npy`` header is parsed before anything is allocated: plain ``.npy`` only, a real-number
  dtype, the model's input shape, and exactly the bytes that shape needs.
"""

from __future__ import annotations

import ast
import os
import stat
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..messages import ClassificationError, ErrorCode, path_problem
from .formats import DEFAULT_ACCEPTED_FORMATS, ImageFormat

_O_PATH = getattr(os, "O_PATH", 0)
_READ_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0))
_CHUNK = 1024 * 1024
#: Longest ``.npy`` header read (numpy writes about 128 bytes).
MAX_NPY_HEADER_BYTES = 4096


@dataclass(frozen=True)
class InputLimits:
    #: Resolved directories paths must lie in; empty: no restriction.
    allowed_dirs: tuple[str, ...] = ()
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    accepted_formats: tuple[ImageFormat, ...] = DEFAULT_ACCEPTED_FORMATS

    @classmethod
    def create(cls, allowed_dirs: Sequence[str], max_image_bytes: int,
               max_image_pixels: int,
               accepted_formats: Iterable[ImageFormat | str] = DEFAULT_ACCEPTED_FORMATS,
               ) -> InputLimits:
        resolved = tuple(os.path.realpath(d) for d in allowed_dirs)
        formats = tuple(f if isinstance(f, ImageFormat) else ImageFormat.parse(f)
                        for f in accepted_formats)
        return cls(resolved, max_image_bytes, max_image_pixels, formats)

    @classmethod
    def from_config(cls, config: Any) -> InputLimits:
        """The limits a ClassifierConfig sets."""
        return cls.create(config.allowed_image_dirs, config.max_image_bytes,
                          config.max_image_pixels, config.accepted_image_formats)


def _inside(real: str, limits: InputLimits) -> bool:
    if not limits.allowed_dirs:
        return True
    return any(real == d or real.startswith(d.rstrip("/") + "/") for d in limits.allowed_dirs)


def _not_allowed(path: str, limits: InputLimits) -> ClassificationError:
    return ClassificationError(
        ErrorCode.PATH_NOT_ALLOWED,
        f"{path} is outside AllowedImageDirs ({', '.join(limits.allowed_dirs)})")


def _os_error(path: str, exc: OSError) -> ClassificationError:
    if isinstance(exc, FileNotFoundError):
        return ClassificationError(ErrorCode.IMAGE_NOT_FOUND, f"{path} does not exist")
    if isinstance(exc, PermissionError):
        return ClassificationError(
            ErrorCode.IMAGE_NOT_FOUND, f"{path} is not readable by the classifier's user")
    if exc.errno == getattr(os, "ENAMETOOLONG", None):
        return ClassificationError(ErrorCode.INVALID_REQUEST, f"{path} is too long")
    return ClassificationError(
        ErrorCode.IMAGE_NOT_FOUND, f"{path} cannot be read: {exc.strerror or type(exc).__name__}")


def _check_text(path: str) -> None:
    problem = path_problem(path)
    if problem is not None:
        raise ClassificationError(ErrorCode.INVALID_REQUEST, f"the path {problem}")


def _file_type(mode: int) -> str | None:
    """None for a regular file, else what it is."""
    if stat.S_ISREG(mode):
        return None
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _resolve(path: str, limits: InputLimits) -> tuple[int, str, bool]:
    """A descriptor for ``path`` (``O_PATH`` where there is one), its real path, checked
    against the allowed directories, and whether that real path came from the descriptor
    itself (``/proc/self/fd``: what was opened, whatever happened to the names meanwhile).
    The caller closes the descriptor."""
    _check_text(path)
    if limits.allowed_dirs:
        # First by name, so a path outside is refused whether or not it exists (no oracle for
        # files outside) and is never opened; the length limits bound realpath()'s work.
        try:
            guess: str | None = os.path.realpath(path)
        except (OSError, ValueError, RecursionError):  # changed meanwhile: the kernel decides
            guess = None
        if guess is not None and not _inside(guess, limits):
            raise _not_allowed(path, limits)
    try:
        fd = os.open(path, (_O_PATH | os.O_CLOEXEC) if _O_PATH else _READ_FLAGS)
    except OSError as exc:
        raise _os_error(path, exc) from None
    except (ValueError, UnicodeError):
        raise ClassificationError(ErrorCode.INVALID_REQUEST, "the path is not valid") from None
    try:
        real, by_fd = os.readlink(f"/proc/self/fd/{fd}"), True
    except OSError:  # no /proc: resolve by name; read_file compares inodes
        try:
            real, by_fd = os.path.realpath(path), False
        except (OSError, ValueError, RecursionError):
            os.close(fd)
            raise ClassificationError(ErrorCode.IMAGE_NOT_FOUND,
                                      f"{path} changed while it was being opened") from None
    if not _inside(real, limits):
        os.close(fd)
        raise _not_allowed(path, limits)
    return fd, real, by_fd


def check_allowed(path: str, limits: InputLimits) -> str:
    """The real path of ``path`` (symlinks followed), if it lies inside an allowed directory."""
    fd, real, _ = _resolve(path, limits)
    os.close(fd)
    return real


def read_file(path: str, limits: InputLimits) -> bytes:
    """Read a request's file: a regular file inside the allowed directories and within
    MaxImageBytes, or a typed ClassificationError. Never blocks, never reads more than
    MaxImageBytes + 1 bytes."""
    handle, real, by_fd = _resolve(path, limits)
    fd = -1
    try:
        resolved = os.fstat(handle)
        kind = _file_type(resolved.st_mode)
        if kind is not None:
            raise ClassificationError(ErrorCode.IMAGE_NOT_FOUND,
                                      f"{path} is {kind}, not a regular file")
        # Open the very inode that was checked, not the name (which may have changed since).
        fd = os.open(f"/proc/self/fd/{handle}" if by_fd else real, _READ_FLAGS)
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (resolved.st_dev, resolved.st_ino):
            raise ClassificationError(ErrorCode.IMAGE_NOT_FOUND,
                                      f"{path} changed while it was being opened")
        if info.st_size > limits.max_image_bytes:
            raise ClassificationError(
                ErrorCode.IMAGE_TOO_LARGE,
                f"{path} is {info.st_size} bytes, above MaxImageBytes ({limits.max_image_bytes})")
        data = _read_at_most(fd, limits.max_image_bytes + 1)
    except OSError as exc:
        raise _os_error(path, exc) from None
    finally:
        if fd >= 0:
            os.close(fd)
        os.close(handle)
    if len(data) > limits.max_image_bytes:  # the file grew while we read it
        raise ClassificationError(
            ErrorCode.IMAGE_TOO_LARGE, f"{path} is above MaxImageBytes ({limits.max_image_bytes})"
        )
    return data


def _read_at_most(fd: int, limit: int) -> bytes:
    parts = []
    total = 0
    while total < limit:
        chunk = os.read(fd, min(_CHUNK, limit - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


# --- .npy tensors -------------------------------------------------------------------------


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    data_offset: int


def _bad(what: str, text: str) -> ClassificationError:
    return ClassificationError(ErrorCode.BAD_TENSOR, f"{what} {text}")


def read_npy_header(data: bytes, what: str = "tensor") -> NpyHeader:
    """The header of a plain ``.npy`` file, parsed without allocating the array."""
    if data[:4] == b"PK\x03\x04":
        raise _bad(what, "is a zip archive (.npz); only a plain .npy array is accepted")
    if data[:6] != b"\x93NUMPY" or len(data) < 10:
        raise _bad(what, "is not a .npy array (no .npy magic)")
    major, minor = data[6], data[7]
    if (major, minor) == (1, 0):
        (length,) = struct.unpack("<H", data[8:10])
        start = 10
    elif (major, minor) in ((2, 0), (3, 0)) and len(data) >= 12:
        (length,) = struct.unpack("<I", data[8:12])
        start = 12
    else:
        raise _bad(what, f"is a .npy of version {major}.{minor}; 1.0, 2.0 or 3.0 is needed")
    if length > MAX_NPY_HEADER_BYTES or start + length > len(data):
        raise _bad(what, f"has a .npy header of {length} bytes (at most "
                   f"{MAX_NPY_HEADER_BYTES}, within the file)")
    raw = data[start : start + length]
    try:
        text = raw.decode("utf-8" if major == 3 else "latin1")
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError,
            TypeError):
        raise _bad(what, "has an unreadable .npy header") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise _bad(what, "has a .npy header without exactly descr, fortran_order and shape")
    shape = header["shape"]
    if (not isinstance(shape, tuple) or len(shape) > 32
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                       for n in shape)):
        raise _bad(what, "has a .npy shape that is not a tuple of sizes")
    descr = header["descr"]
    if not isinstance(descr, str) or len(descr) > 16:
        raise _bad(what, "has a dtype that is not a plain number type")
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError):
        raise _bad(what, f"has an unknown dtype {descr[:16]!r}") from None
    if dtype.kind not in "fiu" or dtype.hasobject or dtype.fields is not None:
        raise _bad(what, f"has dtype {dtype}; a real-number array is needed")
    if not isinstance(header["fortran_order"], bool):
        raise _bad(what, "has a .npy header whose fortran_order is not true or false")
    return NpyHeader(shape, dtype, header["fortran_order"], start + length)


def load_tensor(data: bytes, expected_shape: tuple[int, ...], what: str) -> np.ndarray:
    """A preprocessed ``.npy`` tensor for the model's input, as contiguous float32.

    The header is checked (plain .npy, real-number dtype, the model's input shape with or
    without its batch dimension, exactly the bytes that shape needs) before anything is
    allocated, so a header claiming gigabytes costs nothing."""
    header = read_npy_header(data, what)
    expected = tuple(expected_shape)
    shape = header.shape
    if expected[:1] == (1,) and shape == expected[1:]:
        shape = expected
    if shape != expected:
        raise _bad(what, f"has shape {list(header.shape)}; the model takes {list(expected)}")
    count = 1
    for n in shape:
        count *= n
    needed = count * header.dtype.itemsize
    present = len(data) - header.data_offset
    if present != needed:
        raise _bad(what, f"holds {present} bytes of data; its shape and dtype need {needed}")
    array = np.frombuffer(data, dtype=header.dtype, count=count, offset=header.data_offset)
    array = array.reshape(shape, order="F" if header.fortran_order else "C")
    tensor = np.ascontiguousarray(array, dtype=np.float32)
    if not np.all(np.isfinite(tensor)):
        raise _bad(what, "contains NaN or infinity")
    return tensor
