"""How a captured frame travels to the classifier: one encoding, then a file or inline bytes.

A frame from ``VideoCapture`` is decoded pixels (BGR). The message contract takes an encoded
image, so each frame is encoded exactly once here and decoded exactly once by the classifier:

* ``bmp`` (the default): no compression, so encoding is a header and a copy, and so is the
  classifier's decoding; 0.9 MB for 640x480.
* ``jpeg``: about a tenth of the bytes, at the cost of a JPEG encode here (the classifier
  decodes it at reduced resolution when the frame is at least twice what the model needs).

``benchmarks/bench_stream.py`` measures both with both transports; BMP in files is the
cheapest per frame here (README).

``FrameTransport`` file: the encoded frame goes into a ring of files (:class:`FrameRing`), one
slot per request in flight plus two (the pending frame and the one being prepared,
:func:`.handoff.ring_slots`), and the request carries its path. A slot is reused only once its
result has arrived or timed out (or, never sent, once a newer frame superseded it), and every
write goes to a temporary name that is renamed over the slot, so a classifier that still reads
a timed-out slot's file reads a whole frame.
``FrameTransport`` inline: the bytes travel base64-encoded in the request (``image_b64``).
"""

from __future__ import annotations

import contextlib
import enum
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any

import cv2

from ..messages import ImageSource, SourceKind

JPEG_QUALITY = 90


class FrameFormat(str, enum.Enum):
    BMP = "bmp"
    JPEG = "jpeg"

    @property
    def suffix(self) -> str:
        return ".bmp" if self is FrameFormat.BMP else ".jpg"


class FrameTransport(str, enum.Enum):
    FILE = "file"
    INLINE = "inline"


def encode_frame(frame: Any, fmt: FrameFormat) -> bytes:
    """The frame as an image file's bytes (one encoding)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if fmt is FrameFormat.JPEG else []
    ok, buffer = cv2.imencode(fmt.suffix, frame, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {frame.shape} frame as {fmt.value}")
    return buffer.tobytes()


class FrameRing:
    """``slots`` frame files in ``directory``; a slot is free again only when released."""

    def __init__(self, directory: Path, slots: int, fmt: FrameFormat) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fmt = fmt
        self._lock = threading.Lock()
        self._free: deque[int] = deque(range(slots))
        self.slots = slots

    def path(self, slot: int) -> Path:
        return self.directory / f"frame-{slot}{self.fmt.suffix}"

    def acquire(self) -> int | None:
        with self._lock:
            return self._free.popleft() if self._free else None

    def release(self, slot: int) -> None:
        with self._lock:
            if slot not in self._free:
                self._free.append(slot)

    def write(self, slot: int, data: bytes) -> Path:
        target = self.path(slot)
        temporary = target.with_name(f".{target.name}.tmp")
        with open(temporary, "wb") as out:
            out.write(data)
        os.replace(temporary, target)
        return target

    def remove_files(self) -> None:
        for slot in range(self.slots):
            for path in (self.path(slot), self.path(slot).with_name(
                    f".{self.path(slot).name}.tmp")):
                with contextlib.suppress(OSError):
                    path.unlink()


class FrameSender:
    """Encodes a frame once and makes the request's image source (a ring path, or inline)."""

    def __init__(self, transport: FrameTransport, fmt: FrameFormat, ring: FrameRing | None
                 ) -> None:
        if transport is FrameTransport.FILE and ring is None:
            raise ValueError("FrameTransport file needs a FrameRing")
        self.transport = transport
        self.fmt = fmt
        self.ring = ring

    def acquire_slot(self) -> int | None:
        """A ring slot for the next frame (None: none free); inline needs none (-1)."""
        return self.ring.acquire() if self.ring is not None else -1

    def release_slot(self, slot: int) -> None:
        if self.ring is not None and slot >= 0:
            self.ring.release(slot)

    def source(self, frame: Any, slot: int) -> ImageSource:
        data = encode_frame(frame, self.fmt)
        if self.ring is None:
            return ImageSource(SourceKind.INLINE, data=data)
        return ImageSource(SourceKind.PATH, path=str(self.ring.write(slot, data).resolve()))
