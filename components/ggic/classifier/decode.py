"""Decoding encoded images (JPEG, PNG, BMP, WebP) into BGR pixel arrays, safely and fast.

- Nothing reaches OpenCV before :func:`~.formats.probe_image` has named its format (one of
  ``AcceptedImageFormats``) and read its size from the header, and the size is within
  ``MaxImagePixels``: a small file that would decode into gigabytes (a decompression bomb) is
  refused as IMAGE_TOO_LARGE without decoding, and formats whose size we do not read (TIFF,
  JPEG 2000, ...) as UNSUPPORTED_IMAGE. OpenCV's own limit (``OPENCV_IO_MAX_IMAGE_PIXELS``,
  set in ``ggic.classifier``) stays behind it as a second wall.
- JPEGs are decoded at 1/2, 1/4 or 1/8 resolution when the caller asks (libjpeg's DCT
  scaling via ``IMREAD_REDUCED_COLOR_*``, one ``imdecode`` call): decoding is most of the
  preparation time. The pipeline chooses the reduction from the header's size and the model's
  profile (``preprocess.jpeg_reduction``). Every coefficient is still entropy-decoded, so even
  1/8 costs about half a full decode (``benchmarks/perf_prepare.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from ..messages import ClassificationError, ErrorCode
from .formats import (
    DEFAULT_ACCEPTED_FORMATS,
    ImageFormat,
    ImageProbe,
    check_pixels,
    image_dimensions,
    probe_image,
)

__all__ = ["decode_image", "image_dimensions", "is_jpeg", "probe_image", "reduction_for"]

_REDUCED_FLAGS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                  (2, cv2.IMREAD_REDUCED_COLOR_2))
_FLAG_FOR_REDUCTION = {1: cv2.IMREAD_COLOR, **dict(_REDUCED_FLAGS)}


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def reduction_for(width: int, height: int, needed: tuple[int, int]) -> int:
    """The largest JPEG reduction (1, 2, 4 or 8) that keeps the image at least ``needed``.

    ``needed`` is (width, height) that the resize step must start from without upscaling.
    """
    need_w, need_h = needed
    for factor, _flag in _REDUCED_FLAGS:
        # libjpeg rounds reduced sizes up
        if -(-width // factor) >= need_w and -(-height // factor) >= need_h:
            return factor
    return 1


def decode_image(
    data: bytes,
    *,
    max_pixels: int,
    reduction: int = 1,
    what: str = "image",
    accepted: Iterable[ImageFormat] = DEFAULT_ACCEPTED_FORMATS,
    probe: ImageProbe | None = None,
) -> np.ndarray:
    """Decode to a BGR uint8 array (H, W, 3), or raise ClassificationError.

    ``probe`` is the header already read by the caller (read here if not given);
    ``reduction`` (1, 2, 4 or 8) decodes a JPEG at that fraction of its size, rounded up
    (other formats always decode in full).
    """
    if reduction not in _FLAG_FOR_REDUCTION:
        raise ValueError(f"reduction must be 1, 2, 4 or 8, not {reduction!r}")
    if probe is None:
        probe = probe_image(data, accepted, what)
    check_pixels(probe, max_pixels, what)
    flag = cv2.IMREAD_COLOR
    if probe.format is ImageFormat.JPEG:
        flag = _FLAG_FOR_REDUCTION[reduction]
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buffer, flag)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE" in str(exc):
            raise ClassificationError(
                ErrorCode.IMAGE_TOO_LARGE, f"{what} is larger than the decoder's limit "
                "(OPENCV_IO_MAX_IMAGE_PIXELS)") from None
        raise ClassificationError(
            ErrorCode.UNSUPPORTED_IMAGE, f"{what} cannot be decoded as {probe.format.value}"
        ) from None
    except MemoryError:
        raise ClassificationError(
            ErrorCode.IMAGE_TOO_LARGE, f"{what} does not fit in memory once decoded") from None
    if image is None:
        raise ClassificationError(
            ErrorCode.UNSUPPORTED_IMAGE, f"{what} is not a valid {probe.format.value} image")
    return image
