from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from ggic.classifier.decode import decode_image, image_dimensions, reduction_for
from ggic.classifier.preprocess import jpeg_reduction, preprocess
from ggic.classifier.profiles import BUILTIN_PROFILES
from ggic.messages import ClassificationError, ErrorCode

BIG = 10**9


def test_header_dimensions_match_decoded_images(photos, jpeg_photos):
    for path in [*photos, *jpeg_photos]:
        data = path.read_bytes()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image_dimensions(data) == (image.shape[1], image.shape[0]), path.name


def test_bmp_and_gif_like_headers():
    ok, bmp = cv2.imencode(".bmp", np.zeros((7, 5, 3), np.uint8))
    assert ok and image_dimensions(bmp.tobytes()) == (5, 7)
    # GIF is not decoded (OpenCV's GIF decoder sizes frames from blocks we do not check)
    assert image_dimensions(b"GIF89a" + struct.pack("<HH", 640, 480) + b"\x00" * 10) is None
    assert image_dimensions(b"not an image") is None


def png_claiming(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\x00" * 32)


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ClassificationError) as info:
        decode_image(png_claiming(100_000, 100_000), max_pixels=40_000_000)
    assert info.value.code is ErrorCode.IMAGE_TOO_LARGE
    assert "100000x100000" in info.value.message


def test_real_image_above_the_pixel_limit(photos):
    data = photos[0].read_bytes()
    with pytest.raises(ClassificationError) as info:
        decode_image(data, max_pixels=1000)
    assert info.value.code is ErrorCode.IMAGE_TOO_LARGE


@pytest.mark.parametrize("data", [b"", b"hello world, not an image", png_claiming(10, 10)])
def test_undecodable_bytes(data):
    with pytest.raises(ClassificationError) as info:
        decode_image(data, max_pixels=BIG)
    assert info.value.code is ErrorCode.UNSUPPORTED_IMAGE


def test_grayscale_and_alpha_images_become_three_channels():
    ok, gray = cv2.imencode(".png", np.full((20, 30), 128, np.uint8))
    assert decode_image(gray.tobytes(), max_pixels=BIG).shape == (20, 30, 3)
    ok, rgba = cv2.imencode(".png", np.full((20, 30, 4), 200, np.uint8))
    assert decode_image(rgba.tobytes(), max_pixels=BIG).shape == (20, 30, 3)


def test_reduction_keeps_what_the_resize_needs():
    assert reduction_for(4000, 3000, (341, 256)) == 8
    assert reduction_for(1920, 1080, (455, 256)) == 4
    assert reduction_for(640, 480, (341, 256)) == 1
    assert reduction_for(1000, 600, (400, 240)) == 2


def test_reduced_jpeg_decode_stays_close_to_a_full_decode(photos, tmp_path):
    """A large camera-like JPEG decoded at reduced size gives nearly the input an anti-aliased
    downscale of the fully decoded image gives (top-1 agreement on a real model is checked in
    the real-model tests)."""
    profile = BUILTIN_PROFILES["neo-vgg16"]
    big = cv2.resize(cv2.imread(str(photos[0])), (1920, 1277), interpolation=cv2.INTER_CUBIC)
    ok, jpeg = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    data = jpeg.tobytes()
    reduced = decode_image(data, max_pixels=BIG, reduction=jpeg_reduction(1920, 1277, profile))
    full = decode_image(data, max_pixels=BIG)
    assert reduced.shape[:2] == (639, 960)  # 1/2: still >= twice the 385x256 of the resize
    assert full.shape[:2] == (1277, 1920)
    area = cv2.resize(full, (385, 256), interpolation=cv2.INTER_AREA)
    ideal = preprocess(area, profile)  # already at the resize size: crop + normalise only
    from_reduced = np.abs(preprocess(reduced, profile) - ideal).mean()
    assert from_reduced < 0.08  # normalised units: about 5 levels of 255


def test_reduction_applies_to_jpegs_only_and_must_be_a_dct_scale():
    image = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    png = cv2.imencode(".png", image)[1].tobytes()
    assert decode_image(jpeg, max_pixels=BIG, reduction=2).shape == (240, 320, 3)
    assert decode_image(jpeg, max_pixels=BIG, reduction=8).shape == (60, 80, 3)
    assert decode_image(png, max_pixels=BIG, reduction=2).shape == (480, 640, 3)
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        decode_image(jpeg, max_pixels=BIG, reduction=3)
