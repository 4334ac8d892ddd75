"""Unit tests of the stream requester's read-ahead: the pending frame and the in-flight table
(requester/handoff.py), and the capture loop reading one frame ahead of the classifier
(StreamService with a stand-in IPC client; the real-process tests are in test_stream_ipc.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from ggic.config import RequesterConfig, config_from_mapping
from ggic.messages import ClassificationResult, ImageSource, Prediction, SourceKind
from ggic.requester.frames import FrameFormat, FrameRing
from ggic.requester.handoff import Frame, InFlight, ReadTiming, ReadyFrame, ring_slots
from ggic.requester.stream import StreamService, parse_frame_id


def ready(seq: int, slot: int = -1, ring: FrameRing | None = None,
          captured_mono: float | None = None) -> ReadyFrame:
    mono = time.monotonic() if captured_mono is None else captured_mono
    frame = Frame(seq, time.time(), mono, slot, ring)
    return ReadyFrame(f"cam-{seq}-0", frame, ImageSource(SourceKind.INLINE, data=b"x"))


def never() -> bool:
    return False


def test_a_newer_frame_supersedes_the_pending_one():
    table = InFlight(limit=1)
    assert table.offer(ready(1)) is None
    superseded = table.offer(ready(2))
    assert superseded is not None and superseded.frame.seq == 1
    assert table.pending is not None and table.pending.frame.seq == 2


def test_the_pending_frame_is_claimed_only_when_there_is_room_and_moves_in_flight_at_once():
    table = InFlight(limit=1)
    assert table.claim_now() is None  # nothing pending
    table.add("cam-1-0", ready(1).frame)
    table.offer(ready(2))
    assert table.claim_now() is None  # full: it stays pending
    assert table.pending is not None and len(table) == 1
    assert table.pop("cam-1-0") is not None
    claimed = table.claim_now()
    assert claimed is not None and claimed.frame.seq == 2
    assert table.pending is None and len(table) == 1  # in flight, no longer pending
    assert table.claim_now() is None  # claimed once
    assert table.pop("cam-2-0") == claimed.frame
    assert table.idle()


def test_a_claim_wakes_whoever_waits_for_the_pending_frame_to_be_sent():
    table = InFlight(limit=1)
    table.offer(ready(1))
    sent: list[bool] = []
    waiter = threading.Thread(target=lambda: sent.append(table.wait_until_sent(never, 30)))
    waiter.start()
    assert table.claim_now() is not None
    waiter.join(30)
    assert not waiter.is_alive() and sent == [True]


def test_giving_up_leaves_the_pending_frame_for_the_stop_to_drop():
    table = InFlight(limit=1)
    table.offer(ready(1))
    assert not table.wait_until_sent(lambda: True, timeout=1)
    dropped = table.take_pending()
    assert dropped is not None and dropped.frame.seq == 1 and table.idle()


def test_the_result_timeout_counts_from_sending_not_from_capture():
    table = InFlight(limit=1)
    table.offer(ready(1, captured_mono=time.monotonic() - 60))  # waited long as pending
    claimed = table.claim_now()
    assert claimed is not None
    assert table.expired(30.0) == []  # just sent
    assert table.oldest_sent() is not None and table.oldest_sent() > time.monotonic() - 30
    assert table.expired(-1.0) == [("cam-1-0", claimed.frame)]
    assert table.oldest_sent() is None


@pytest.mark.parametrize("max_in_flight", [1, 2, 4])
def test_the_ring_has_a_slot_for_each_request_the_pending_frame_and_the_next(tmp_path,
                                                                              max_in_flight):
    ring = FrameRing(tmp_path / "frames", ring_slots(max_in_flight), FrameFormat.BMP)
    table = InFlight(limit=max_in_flight)
    for seq in range(1, max_in_flight + 1):  # the in-flight requests
        table.offer(ready(seq, ring.acquire(), ring))
        assert table.claim_now() is not None
    pending = ring.acquire()
    table.offer(ready(100, pending, ring))
    newest = ring.acquire()  # the frame being prepared meanwhile
    assert pending is not None and newest is not None
    superseded = table.offer(ready(101, newest, ring))
    assert superseded is not None
    superseded.frame.release_slot()  # never sent: free at once...
    assert ring.acquire() == pending  # ...and the only slot free: none in flight is reused
    assert ring.acquire() is None


def test_the_next_room_is_expected_from_the_oldest_request_only_when_the_table_is_full():
    table = InFlight(limit=2)
    table.add("a", ready(1).frame, sent_mono=100.0)
    assert table.next_room_from() is None  # room now: read at once
    table.add("b", ready(2).frame, sent_mono=90.0)
    assert table.next_room_from() == 90.0
    table.pop("b")
    assert table.next_room_from() is None


def test_a_flat_out_video_frame_is_read_just_in_time_for_the_result_that_frees_room():
    timing = ReadTiming()
    for _ in range(ReadTiming.MIN_SAMPLES - 1):
        timing.round_trip(0.010)
        timing.capture(0.003)
    assert timing.read_at(50.0) == 50.0  # too few samples yet: at once
    timing.round_trip(0.010)
    timing.capture(0.003)
    # sent at 50.0, result expected at 50.010: a 3 ms read starts 1 ms early enough
    assert timing.read_at(50.0) == pytest.approx(50.0 + 0.010 - 0.003 - ReadTiming.MARGIN_S)
    for _ in range(ReadTiming.WINDOW):
        timing.capture(0.020)  # reads now take longer than a round trip: at once
    assert timing.read_at(50.0) == 50.0


# --- the capture loop, with a stand-in IPC client ---------------------------------------------


class Subscription:
    def close(self) -> None:
        pass


class StandInIpc:
    """Records the requests published (each publish ends at once, successfully); results are
    handed to the service by the test."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.published = threading.Condition()

    def publish(self, topic: str, message: Any) -> None:
        with self.published:
            if topic == "local/inference":
                self.requests.append(message)
            self.published.notify_all()

    def publish_async(self, topic: str, message: Any) -> Future:
        self.publish(topic, message)
        done: Future = Future()
        done.set_result(None)
        return done

    def subscribe(self, _topic: str, _callback: Any, **_options: Any) -> Subscription:
        return Subscription()

    def wait_for_requests(self, n: int) -> list[dict[str, Any]]:
        with self.published:
            assert self.published.wait_for(lambda: len(self.requests) >= n, 30), self.requests
            return list(self.requests)


