"""No image format is decoded past MaxImagePixels: real decompression bombs (a 32-byte WebP,
a 140 KB TIFF, a 230-byte JPEG 2000 file that each decode to 12000x12000 with OpenCV) are
refused from their headers, costing no memory; the header readers agree with OpenCV's
decoders on real files; OpenCV's own limit stands behind them."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import image_bombs
from ggic.classifier.decode import decode_image
from ggic.classifier.formats import ImageFormat, probe_image
from ggic.messages import ClassificationError, ErrorCode

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024

BOMBS = {
    "png": (image_bombs.png_bomb, ErrorCode.IMAGE_TOO_LARGE),
    "jpeg": (image_bombs.jpeg_bomb, ErrorCode.IMAGE_TOO_LARGE),
    "webp-vp8l": (image_bombs.webp_bomb, ErrorCode.IMAGE_TOO_LARGE),
    "webp-vp8x": (image_bombs.webp_vp8x_bomb, ErrorCode.IMAGE_TOO_LARGE),
    "tiff": (image_bombs.tiff_bomb, ErrorCode.UNSUPPORTED_IMAGE),
    "jpeg2000": (image_bombs.jpeg2000_bomb, ErrorCode.UNSUPPORTED_IMAGE),
}

# Runs in a fresh interpreter: peak RSS (ru_maxrss, KiB) before and after refusing one file.
# The address space is capped 1.5 GiB above idle so a regression fails instead of swapping.
REFUSE_ONE = """
import json, resource, sys
from ggic.classifier.decode import decode_image
from ggic.messages import ClassificationError
data = open(sys.argv[1], "rb").read()
size = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1])
limit = (size + 1536 * 1024) * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_image(data, max_pixels=40_000_000)
    code = "decoded"
except ClassificationError as exc:
    code = exc.code.value
