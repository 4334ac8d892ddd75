"""Between the stream requester's capture loop and its senders: the frames in flight and the
one frame ready to go.

The capture loop reads the source continuously and prepares every frame it takes (encoded once,
written into its own ring slot or held as inline bytes) while earlier requests are in flight, so
capture overlaps the classifier's round trip. It offers the prepared frame here as the *pending*
frame; a newer one supersedes it (the older is dropped, its slot freed at once: it was never
sent). Whoever makes room or a frame claims the pending frame without waiting
(:meth:`InFlight.claim_now`): the capture loop right after its offer, the result that frees room
(on the connection's network thread), the expiry of a request left unanswered. The claim moves
the frame into the in-flight table in the same step, under one lock, so a frame is either
pending or in flight, never both, never neither while it holds a slot; each claimer tries after
its own change, so whichever claims last sees both the frame and the room.

Slots: at most ``MaxInFlight`` in flight + 1 pending + 1 being prepared, so a ring of
``MaxInFlight + 2`` slots never runs out and no slot is reused before its result arrives or
times out (:func:`ring_slots`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..messages import ImageSource
from .frames import FrameRing


def ring_slots(max_in_flight: int) -> int:
    """Ring slots a stream needs: the requests in flight, the pending frame and the one being
    prepared."""
    return max_in_flight + 2


@dataclass(frozen=True)
class Frame:
    seq: int
    """The frame's number among the frames captured (gaps: frames skipped or dropped)."""
    captured_at: float
    """Capture time, seconds since the epoch (in the request id, in ms)."""
    captured_mono: float
    slot: int
    ring: FrameRing | None = field(default=None, compare=False, repr=False)
    """The ring that holds the slot (None: inline, no slot)."""

    def release_slot(self) -> None:
        if self.ring is not None and self.slot >= 0:
            self.ring.release(self.slot)


@dataclass(frozen=True)
class ReadyFrame:
    """A frame captured and encoded, not yet sent."""

    request_id: str
    frame: Frame
    source: ImageSource


class InFlight:
    """Requests sent and not yet answered (at most ``limit``), and the pending frame; one
    condition for both (the capture loop's read-ahead and the finish wait on it), thread-safe.
    A request's ResultTimeout counts from when it was sent (a frame may have waited as the
    pending frame before)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._frames: dict[str, Frame] = {}
        self._sent: dict[str, float] = {}
        self._pending: ReadyFrame | None = None
        self._changed = threading.Condition()

    def __len__(self) -> int:
        with self._changed:
            return len(self._frames)

    def has_room(self) -> bool:
        with self._changed:
            return len(self._frames) < self.limit

    def add(self, request_id: str, frame: Frame, sent_mono: float | None = None) -> None:
        """A request sent at ``sent_mono`` (``time.monotonic()``; None: now)."""
        with self._changed:
            self._frames[request_id] = frame
            self._sent[request_id] = time.monotonic() if sent_mono is None else sent_mono

    def pop(self, request_id: str) -> Frame | None:
        popped = self.pop_sent(request_id)
        return popped[0] if popped is not None else None

    def pop_sent(self, request_id: str) -> tuple[Frame, float] | None:
        """Remove a request answered: its frame and when it was sent (None: not in flight)."""
        with self._changed:
            frame = self._frames.pop(request_id, None)
            sent = self._sent.pop(request_id, 0.0)
            self._changed.notify_all()
            return (frame, sent) if frame is not None else None

    def expired(self, timeout: float) -> list[tuple[str, Frame]]:
        """Remove and return the requests sent more than ``timeout`` seconds ago."""
        cutoff = time.monotonic() - timeout
        with self._changed:
            old = [(rid, f) for rid, f in self._frames.items() if self._sent[rid] < cutoff]
            for rid, _ in old:
                del self._frames[rid]
                del self._sent[rid]
            if old:
                self._changed.notify_all()
            return old

    def wait(self, predicate: Callable[[int], bool], timeout: float) -> bool:
        """Wait until ``predicate(len)`` holds (or ``timeout``)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(len(self._frames)), timeout)

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # --- the pending frame -------------------------------------------------------------------

    @property
    def pending(self) -> ReadyFrame | None:
        with self._changed:
            return self._pending

    def offer(self, ready: ReadyFrame) -> ReadyFrame | None:
        """Make ``ready`` the pending frame; the one it supersedes (to drop), if any."""
        with self._changed:
            superseded, self._pending = self._pending, ready
            self._changed.notify_all()
            return superseded

    def take_pending(self) -> ReadyFrame | None:
        """Remove the pending frame (a stop: it will not be sent)."""
        with self._changed:
            pending, self._pending = self._pending, None
            self._changed.notify_all()
            return pending

    def claim_now(self) -> ReadyFrame | None:
        """If a frame is pending and fewer than ``limit`` requests are in flight, move it into
        the in-flight table (sent now) and return it; else None. Never waits."""
        with self._changed:
            if self._pending is None or len(self._frames) >= self.limit:
                return None
            ready, self._pending = self._pending, None
            self._frames[ready.request_id] = ready.frame
            self._sent[ready.request_id] = time.monotonic()
            self._changed.notify_all()
            return ready

    def oldest_sent(self) -> float | None:
        """When the oldest request in flight was sent (None: none is)."""
        with self._changed:
            return min(self._sent.values()) if self._sent else None

    def wait_until_sent(self, give_up: Callable[[], bool], timeout: float) -> bool:
        """Wait until no frame is pending (it was claimed), or ``give_up()``; True if none
        is."""
        with self._changed:
            return self._changed.wait_for(lambda: self._pending is None or give_up(),
                                          timeout) and self._pending is None

    def next_room_from(self) -> float | None:
        """When the oldest request in flight was sent, if the table is full (the room it will
        free is the next); None if there is room now."""
        with self._changed:
            if len(self._frames) < self.limit or not self._sent:
                return None
            return min(self._sent.values())

    def idle(self) -> bool:
        """Nothing pending and nothing in flight."""
        with self._changed:
            return self._pending is None and not self._frames


class ReadTiming:
    """When to read the next frame of a video classified flat out (VideoRealTime false): just
    in time for the result that frees room, not at once, so the frame read ahead does not wait
    (and age) as the pending frame for most of a round trip. From the recent round trips (sent
    -> result; their lower quartile, so the frame is usually ready before the result) and
    captures (read + encode; their upper quartile); no wait until it has seen a few of each."""

    WINDOW = 16
    MIN_SAMPLES = 4
    MARGIN_S = 0.001

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._round_trips: deque[float] = deque(maxlen=self.WINDOW)
        self._captures: deque[float] = deque(maxlen=self.WINDOW)

    def round_trip(self, seconds: float) -> None:
        with self._lock:
            self._round_trips.append(seconds)

    def capture(self, seconds: float) -> None:
        with self._lock:
            self._captures.append(seconds)

    def read_at(self, oldest_sent: float) -> float:
        """When to start reading, given when the request whose result frees room was sent."""
        with self._lock:
            if min(len(self._round_trips), len(self._captures)) < self.MIN_SAMPLES:
                return oldest_sent
            round_trip = _quantile(self._round_trips, 0.25)
            capture = _quantile(self._captures, 0.75)
        return oldest_sent + max(0.0, round_trip - capture - self.MARGIN_S)


def _quantile(values: deque[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