def wait_until(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_video_is_read_exactly_one_frame_ahead_and_no_frame_is_dropped(tmp_path: Path):
    """VideoRealTime false, MaxInFlight 1: while frame n waits for its result, frame n+1 is
    read and prepared (not frame n+2); the result sends n+1 at once; every frame is sent."""
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(4):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    config = config_from_mapping(RequesterConfig, {
        "Source": str(video), "VideoRealTime": "false", "MaxInFlight": "1",
        "FrameDirectory": str(tmp_path / "frames"), "StreamName": "ahead",
        "MetricsInterval": "0", "ResultTimeout": "60"})
    ipc = StandInIpc()
    service = StreamService(ipc, lambda: config, use_ipc_config=False)  # type: ignore[arg-type]
    exit_code: list[int] = []
    loop = threading.Thread(target=lambda: exit_code.append(service.serve()))
    loop.start()
    try:
        for n in range(1, 5):
            request = ipc.wait_for_requests(n)[-1]
            assert parse_frame_id(request["request_id"])[1] == n
            if n < 4:  # frame n+1 is read while frame n is outstanding...
                assert wait_until(lambda n=n: service.metrics.totals["captured"] == n + 1)
                time.sleep(0.2)
            assert service.metrics.totals["captured"] == min(n + 1, 4)  # ...and no further
            path = Path(request["image_path"])
            assert path.read_bytes()[:2] == b"BM"
            service.on_result("local/result", ClassificationResult.success(
                request["request_id"], [Prediction("x", 1, 0.9)], {}, {}).to_dict())
        loop.join(30)
        assert exit_code == [0]
    finally:
        service.stop()
        loop.join(30)
    assert dict(service.metrics.totals) == {"captured": 4, "sent": 4, "ok": 4}


def test_switching_the_transport_and_back_keeps_one_ring_so_slots_in_flight_stay_taken(
        tmp_path: Path):
    """FrameTransport file -> inline -> file while a frame is in flight: the frames after the
    switch back come from the same ring, whose slot the frame in flight still holds (a new
    ring would hand that slot, the same file, out again)."""
    settings = {"Source": "rtsp://cam/stream", "FrameDirectory": str(tmp_path / "frames"),
                "StreamName": "switch", "MetricsInterval": "0"}
    configs = [config_from_mapping(RequesterConfig, {**settings, "FrameTransport": transport})
               for transport in ("file", "inline", "file")]
    current = [configs[0]]
    service = StreamService(StandInIpc(), lambda: current[0],  # type: ignore[arg-type]
                            use_ipc_config=False)
    first_ring = service.sender.ring
    in_flight_slot = service.sender.acquire_slot()  # the frame in flight holds it
    for config in configs[1:]:
        current[0] = config
        service._apply_config_update()
    assert service.sender.transport.value == "file" and service.sender.ring is first_ring
    free = {service.sender.acquire_slot() for _ in range(ring_slots(1) - 1)}
    assert in_flight_slot not in free and service.sender.acquire_slot() is None
