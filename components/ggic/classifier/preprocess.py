"""Preprocessing: a decoded BGR image in, the model's input tensor out, as the profile says.

Order of operations (the same for every profile):
1. resize: ``stretch`` to the input size, or ``crop``: resize the short side (aspect kept,
   long side truncated as torchvision does) then cut the centre (offsets rounded as
   torchvision's CenterCrop does);
2. channel order: BGR (OpenCV) to RGB unless the profile wants BGR;
3. ``x * scale``, then ``(x - mean) / std`` per channel, in float32;
4. layout: NHWC or NCHW, with a batch dimension of 1.

:class:`Preprocessor` does only the work a profile needs, in the cheapest order: the centre is
cut before the channels are swapped (a view, no copy), the swap is one ``cvtColor`` on the
224x224 crop, and the cast to float32 writes straight into the output tensor. Steps that are the
identity in float32 (``* 1``, ``- 0``: the ModelStore and EfficientNet-Lite0 profiles feed raw
0..255 pixels) are skipped; the rest are the same float32 operations in the same order as the
straightforward ``x.astype(float32) * (scale / std) - mean / std``, so every profile's tensor is
bit-identical to it. Output tensors can come from a :class:`TensorPool` so that steady-state
preprocessing allocates nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import cv2
import numpy as np

from .decode import reduction_for
from .profiles import ModelProfile

_INTERPOLATION = {
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


def resize_plan(width: int, height: int, profile: ModelProfile) -> tuple[int, int, int, int]:
    """(resized_width, resized_height, crop_left, crop_top) for an image of this size."""
    assert profile.size is not None, "profile size must be known (discovered at model load)"
    out_h, out_w = profile.size
    if profile.resize == "stretch":
        return out_w, out_h, 0, 0
    short = profile.short_side_for(profile.size)
    if width <= height:
        new_w, new_h = short, int(short * height / width)
    else:
        new_w, new_h = int(short * width / height), short
    new_w, new_h = max(new_w, out_w), max(new_h, out_h)
    left = int(round((new_w - out_w) / 2.0))
    top = int(round((new_h - out_h) / 2.0))
    return new_w, new_h, left, top


def needed_decode_size(width: int, height: int, profile: ModelProfile) -> tuple[int, int]:
    """The smallest (width, height) a 1/4 or 1/8 JPEG decode may produce for this profile:
    twice the size the resize step produces (a stretch profile's input size, a crop profile's
    short-side resize before the crop), or the image's own size where that is smaller."""
    new_w, new_h, _, _ = resize_plan(width, height, profile)
    return min(width, 2 * new_w), min(height, 2 * new_h)


#: A 1/2 JPEG decode may come out this much smaller than the resize step's size (which then
#: enlarges it by at most 16/15): 640x480 and 720x480 decode at 320x240 / 360x240 for 341x256.
HALF_DECODE_MIN_FRACTION = 15 / 16


