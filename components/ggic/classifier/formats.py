"""Image formats: which one a byte string holds, and its size, from the header alone.

Nothing here decodes. :func:`probe_image` names the format by its magic bytes and reads the
width and height from its header for every format the classifier may decode (JPEG, PNG, BMP,
WebP), so the pixel limit is applied before the decoder allocates anything. Formats it cannot
size (TIFF, JPEG 2000, GIF, AVIF, OpenEXR, PNM, ...) are never handed to OpenCV: their
decoders allocate from headers we do not check, which is how a 1.6 KB JPEG 2000 file becomes
gigabytes.

The header reading follows what OpenCV's own decoders read (the first JPEG frame header, the
PNG IHDR, the BMP info header in its two layouts, the WebP VP8/VP8L frame or VP8X canvas), and
refuses anything it does not understand rather than guessing. Pure Python, no OpenCV.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from ..messages import ClassificationError, ErrorCode


class ImageFormat(str, enum.Enum):
    """Formats the classifier can be configured to decode (AcceptedImageFormats)."""

    JPEG = "JPEG"
    PNG = "PNG"
    BMP = "BMP"
    WEBP = "WebP"

    @classmethod
    def parse(cls, name: str) -> ImageFormat:
        """The format called ``name`` (any case); ValueError naming the known ones."""
        for member in cls:
            if member.value.lower() == name.strip().lower():
                return member
        raise ValueError(f"unknown image format {name!r} (known: {format_names(cls)})")


DEFAULT_ACCEPTED_FORMATS: tuple[ImageFormat, ...] = tuple(ImageFormat)
#: The largest MaxImagePixels the configuration accepts, and OpenCV's own limit (see
#: ``ggic.classifier``): 1e9 pixels, 3 GB decoded.
MAX_DECODE_PIXELS = 1_000_000_000


def format_names(formats: Iterable[ImageFormat]) -> str:
    return ", ".join(f.value for f in formats)


@dataclass(frozen=True)
class ImageProbe:
    """What the header says: the format and the size of the decoded image."""

    format: ImageFormat
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


# Formats recognised only to be refused by name (checked after the accepted ones).
_REFUSED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF (BigTIFF)"),
    (b"MM\x00+", "TIFF (BigTIFF)"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
    (b"v/1\x01", "OpenEXR"),
    (b"#?RADIANCE", "Radiance HDR"), (b"#?RGBE", "Radiance HDR"),
    (b"\x59\xa6\x6a\x95", "Sun raster"),
    (b"\xff\x0a", "JPEG XL"), (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"qoif", "QOI"),
)

# JPEG start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG segments looked at before the frame header (real files have a few dozen).
_MAX_JPEG_SEGMENTS = 10_000
_FILL_BYTES = re.compile(rb"\xff+")
#: Chunks looked at before a PNG's first IDAT (real files have a handful).
_MAX_PNG_CHUNKS = 1000


def sniff_format(data: bytes) -> ImageFormat | str | None:
    """The format ``data`` starts like: an ImageFormat, the name of a format we refuse, or
    None if unknown."""
    if data[4:8] == b"ftyp":  # ISO media (AVIF, HEIF): OpenCV tries its AVIF decoder first
        return "AVIF/HEIF"
    if data[:3] == b"\xff\xd8\xff":
        return ImageFormat.JPEG
    if data[:8] == _PNG_SIGNATURE:
        return ImageFormat.PNG
    if data[:2] == b"BM":
        return ImageFormat.BMP
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageFormat.WEBP
    for signature, name in _REFUSED_SIGNATURES:
        if data.startswith(signature):
            return name
    if len(data) >= 2 and data[:1] == b"P" and data[1:2] in b"1234567fF":
        return "PNM/PAM/PFM"
    return None


def probe_image(data: bytes, accepted: Iterable[ImageFormat] = DEFAULT_ACCEPTED_FORMATS,
                what: str = "image") -> ImageProbe:
    """The format and size of an encoded image, from its header; ClassificationError
    (UNSUPPORTED_IMAGE) if it is not in ``accepted`` or its header cannot be read."""
    accepted = tuple(accepted)
    if not data:
        raise ClassificationError(ErrorCode.UNSUPPORTED_IMAGE, f"{what} is empty")
    kind = sniff_format(data)
    accepted_text = f"accepted formats: {format_names(accepted)} (AcceptedImageFormats)"
    if kind is None:
        raise ClassificationError(
            ErrorCode.UNSUPPORTED_IMAGE, f"{what} is not an image in an accepted format; "
            f"{accepted_text}")
    if not isinstance(kind, ImageFormat) or kind not in accepted:
        name = kind.value if isinstance(kind, ImageFormat) else kind
        raise ClassificationError(
            ErrorCode.UNSUPPORTED_IMAGE, f"{what} is a {name} image, which the classifier "
            f"does not decode; {accepted_text}")
    try:
        dims = _READERS[kind](data)
    except (struct.error, IndexError):
        dims = None
    if dims is None:
        raise ClassificationError(
            ErrorCode.UNSUPPORTED_IMAGE, f"{what}: its {kind.value} header is damaged or "
            "truncated, or uses a layout the classifier does not decode")
    return ImageProbe(kind, dims[0], dims[1])


def check_pixels(probe: ImageProbe, max_pixels: int, what: str = "image") -> None:
    if probe.width <= 0 or probe.height <= 0:
        raise ClassificationError(
            ErrorCode.UNSUPPORTED_IMAGE,
            f"{what} has invalid dimensions {probe.width}x{probe.height}")
    if probe.pixels > max_pixels:
        raise ClassificationError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"{what} is {probe.width}x{probe.height} = {probe.pixels} pixels, above "
            f"MaxImagePixels ({max_pixels})")


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of any format the classifier knows; None if the data
    is not one of them or its header is unreadable."""
    try:
        probe = probe_image(data)
    except ClassificationError:
        return None
    return probe.width, probe.height


