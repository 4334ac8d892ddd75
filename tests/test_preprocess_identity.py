"""The rewritten preprocessing gives bit-identical tensors to the implementation it replaced
(kept in tests/preprocess_reference.py) for every built-in profile and for custom profiles
(NCHW, BGR, stretch, non-identity mean/std, every interpolation), on the real sample photos at
their own sizes and at camera sizes; and the pooled output buffers never alias."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from ggic.classifier.preprocess import Preprocessor, TensorPool, preprocess
from ggic.classifier.profiles import AUTO_DEFAULTS, BUILTIN_PROFILES, custom_profile
from preprocess_reference import preprocess_before_rewrite


def _completed(profile, layout="NHWC", size=(224, 224)):
    return profile.with_discovered("x", layout, size)


PROFILES = {
    **{name: _completed(p) for name, p in BUILTIN_PROFILES.items()},
    "auto-nchw": _completed(AUTO_DEFAULTS, "NCHW"),
    "auto-nhwc": _completed(AUTO_DEFAULTS, "NHWC"),
    "stretch-bgr-nhwc": _completed(dataclasses.replace(
        AUTO_DEFAULTS, name="c1", resize="stretch", channel_order="BGR"), "NHWC", (160, 192)),
    "stretch-rgb-nchw-halves": _completed(custom_profile({
        "name": "c2", "resize": "stretch", "scale": 1 / 255, "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5], "interpolation": "area"}), "NCHW", (192, 160)),
    "crop-bgr-nchw-raw-nearest": _completed(custom_profile({
        "name": "c3", "base": "modelstore-resnet50", "channel_order": "BGR",
        "layout": "NCHW", "interpolation": "nearest"}), "NCHW"),
    "mean-only": _completed(custom_profile({
        "name": "c4", "scale": 1, "mean": [123.7, 116.3, 103.5], "std": [1, 1, 1]})),
    "scale-only-negative-std": _completed(custom_profile({
        "name": "c5", "scale": 2, "mean": [0, 0, 0], "std": [-1, 1, 3],
        "resize_short": 300})),
}


@pytest.fixture(scope="module")
def images(photos):
    """Each photo as decoded, and as 1920- and 500-wide versions (upscale, odd sizes)."""
    out = []
    for photo in photos:
        bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        out.append((photo.name, bgr))
        for width in (1920, 500):
            height = round(bgr.shape[0] * width / bgr.shape[1])
            out.append((f"{photo.name}@{width}",
                        cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)))
        out.append((f"{photo.name}-portrait", np.ascontiguousarray(bgr.transpose(1, 0, 2))))
    return out


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_bit_identical_to_the_implementation_it_replaced(name, images):
    profile = PROFILES[name]
    for label, bgr in images:
        want = preprocess_before_rewrite(bgr, profile)
        got = preprocess(bgr, profile)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        assert got.shape == want.shape, label
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (
            label, float(np.abs(got - want).max()))


def test_the_identity_check_can_fail(images):
    """Bit-comparison catches a one-ulp difference (a mean of 1e-7 is not skipped)."""
    profile = PROFILES["modelstore-resnet50"]
    nudged = dataclasses.replace(profile, mean=(0.0, 0.0, 1e-3))
    _label, bgr = images[0]
    got = preprocess(bgr, nudged)
    want = preprocess_before_rewrite(bgr, profile)
    assert not np.array_equal(got, want)
    assert np.array_equal(got, preprocess_before_rewrite(bgr, nudged))


def test_identity_steps_are_skipped_only_for_raw_pixel_profiles():
    assert Preprocessor(PROFILES["modelstore-resnet50"]).gain is None
    assert Preprocessor(PROFILES["modelstore-resnet50"]).offset is None
    assert Preprocessor(PROFILES["efficientnet-lite0"]).gain is None
    vgg = Preprocessor(PROFILES["neo-vgg16"])
    assert vgg.gain is not None and vgg.offset is not None
    mean_only = Preprocessor(PROFILES["mean-only"])
    assert mean_only.gain is None and mean_only.offset is not None


def test_writes_into_a_given_buffer_and_checks_it(images):
    profile = PROFILES["neo-vgg16"]
    _label, bgr = images[0]
    out = np.full((1, 3, 224, 224), np.nan, dtype=np.float32)
    assert preprocess(bgr, profile, out) is out
    assert np.array_equal(out, preprocess_before_rewrite(bgr, profile))
    with pytest.raises(ValueError):
        preprocess(bgr, profile, np.empty((1, 224, 224, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        preprocess(bgr, profile, np.empty((1, 3, 224, 224), dtype=np.float64))


def test_pool_hands_a_tensor_out_once_until_given_back():
    pool = TensorPool((1, 2, 2, 3), keep=2)
    a, b = pool.take(), pool.take()
    assert a is not b and pool.allocated == 2
    pool.give_back(a)
    with pytest.raises(ValueError):
        pool.give_back(a)
    c = pool.take()
    assert c is a
    d = pool.take()  # the pool is empty again: a new tensor, never one in use
    assert d is not b and d is not c and pool.allocated == 3
    with pytest.raises(ValueError):
        pool.give_back(np.empty((1, 2, 2, 4), dtype=np.float32))