def jpeg_reduction(width: int, height: int, profile: ModelProfile) -> int:
    """The DCT scaling (1, 2, 4 or 8) to decode a ``width`` x ``height`` JPEG at for this profile.

    The rule, chosen by measurement on the sample photos at 640x480, 1920x1080 and 4032x3024
    (and 1920/4032 wide in their own aspect) through the real EfficientNet-Lite0
    (``tests/test_reduced_decode_top1.py``) and by speed (``benchmarks/perf_prepare.py``):

    - the largest reduction that leaves at least twice the resize step's size
      (:func:`needed_decode_size`): libjpeg's DCT scaling is a box-like low-pass filter, and
      the profile's resize (bicubic for Lite0, which does not filter) then still starts from a
      2x-or-more downscale, as from a full decode. Decoding nearer the resize size changed
      answers: at 1/4 of 1920x1080 (480x270 for 455x256) ``chelsea`` turned from "tiger cat"
      into "Egyptian cat" and ``rocket`` from "missile" into "drilling platform";
    - and where that allows no reduction, 1/2 when the image is 15/8 to 2 times the resize
      size (a VGA camera's 640x480 for 341x256): the full decode's resize then shrinks by less
      than 2x, and the half decode enlarged by at most 16/15 gives the same answers at a third
      less decode time. Nearer 1/2 of the doubled size it did not (1/2 of 1280x720 changed
      ``chelsea`` and ``astronaut``), so the window stops below 2.

    A near-tie between two classes can still go either way: with photos beyond the samples
    (textures such as grass or gravel) both rules change some answers, as re-encoding the JPEG
    at another size does.
    """
    new_w, new_h, _, _ = resize_plan(width, height, profile)
    factor = reduction_for(width, height, needed_decode_size(width, height, profile))
    if factor == 1 and (width < 2 * new_w or height < 2 * new_h):
        half_w, half_h = -(-width // 2), -(-height // 2)  # libjpeg rounds up
        if (half_w >= HALF_DECODE_MIN_FRACTION * new_w
                and half_h >= HALF_DECODE_MIN_FRACTION * new_h):
            return 2
    return factor


def _planned_size(width: int, height: int,
                  full_size: tuple[int, int] | None) -> tuple[int, int]:
    """``full_size`` if (width, height) is its 1/2, 1/4 or 1/8 reduction, else (width, height)
    (the header's size may also be rotated by the decoder's EXIF orientation: then unused)."""
    if full_size is not None and tuple(full_size) != (width, height):
        full_w, full_h = full_size
        for factor in (2, 4, 8):
            if (-(-full_w // factor), -(-full_h // factor)) == (width, height):
                return full_w, full_h
    return width, height


def _affine(profile: ModelProfile) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(gain, offset) per channel in float32, each None where it is the identity."""
    # (x * scale - mean) / std  ==  x * (scale / std) - mean / std, one multiply-add per value
    std = np.asarray(profile.std, dtype=np.float64)
    gain = (profile.scale / std).astype(np.float32)
    offset = (np.asarray(profile.mean, dtype=np.float64) / std).astype(np.float32)
    # x * 1 == x and x - (+0.0) == x exactly in float32 (also for x = -0.0), so skipping them
    # is exact; x - (-0.0) turns -0.0 into +0.0, so a -0.0 offset (mean 0, std < 0) stays
    identity_offset = bool(np.all(offset == 0.0) and not np.any(np.signbit(offset)))
    return (None if np.all(gain == 1.0) else gain), (None if identity_offset else offset)


class TensorPool:
    """Reusable output tensors of one shape. A tensor taken is the caller's alone until it is
    given back (after the model has consumed it); one never given back is simply garbage
    collected, and an empty pool allocates a new one, so a lost tensor costs memory once, never
    a wrong answer."""

    def __init__(self, shape: Sequence[int], keep: int = 4) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.keep = keep
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.allocated = 0

    def take(self) -> np.ndarray:
        with self._lock:
            if self._free:
                return self._free.pop()
            self.allocated += 1
        return np.empty(self.shape, dtype=np.float32)

    def give_back(self, tensor: np.ndarray) -> None:
        if tensor.shape != self.shape or tensor.dtype != np.float32:
            raise ValueError(f"a {tensor.dtype} {tensor.shape} tensor is not from this pool")
        with self._lock:
            if any(t is tensor for t in self._free):
                raise ValueError("tensor given back twice")
            if len(self._free) < self.keep:
                self._free.append(tensor)


class Preprocessor:
    """Preprocessing for one (completed) profile, its constants computed once."""

    def __init__(self, profile: ModelProfile) -> None:
        if profile.size is None or profile.layout is None:
            raise ValueError(f"profile {profile.name} is not completed (size/layout unknown)")
        self.profile = profile
        self.size = profile.size
        self.interpolation = _INTERPOLATION[profile.interpolation]
        self.swap_channels = profile.channel_order == "RGB"
        self.nchw = profile.layout == "NCHW"
        self.gain, self.offset = _affine(profile)
        out_h, out_w = profile.size
        self.shape = (1, 3, out_h, out_w) if self.nchw else (1, out_h, out_w, 3)

    def __call__(self, image_bgr: np.ndarray, out: np.ndarray | None = None,
                 full_size: tuple[int, int] | None = None) -> np.ndarray:
        """Turn a BGR uint8 image (H, W, 3) into the model's float32 input tensor (in ``out``,
        a C-contiguous float32 array of the model's input shape, when given).

        ``full_size``: the (width, height) in the image's header. When the image is a reduced
        JPEG decode of it (1/2, 1/4 or 1/8, rounded up as libjpeg does), it is resized and
        cropped exactly as the full decode would be (:func:`resize_plan` of ``full_size``), not
        by its own rounded size, whose aspect can differ enough to move the crop a pixel."""
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"expected a BGR image of shape (H, W, 3), got {image_bgr.shape}")
        if out is None:
            out = np.empty(self.shape, dtype=np.float32)
        elif out.shape != self.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a contiguous float32 array of shape {self.shape}")
        out_h, out_w = self.size
        new_w, new_h, left, top = resize_plan(
            *_planned_size(image_bgr.shape[1], image_bgr.shape[0], full_size), self.profile)
        if (new_w, new_h) != (image_bgr.shape[1], image_bgr.shape[0]):
            image_bgr = cv2.resize(image_bgr, (new_w, new_h), interpolation=self.interpolation)
        crop = image_bgr[top : top + out_h, left : left + out_w]  # a view: nothing copied
        pixels = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB) if self.swap_channels else crop
        if self.nchw:
            for channel in range(3):
                self._affine_into(pixels[:, :, channel], out[0, channel], channel)
        else:
            self._affine_into(pixels, out[0], None)
        return out

    def _affine_into(self, pixels: np.ndarray, out: np.ndarray, channel: int | None) -> None:
        """out = float32(pixels) [* gain] [- offset], the same float32 operations as
        ``pixels.astype(float32) * gain - offset``."""
        gain = self.gain if channel is None or self.gain is None else self.gain[channel]
        offset = self.offset if channel is None or self.offset is None else self.offset[channel]
        np.copyto(out, pixels, casting="safe")
        if gain is not None:
            np.multiply(out, gain, out=out)
        if offset is not None:
            np.subtract(out, offset, out=out)


_PREPROCESSORS: dict[ModelProfile, Preprocessor] = {}
_PREPROCESSORS_LOCK = threading.Lock()


def preprocessor_for(profile: ModelProfile) -> Preprocessor:
    """The (cached) :class:`Preprocessor` of a completed profile."""
    try:
        hash(profile)
    except TypeError:  # a profile built by hand with a list somewhere: not cacheable
        return Preprocessor(profile)
    with _PREPROCESSORS_LOCK:
        found = _PREPROCESSORS.get(profile)
        if found is None:
            if len(_PREPROCESSORS) >= 32:  # profiles come from configuration: keep it bounded
                _PREPROCESSORS.clear()
            found = _PREPROCESSORS[profile] = Preprocessor(profile)
        return found


def preprocess(image_bgr: np.ndarray, profile: ModelProfile,
               out: np.ndarray | None = None,
               full_size: tuple[int, int] | None = None) -> np.ndarray:
    """Turn a BGR uint8 image (H, W, 3) into the model's float32 input tensor
    (``full_size``: see :meth:`Preprocessor.__call__`)."""
    return preprocessor_for(profile)(image_bgr, out, full_size)