# --- per-format header readers: (width, height), or None ---------------------------------


def _jpeg(data: bytes) -> tuple[int, int] | None:
    """The first frame header, as libjpeg reads it (a second one is an error there). At most
    _MAX_JPEG_SEGMENTS segments are looked at, and runs of fill bytes are skipped at once, so
    a hostile file costs little CPU."""
    pos = 2
    end = len(data)
    for _ in range(_MAX_JPEG_SEGMENTS):
        if pos + 4 > end or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill bytes: skip the run, keep its last 0xFF as the prefix
            pos = _FILL_BYTES.match(data, pos).end() - 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if pos + 9 > end:
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if marker in (0xDA, 0xD9):  # scan or end before any frame header
            return None
        pos += 2 + length
    return None


def _png(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    # An APNG's frames must lie inside the canvas (IHDR); refuse one that says otherwise
    # rather than trust every decoder to check.
    pos = 8
    for _ in range(_MAX_PNG_CHUNKS):
        if pos + 8 > len(data):  # truncated: no frame beyond the canvas, decoding will fail
            return width, height
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind in (b"IDAT", b"IEND"):
            return width, height
        if kind == b"fcTL":
            if length < 20 or pos + 28 > len(data):
                return None
            fw, fh, fx, fy = struct.unpack(">IIII", data[pos + 12 : pos + 28])
            if fx + fw > width or fy + fh > height:
                return None
        pos += 12 + length
    return None


def _bmp(data: bytes) -> tuple[int, int] | None:
    """OpenCV reads int32 width/height for info headers of 36 bytes or more, uint16 for the
    12-byte OS/2 core header, and nothing else."""
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size >= 36 and header_size < 2**31:
        width, height = struct.unpack("<ii", data[18:26])
    elif header_size == 12:
        width, height = struct.unpack("<HH", data[18:22])
    else:
        return None
    return width, abs(height)


def _webp(data: bytes) -> tuple[int, int] | None:
    """Canvas size: VP8X's, else the VP8 (lossy) or VP8L (lossless) frame's, as libwebp's
    WebPGetFeatures reports it (and OpenCV allocates it)."""
    (riff_size,) = struct.unpack("<I", data[4:8])
    if riff_size < 12 or riff_size > len(data) - 8:  # libwebp refuses these too
        return None
    chunk = data[12:16]
    payload = data[20:]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(payload[4:7], "little")
        height = 1 + int.from_bytes(payload[7:10], "little")
        return (width, height) if len(payload) >= 10 else None
    if chunk == b"VP8L":
        if payload[:1] != b"\x2f":
            return None
        (bits,) = struct.unpack("<I", payload[1:5])
        if bits >> 29:  # version must be 0
            return None
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        if payload[0] & 1 or payload[3:6] != b"\x9d\x01\x2a":  # not a key frame
            return None
        width, height = struct.unpack("<HH", payload[6:10])
        return width & 0x3FFF, height & 0x3FFF
    return None


_READERS = {ImageFormat.JPEG: _jpeg, ImageFormat.PNG: _png, ImageFormat.BMP: _bmp,
            ImageFormat.WEBP: _webp}
