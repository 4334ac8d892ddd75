"""The classifier's preprocessing as it was before the rewrite (commit 096cc31), kept verbatim
as the reference the rewrite must reproduce bit for bit (tests/test_preprocess_identity.py)."""

from __future__ import annotations

import cv2
import numpy as np

from ggic.classifier.preprocess import resize_plan
from ggic.classifier.profiles import ModelProfile

_INTERPOLATION = {
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


def preprocess_before_rewrite(image_bgr: np.ndarray, profile: ModelProfile) -> np.ndarray:
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
