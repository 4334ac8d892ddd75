"""Real decompression bombs, made in a few kilobytes without ever holding the decoded image:
each decodes (with a decoder that trusts it) into a 12000x12000 image, 432 MB as BGR."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

SIDE = 12000


def _zeros_deflated(size: int, chunk: int = 1 << 20) -> bytes:
    """zlib data of ``size`` zero bytes, compressed as a stream."""
    packer = zlib.compressobj(9)
    block = bytes(chunk)
    out = []
    left = size
    while left:
        n = min(chunk, left)
        out.append(packer.compress(block[:n]))
        left -= n
    out.append(packer.flush())
    return b"".join(out)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def png_bomb(side: int = SIDE) -> bytes:
    """A valid 1-bit greyscale PNG of side x side, all black."""
    row = 1 + (side + 7) // 8  # filter byte + packed bits
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", _zeros_deflated(row * side)) + _png_chunk(b"IEND", b""))


def jpeg_bomb(side: int = SIDE) -> bytes:
    """A small real JPEG whose frame header says side x side: libjpeg decodes it (warning of a
    premature end) into a full-size image."""
    ok, encoded = cv2.imencode(".jpg", np.zeros((16, 16), np.uint8))
    assert ok
    data = bytearray(encoded.tobytes())
    pos = data.index(b"\xff\xc0")
    data[pos + 5 : pos + 9] = struct.pack(">HH", side, side)
    return bytes(data)


class _BitWriter:
    """LSB-first bit writer (the order of the WebP lossless bitstream)."""

    def __init__(self) -> None:
        self.value = 0
        self.bits = 0

    def put(self, value: int, count: int) -> None:
        self.value |= value << self.bits
        self.bits += count

    def bytes(self) -> bytes:
        return self.value.to_bytes((self.bits + 7) // 8 + 4, "little")


def vp8l_bitstream(side: int = SIDE) -> bytes:
    """A WebP lossless (VP8L) bitstream of side x side in which every prefix code has a single
    symbol, so each pixel costs zero bits: a few bytes that decode into side*side pixels."""
    bits = _BitWriter()
    bits.put(0x2F, 8)          # signature
    bits.put(side - 1, 14)     # width - 1
    bits.put(side - 1, 14)     # height - 1
    bits.put(0, 1)             # alpha_is_used
    bits.put(0, 3)             # version
    bits.put(0, 1)             # no transform
    bits.put(0, 1)             # no colour cache
    bits.put(0, 1)             # no meta prefix codes
    for _ in range(5):         # green, red, blue, alpha, distance
        bits.put(1, 1)         # simple code
        bits.put(0, 1)         # one symbol
        bits.put(0, 1)         # ... of 1 bit
        bits.put(0, 1)         # symbol 0
    return bits.bytes()


def _riff_webp(chunks: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def _webp_chunk(kind: bytes, body: bytes) -> bytes:
    pad = b"\x00" if len(body) % 2 else b""
    return kind + struct.pack("<I", len(body)) + body + pad


def webp_bomb(side: int = SIDE) -> bytes:
    """A simple-format lossless WebP of side x side."""
    return _riff_webp(_webp_chunk(b"VP8L", vp8l_bitstream(side)))


def webp_vp8x_bomb(side: int = SIDE) -> bytes:
    """The same image in the extended format: a VP8X canvas of side x side around it."""
    canvas = struct.pack("<I", 0) + (side - 1).to_bytes(3, "little") + (side - 1).to_bytes(
        3, "little")
    return _riff_webp(_webp_chunk(b"VP8X", canvas) + _webp_chunk(b"VP8L", vp8l_bitstream(side)))


def tiff_bomb(side: int = SIDE) -> bytes:
    """A valid 8-bit greyscale TIFF of side x side in one deflate-compressed strip of zeros."""
    strip = _zeros_deflated(side * side)
    entries = [  # tag, type (3 SHORT, 4 LONG), value
        (256, 4, side), (257, 4, side), (258, 3, 8), (259, 3, 8), (262, 3, 1),
        (273, 4, 0), (277, 3, 1), (278, 4, side), (279, 4, len(strip)),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    strip_offset = 8 + ifd_size
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        if tag == 273:
            value = strip_offset
        packed = struct.pack("<HxxI" if kind == 3 else "<I", value, 0) if kind == 3 else \
            struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed[:4]
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + strip


def jpeg2000_bomb(side: int = SIDE) -> bytes:
    """A small real JPEG 2000 file whose header box and size marker say side x side."""
    ok, encoded = cv2.imencode(".jp2", np.zeros((64, 64), np.uint8))
    assert ok
    data = bytearray(encoded.tobytes())
    box = data.index(b"ihdr")  # the JP2 header box: height, width
    data[box + 4 : box + 12] = struct.pack(">II", side, side)
    pos = data.index(b"\xff\x51")  # SIZ: Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz
    data[pos + 6 : pos + 14] = struct.pack(">II", side, side)
    data[pos + 22 : pos + 30] = struct.pack(">II", side, side)
    return bytes(data)
