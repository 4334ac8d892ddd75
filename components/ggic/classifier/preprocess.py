"""Preprocessing: a decoded BGR image in, the model's input tensor out, as the profile says.

Order of operations (the same for every profile):
1. resize: ``stretch`` to the input size, or ``crop``: resize the short side (aspect kept,
   long side truncated as torchvision does) then cut the centre (offsets rounded as
   torchvision's CenterCrop does);
2. channel order: BGR (OpenCV) to RGB unless the profile wants BGR;
3. ``x * scale``, then ``(x - mean) / std`` per channel, in float32;
4. layout: NHWC or NCHW, with a batch dimension of 1.
"""

from __future__ import annotations

import cv2
import numpy as np

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
    """The smallest (width, height) a reduced decode may produce for this profile."""
    new_w, new_h, _, _ = resize_plan(width, height, profile)
    return new_w, new_h


def preprocess(image_bgr: np.ndarray, profile: ModelProfile) -> np.ndarray:
    """Turn a BGR uint8 image (H, W, 3) into the model's float32 input tensor."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected a BGR image of shape (H, W, 3), got {image_bgr.shape}")
    out_h, out_w = profile.size  # type: ignore[misc]
    new_w, new_h, left, top = resize_plan(image_bgr.shape[1], image_bgr.shape[0], profile)
    if (new_w, new_h) != (image_bgr.shape[1], image_bgr.shape[0]):
        image_bgr = cv2.resize(
            image_bgr, (new_w, new_h), interpolation=_INTERPOLATION[profile.interpolation]
        )
    image = image_bgr[top : top + out_h, left : left + out_w]
    if profile.channel_order == "RGB":
        image = image[:, :, ::-1]
    # (x * scale - mean) / std  ==  x * (scale / std) - mean / std, one multiply-add per value
    gain = (profile.scale / np.asarray(profile.std, dtype=np.float64)).astype(np.float32)
    offset = (np.asarray(profile.mean, dtype=np.float64) / np.asarray(profile.std)).astype(
        np.float32
    )
    tensor = image.astype(np.float32) * gain - offset
    if profile.layout == "NCHW":
        tensor = tensor.transpose(2, 0, 1)
    return np.ascontiguousarray(tensor[np.newaxis])
