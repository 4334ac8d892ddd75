"""Reading a request's input: files within the allowed directories, inline bytes, tensors.

Everything here turns a bad input into a typed ClassificationError (IMAGE_NOT_FOUND,
PATH_NOT_ALLOWED, IMAGE_TOO_LARGE, BAD_TENSOR) instead of an exception from deep inside.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..messages import ClassificationError, ErrorCode


@dataclass(frozen=True)
class InputLimits:
    #: Resolved directories paths must lie in; empty: no restriction.
    allowed_dirs: tuple[str, ...] = ()
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000

    @classmethod
    def create(cls, allowed_dirs: Sequence[str], max_image_bytes: int,
               max_image_pixels: int) -> InputLimits:
        resolved = tuple(os.path.realpath(d) for d in allowed_dirs)
        return cls(resolved, max_image_bytes, max_image_pixels)


def check_allowed(path: str, limits: InputLimits) -> str:
    """The resolved path, if it lies inside an allowed directory (symlinks followed)."""
    real = os.path.realpath(path)
    if not limits.allowed_dirs:
        return real
    for directory in limits.allowed_dirs:
        if real == directory or real.startswith(directory.rstrip("/") + "/"):
            return real
    raise ClassificationError(
        ErrorCode.PATH_NOT_ALLOWED,
        f"{path} is outside AllowedImageDirs ({', '.join(limits.allowed_dirs)})",
    )


def read_file(path: str, limits: InputLimits) -> bytes:
    """Read a request's file, refusing missing, unreadable, disallowed and oversize files."""
    real = check_allowed(path, limits)
    try:
        with open(real, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limits.max_image_bytes:
                raise ClassificationError(
                    ErrorCode.IMAGE_TOO_LARGE,
                    f"{path} is {size} bytes, above MaxImageBytes ({limits.max_image_bytes})",
                )
            data = f.read(limits.max_image_bytes + 1)
    except FileNotFoundError:
        raise ClassificationError(ErrorCode.IMAGE_NOT_FOUND, f"{path} does not exist") from None
    except IsADirectoryError:
        raise ClassificationError(ErrorCode.IMAGE_NOT_FOUND, f"{path} is a directory") from None
    except PermissionError:
        raise ClassificationError(
            ErrorCode.IMAGE_NOT_FOUND, f"{path} is not readable by the classifier's user"
        ) from None
    except OSError as exc:
        raise ClassificationError(
            ErrorCode.IMAGE_NOT_FOUND, f"{path} cannot be read: {exc.strerror or exc}"
        ) from None
    if len(data) > limits.max_image_bytes:  # the file grew while we read it
        raise ClassificationError(
            ErrorCode.IMAGE_TOO_LARGE, f"{path} is above MaxImageBytes ({limits.max_image_bytes})"
        )
    return data


def load_tensor(data: bytes, expected_shape: tuple[int, ...], what: str) -> np.ndarray:
    """A preprocessed ``.npy`` tensor for the model's input, as contiguous float32."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ClassificationError(
            ErrorCode.BAD_TENSOR, f"{what} is not a .npy array: {exc}"
        ) from None
    if not isinstance(array, np.ndarray):
        raise ClassificationError(ErrorCode.BAD_TENSOR, f"{what} holds several arrays (.npz)")
    if array.dtype.kind not in "fiu":
        raise ClassificationError(
            ErrorCode.BAD_TENSOR, f"{what} has dtype {array.dtype}; a real-number array is needed"
        )
    if tuple(array.shape) == tuple(expected_shape[1:]) and expected_shape[:1] == (1,):
        array = array[np.newaxis]
    if tuple(array.shape) != tuple(expected_shape):
        raise ClassificationError(
            ErrorCode.BAD_TENSOR,
            f"{what} has shape {list(array.shape)}; the model takes {list(expected_shape)}",
        )
    tensor = np.ascontiguousarray(array, dtype=np.float32)
    if not np.all(np.isfinite(tensor)):
        raise ClassificationError(ErrorCode.BAD_TENSOR, f"{what} contains NaN or infinity")
    return tensor
