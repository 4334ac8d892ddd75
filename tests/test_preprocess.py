"""Preprocessing of each profile equals a straightforward numpy reference on real photos."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from ggic.classifier.preprocess import preprocess
from ggic.classifier.profiles import AUTO_DEFAULTS, BUILTIN_PROFILES, ModelProfile


def bilinear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resampling with pixel centres at +0.5 (OpenCV's convention), in float64."""
    in_h, in_w = image.shape[:2]

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        low = np.floor(pos).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, pos - low

    y0, y1, fy = axis(out_h, in_h)
    x0, x1, fx = axis(out_w, in_w)
    img = image.astype(np.float64)
    top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
    bottom = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]


def bicubic(image: np.ndarray, out_h: int, out_w: int, a: float = -0.75) -> np.ndarray:
    """Bicubic resampling (Keys kernel, a = -0.75 as OpenCV uses), centres at +0.5, borders
    replicated, the result clipped to 0..255 as an 8-bit image would be."""

    def weights(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        base = np.floor(pos).astype(int)
        t = pos - base
        taps = np.stack([base - 1, base, base + 1, base + 2], axis=1)
        d = np.abs(np.stack([t + 1, t, 1 - t, 2 - t], axis=1))
        w = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                     np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0.0))
        return np.clip(taps, 0, n_in - 1), w

    in_h, in_w = image.shape[:2]
    rows, wy = weights(out_h, in_h)
    cols, wx = weights(out_w, in_w)
    img = image.astype(np.float64)
    tmp = np.einsum("ok,okwc->owc", wy, img[rows])
    out = np.einsum("pk,hpkc->hpc", wx, tmp[:, cols])
    return np.clip(out, 0, 255)


def reference(bgr: np.ndarray, profile: ModelProfile) -> np.ndarray:
    height, width = bgr.shape[:2]
    out_h, out_w = profile.size
    if profile.resize == "stretch":
        new_h, new_w = out_h, out_w
    else:
        short = profile.resize_short or round(min(profile.size) / 0.875)
        if width <= height:
            new_w, new_h = short, int(short * height / width)
        else:
            new_h, new_w = short, int(short * width / height)
    resample = {"linear": bilinear, "cubic": bicubic}[profile.interpolation]
    resized = resample(bgr, new_h, new_w)
    top, left = int(round((new_h - out_h) / 2)), int(round((new_w - out_w) / 2))
    crop = resized[top:top + out_h, left:left + out_w]
    if profile.channel_order == "RGB":
        crop = crop[:, :, ::-1]
    x = (crop * profile.scale - np.array(profile.mean)) / np.array(profile.std)
    if profile.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return x[None]


PROFILES = {
    **BUILTIN_PROFILES,
    "auto-nchw": AUTO_DEFAULTS.with_discovered("x", "NCHW", (224, 224)),
    "stretch-bgr-nhwc": dataclasses.replace(
        AUTO_DEFAULTS, name="custom", resize="stretch", channel_order="BGR"
    ).with_discovered("x", "NHWC", (160, 192)),
}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_matches_numpy_reference_on_real_photos(name, photos):
    profile = PROFILES[name]
    gain = profile.scale / min(profile.std)  # one 8-bit level in tensor units
    for photo in photos:
        bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        got = preprocess(bgr, profile)
        want = reference(bgr, profile)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        assert got.shape == want.shape
        diff = np.abs(got - want)
        # OpenCV resizes uint8 in fixed point and rounds: at most about one level off.
        assert diff.max() <= 1.01 * gain, (photo.name, diff.max())
        assert diff.mean() <= 0.3 * gain, (photo.name, diff.mean())


def test_reference_catches_a_swapped_channel_order(photos):
    """The check above can fail: BGR fed where RGB is expected is far off."""
    profile = BUILTIN_PROFILES["neo-vgg16"]
    swapped = dataclasses.replace(profile, channel_order="BGR")
    bgr = cv2.imread(str(photos[0]), cv2.IMREAD_COLOR)
    assert np.abs(preprocess(bgr, swapped) - reference(bgr, profile)).mean() > 0.1


def test_shapes_per_layout(photos):
    bgr = cv2.imread(str(photos[0]))
    assert preprocess(bgr, BUILTIN_PROFILES["modelstore-resnet50"]).shape == (1, 224, 224, 3)
    assert preprocess(bgr, BUILTIN_PROFILES["neo-vgg16"]).shape == (1, 3, 224, 224)


def test_modelstore_profile_feeds_raw_rgb_pixels(photos):
    bgr = cv2.imread(str(photos[0]))
    x = preprocess(bgr, BUILTIN_PROFILES["modelstore-resnet50"])
    assert x.min() >= 0 and x.max() <= 255 and x.max() > 128


def test_a_reduced_decode_is_resized_and_cropped_as_its_full_image(photos):
    """A 1/4 decode of 4032x2721 comes out 1008x681 (libjpeg rounds up), whose own aspect
    would give a 378-wide resize and a crop a pixel to the left; given the header's size, the
    preprocessor uses the full image's plan (379x256, crop at 78). A size that is not a 1/2,
    1/4 or 1/8 reduction of the header's (an EXIF-rotated decode) is planned on its own."""
    from ggic.classifier.preprocess import resize_plan

    profile = BUILTIN_PROFILES["efficientnet-lite0"]
    reduced = cv2.resize(cv2.imread(str(photos[0])), (1008, 681), interpolation=cv2.INTER_AREA)
    assert resize_plan(1008, 681, profile)[:3] != resize_plan(4032, 2721, profile)[:3]
    new_w, new_h, left, top = resize_plan(4032, 2721, profile)
    resized = cv2.resize(reduced, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
    want = resized[top:top + 224, left:left + 224, ::-1].astype(np.float32)[np.newaxis]
    got = preprocess(reduced, profile, full_size=(4032, 2721))
    assert np.array_equal(got, want)
    assert not np.array_equal(preprocess(reduced, profile), want)
    assert np.array_equal(preprocess(reduced, profile, full_size=(2721, 4032)),
                          preprocess(reduced, profile))
