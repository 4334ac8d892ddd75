"""Where the requester's frames come from: a camera device, a network stream or a video file,
all through OpenCV's ``VideoCapture`` (the ``Source`` setting; empty: the folder of images).

=====================  ============================================  =========================
``Source``             kind                                          when it ends or fails
=====================  ============================================  =========================
``/dev/video0``, ``0``  DEVICE (V4L2: USB camera, CSI through V4L2)   reopened with backoff
``rtsp://…``,           URL (FFmpeg: RTSP, HTTP MJPEG, …)             reopened with backoff
``http(s)://…``
a file path            VIDEO_FILE (anything FFmpeg reads)            FINISHED, or LoopVideo
=====================  ============================================  =========================
"""

from __future__ import annotations

import enum
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import cv2

log = logging.getLogger(__name__)

#: How long opening or reading a network stream may block (so a stop is noticed in time:
#: Greengrass kills a component 5 s after SIGTERM).
NETWORK_TIMEOUT_MS = 3000
_URL_RE = re.compile(r"^(rtsp|rtsps|rtmp|http|https|tcp|udp)://", re.IGNORECASE)
_DEVICE_RE = re.compile(r"^/dev/video\d+$")


class SourceKind(str, enum.Enum):
    FOLDER = "folder"
    DEVICE = "device"
    URL = "url"
    VIDEO_FILE = "video-file"


@dataclass(frozen=True)
class SourceSpec:
    kind: SourceKind
    target: str | int
    """A path, a URL, or a device index."""

    @property
    def live(self) -> bool:
        """Whether frames arrive on their own (a camera, a stream), not read from a file."""
        return self.kind in (SourceKind.DEVICE, SourceKind.URL)

    def describe(self) -> str:
        if self.kind is SourceKind.URL:
            return f"stream {redact_url(str(self.target))}"
        if self.kind is SourceKind.DEVICE:
            return f"camera {self.target}"
        return f"{self.kind.value} {self.target}"


def redact_url(url: str) -> str:
    """The URL without a password (``rtsp://user:secret@cam/`` -> ``rtsp://user:***@cam/``)."""
    return re.sub(r"(://[^/:@]+):[^/@]*@", r"\1:***@", url)


def parse_source(text: str) -> SourceSpec:
    """The ``Source`` setting: empty -> FOLDER; an index or /dev/videoN -> DEVICE; a URL ->
    URL; anything else -> VIDEO_FILE."""
    value = text.strip()
    if not value:
        return SourceSpec(SourceKind.FOLDER, "")
    if value.isdigit():
        return SourceSpec(SourceKind.DEVICE, int(value))
    if _DEVICE_RE.match(value):
        return SourceSpec(SourceKind.DEVICE, value)
    if _URL_RE.match(value):
        return SourceSpec(SourceKind.URL, value)
    return SourceSpec(SourceKind.VIDEO_FILE, value)


class FrameSource:
    """One ``VideoCapture`` for a source; :meth:`open` again after it is lost."""

    def __init__(self, spec: SourceSpec, width: int = 0, height: int = 0) -> None:
        if spec.kind is SourceKind.FOLDER:
            raise ValueError("a folder is not a frame source")
        self.spec = spec
        self.width = width
        self.height = height
        self._capture: Any = None
        self.fps = 0.0
        """Frames per second the source reports (0: unknown)."""

    @property
    def opened(self) -> bool:
        return self._capture is not None

    def open(self) -> bool:
        """Open the source; False if it can't be opened now (logged by the caller)."""
        self.release()
        spec = self.spec
        if spec.kind is SourceKind.URL:
            capture = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS])
        else:
            capture = cv2.VideoCapture(spec.target)
        if not capture.isOpened():
            capture.release()
            return False
        if spec.kind is SourceKind.DEVICE:
            if self.width:
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the latest frame, not a backlog
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else 0.0
        self._capture = capture
        return True

    def read(self) -> Any | None:
        """The next frame (BGR), or None: the file ended or the source was lost."""
        if self._capture is None:
            return None
        ok, frame = self._capture.read()
        return frame if ok and frame is not None else None

    def rewind(self) -> bool:
        """Back to the first frame (video files)."""
        if self._capture is None:
            return False
        if self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            return True
        return self.open()

    def release(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()


class Backoff:
    """Delays between reopen attempts: 0.5 s, doubling up to ``max_delay``; remembers since
    when the source is down."""

    def __init__(self, max_delay: float, first: float = 0.5) -> None:
        self.first = min(first, max_delay)
        self.max_delay = max_delay
        self.delay = self.first
        self.down_since: float | None = None
        self.attempts = 0

    def failed(self) -> float:
        """Record a failed attempt; the delay before the next one."""
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
        self.attempts += 1
        delay = self.delay
        self.delay = min(self.delay * 2, self.max_delay)
        return delay

    def down_for(self) -> float:
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since

    def recovered(self) -> float:
        """The source is back: how long it was down; the delays start over."""
        down = self.down_for()
        self.down_since = None
        self.delay = self.first
        self.attempts = 0
        return down