except BaseException as exc:
    code = type(exc).__name__
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"code": code, "delta_kib": peak - idle}))
"""


@pytest.fixture(scope="module")
def bomb_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    out = {}
    for name, (make, _code) in BOMBS.items():
        out[name] = folder / name
        out[name].write_bytes(make())
    return out


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_bomb_is_refused_with_its_typed_error_and_costs_no_memory(name, bomb_files):
    data = bomb_files[name].read_bytes()
    assert len(data) < 200_000  # small files ...
    done = subprocess.run([sys.executable, "-c", REFUSE_ONE, str(bomb_files[name])],
                          capture_output=True, text=True, timeout=120)
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["code"] == BOMBS[name][1].value, (outcome, done.stderr[-2000:])
    assert outcome["delta_kib"] < 50 * 1024, outcome  # ... that would decode to 432+ MB


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_small_versions_of_the_bombs_are_real_images(name):
    """The same constructions at 64x64 decode with OpenCV: the bombs are real images, and
    where the format is accepted the header reader agrees with OpenCV."""
    data = BOMBS[name][0](64)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == (64, 64)
    if BOMBS[name][1] is ErrorCode.IMAGE_TOO_LARGE:
        probe = probe_image(data)
        assert (probe.width, probe.height) == (64, 64)
        assert decode_image(data, max_pixels=64 * 64).shape == (64, 64, 3)


def encode(ext: str, image: np.ndarray, params: tuple[int, ...] = ()) -> bytes:
    ok, encoded = cv2.imencode(ext, image, list(params))
    assert ok, ext
    return encoded.tobytes()


def os2_bmp(width: int, height: int) -> bytes:
    """A 24-bit BMP with the 12-byte OS/2 core header (16-bit width and height)."""
    row = (width * 3 + 3) & ~3
    pixels = bytes(row * height)
    header = struct.pack("<IHHHH", 12, width, height, 1, 24)
    offset = 14 + len(header)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + header + pixels


@pytest.fixture(scope="module")
def sample(photos) -> np.ndarray:
    return cv2.resize(cv2.imread(str(photos[0]), cv2.IMREAD_COLOR), (67, 45))


@pytest.mark.parametrize("fmt, make", [
    (ImageFormat.JPEG, lambda img: encode(".jpg", img)),
    (ImageFormat.JPEG, lambda img: encode(".jpg", img, (cv2.IMWRITE_JPEG_PROGRESSIVE, 1))),
    (ImageFormat.PNG, lambda img: encode(".png", img)),
    (ImageFormat.PNG, lambda img: encode(".png", cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))),
    (ImageFormat.BMP, lambda img: encode(".bmp", img)),
    (ImageFormat.BMP, lambda img: encode(".bmp", img[::-1].copy())),
    (ImageFormat.BMP, lambda img: os2_bmp(img.shape[1], img.shape[0])),
    (ImageFormat.WEBP, lambda img: encode(".webp", img, (cv2.IMWRITE_WEBP_QUALITY, 80))),
    (ImageFormat.WEBP, lambda img: encode(".webp", img, (cv2.IMWRITE_WEBP_QUALITY, 101))),
    (ImageFormat.WEBP, lambda img: encode(".webp", cv2.cvtColor(img, cv2.COLOR_BGR2BGRA),
                                          (cv2.IMWRITE_WEBP_QUALITY, 80))),
])
def test_header_sizes_agree_with_opencv(fmt, make, sample):
    data = make(sample)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    probe = probe_image(data)
    assert probe.format is fmt
    assert (probe.width, probe.height) == (decoded.shape[1], decoded.shape[0])
    assert decode_image(data, max_pixels=probe.pixels).shape == decoded.shape
    with pytest.raises(ClassificationError) as info:
        decode_image(data, max_pixels=probe.pixels - 1)
    assert info.value.code is ErrorCode.IMAGE_TOO_LARGE


@pytest.mark.parametrize("ext, name", [
    (".tiff", "TIFF"), (".jp2", "JPEG 2000"), (".pgm", "PNM"), (".ppm", "PNM"),
    (".hdr", "Radiance HDR"), (".ras", "Sun raster"), (".pfm", "PFM"), (".gif", "GIF"),
])
def test_other_formats_are_refused_by_name_before_opencv_sees_them(ext, name, sample):
    image = sample.astype(np.float32) / 255 if ext in (".hdr", ".pfm") else sample
    if ext == ".pgm":
        image = cv2.cvtColor(sample, cv2.COLOR_BGR2GRAY)
    data = encode(ext, image)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    with pytest.raises(ClassificationError) as info:
        decode_image(data, max_pixels=10**9, what="x.img")
    assert info.value.code is ErrorCode.UNSUPPORTED_IMAGE
    assert name in info.value.message
    assert "JPEG, PNG, BMP, WebP (AcceptedImageFormats)" in info.value.message


def test_accepted_formats_restrict_what_is_decoded(sample):
    png = encode(".png", sample)
    assert decode_image(png, max_pixels=10**9, accepted=[ImageFormat.PNG]).shape[2] == 3
    with pytest.raises(ClassificationError) as info:
        decode_image(png, max_pixels=10**9, accepted=[ImageFormat.JPEG, ImageFormat.WEBP])
    assert info.value.code is ErrorCode.UNSUPPORTED_IMAGE
    assert "is a PNG image" in info.value.message and "JPEG, WebP" in info.value.message


def test_an_apng_frame_outside_its_canvas_is_refused():
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 10, 10, 8, 0, 0, 0, 0))
    fctl = chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, 12000, 12000, 0, 0, 1, 1, 0, 0))
    data = b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"acTL", struct.pack(">II", 1, 0)) + fctl + \
        chunk(b"IDAT", zlib.compress(bytes(11 * 10))) + chunk(b"IEND", b"")
    with pytest.raises(ClassificationError) as info:
        decode_image(data, max_pixels=10**9)
    assert info.value.code is ErrorCode.UNSUPPORTED_IMAGE


def test_truncated_and_corrupted_headers_only_ever_give_typed_errors(sample):
    rng = np.random.default_rng(1)
    sources = [encode(".jpg", sample), encode(".png", sample), encode(".bmp", sample),
               encode(".webp", sample), os2_bmp(5, 5), image_bombs.webp_vp8x_bomb(64)]
    for data in sources:
        for cut in range(0, 80):
            variants = [data[:cut], data[:cut] + bytes(rng.integers(0, 256, 40, np.uint8))]
            for variant in variants:
                try:
                    decode_image(variant, max_pixels=10**6)
                except ClassificationError as exc:
                    assert exc.code in (ErrorCode.UNSUPPORTED_IMAGE, ErrorCode.IMAGE_TOO_LARGE)


# OpenCV's own limit, in a fresh interpreter: cv2 has not been loaded before ggic.classifier.
OPENCV_WALL = """
import resource, sys
import ggic.classifier.decode  # noqa: F401 - sets OPENCV_IO_MAX_IMAGE_PIXELS before cv2 loads
import cv2, numpy as np
size = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1])
limit = (size + 1536 * 1024) * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
data = np.frombuffer(open(sys.argv[1], "rb").read(), np.uint8)
try:
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    print("decoded" if image is not None else "none")
except cv2.error as exc:
    print("wall" if "CV_IO_MAX_IMAGE_PIXELS" in str(exc) else "other: " + str(exc)[:200])
"""


def test_opencv_limit_is_the_second_wall(tmp_path):
    """A 32000x32000 PNG (1.02e9 pixels: above the largest MaxImagePixels, 1e9, and below
    OpenCV's default, 2^30) handed straight to OpenCV is refused by OpenCV itself."""
    bomb = tmp_path / "wall.png"
    bomb.write_bytes(image_bombs.png_bomb(32000))
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    done = subprocess.run([sys.executable, "-c", OPENCV_WALL, str(bomb)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "wall", done.stdout + done.stderr[-2000:]
    # a deployer's own, lower value is kept
    small = tmp_path / "small.png"
    small.write_bytes(image_bombs.png_bomb(64))
    done = subprocess.run([sys.executable, "-c", OPENCV_WALL, str(small)],
                          env={**env, "OPENCV_IO_MAX_IMAGE_PIXELS": "1000"},
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "wall", done.stdout + done.stderr[-2000:]


@pytest.mark.parametrize("data, name", [
    (b"v/1\x01" + bytes(60), "OpenEXR"),  # OpenCV's EXR codec stays off; refused anyway
    (b"\x00\x00\x00\x1cftypavif" + bytes(60), "AVIF/HEIF"),
    (b"\xff\xd8\xff\xe0ftyp" + bytes(60), "AVIF/HEIF"),  # OpenCV would try AVIF first
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n" + bytes(60), "JPEG XL"),
    (b"qoif" + bytes(60), "QOI"), (b"II+\x00" + bytes(60), "BigTIFF"),
    (b"P7\nWIDTH 12000\n" + bytes(60), "PNM"),
])
def test_formats_recognised_by_their_first_bytes_are_refused_by_name(data, name):
    with pytest.raises(ClassificationError) as info:
        decode_image(data, max_pixels=10**9)
    assert info.value.code is ErrorCode.UNSUPPORTED_IMAGE and name in info.value.message


def test_hostile_jpeg_headers_cost_little(sample):
    """Megabytes of fill bytes, or thousands of empty segments, before the frame header: a
    typed error after a bounded scan (fill-byte runs are skipped at once)."""
    jpeg = encode(".jpg", sample)
    fill = jpeg[:2] + b"\xff" * (8 * MiB) + jpeg[2:]
    probe = probe_image(fill)
    assert (probe.width, probe.height) == (sample.shape[1], sample.shape[0])
    many = jpeg[:2] + b"\xff\xd0" * 20_000 + jpeg[2:]
    with pytest.raises(ClassificationError) as info:
        probe_image(many)
    assert info.value.code is ErrorCode.UNSUPPORTED_IMAGE
