"""How the stream requester sends: the pending frame goes out from whichever thread made room or
a frame (the capture loop after its offer, the result that frees room, an expiry), with an
asynchronous publish, never a thread wake in between.

Unit tests of our own logic with a stand-in IPC client whose publishes the test ends (fail at
once, fail later on another thread, succeed), then one test through the real parts: the real
awsiotsdk client over a real socket to ``ggic.local``'s IPC server, where each request after
the first is published on the very thread (the SDK's network thread) that took the previous
result.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from ggic.config import RequesterConfig, config_from_mapping
from ggic.ipc import IpcClient, IpcError, IpcErrorKind
from ggic.messages import ClassificationResult, Prediction
from ggic.requester.handoff import Frame, ring_slots
from ggic.requester.stream import StreamService, parse_frame_id
from waiting import wait_until

IMAGE = np.full((48, 64, 3), 128, np.uint8)


class Subscription:
    def close(self) -> None:
        pass


class FuturesIpc:
    """A stand-in IPC client: each request's publish returns a future the test ends (or one
    already failed, with ``fail_at_once``)."""

    def __init__(self, fail_at_once: bool = False) -> None:
        self.fail_at_once = fail_at_once
        self.lock = threading.Lock()
        self.started: list[tuple[str, Future]] = []

    def publish_async(self, topic: str, message: Any) -> Future:
        future: Future = Future()
        if self.fail_at_once:
            future.set_exception(IpcError(IpcErrorKind.SERVICE, "refused at once"))
        with self.lock:
            self.started.append((message["request_id"], future))
        return future

    def publish(self, topic: str, message: Any) -> None:
        raise AssertionError("no synchronous publish of a request")

    def subscribe(self, _topic: str, _callback: Any, **_options: Any) -> Subscription:
        return Subscription()

    def seqs(self) -> list[int]:
        with self.lock:
            return [parse_frame_id(rid)[1] for rid, _ in self.started]

    def future(self, index: int) -> Future:
        with self.lock:
            return self.started[index][1]


def make_service(ipc: Any, tmp_path: Path, **settings: str) -> StreamService:
    config = config_from_mapping(RequesterConfig, {
        "Source": "rtsp://cam/stream", "FrameDirectory": str(tmp_path / "frames"),
        "StreamName": "cam", "MetricsInterval": "0", **settings})
    return StreamService(ipc, lambda: config, use_ipc_config=False)


def capture(service: StreamService, seq: int) -> None:
    """What the capture loop does with a frame it takes."""
    service._prepare(IMAGE, Frame(seq, time.time(), time.monotonic(), -1), service.config)


def free_slots(service: StreamService) -> int:
    ring = service.sender.ring
    assert ring is not None
    taken = []
    while (slot := ring.acquire()) is not None:
        taken.append(slot)
    for slot in taken:
        ring.release(slot)
    return len(taken)


def result_of(request_id: str) -> dict[str, Any]:
    return ClassificationResult.success(request_id, [Prediction("x", 1, 0.9)], {}, {}).to_dict()


def test_a_frame_is_sent_as_soon_as_it_is_prepared_when_there_is_room(tmp_path):
    ipc = FuturesIpc()
    service = make_service(ipc, tmp_path)
    capture(service, 1)
    assert ipc.seqs() == [1] and len(service.in_flight) == 1 and service.in_flight.pending is None
    capture(service, 2)  # no room: pending
    assert ipc.seqs() == [1] and service.in_flight.pending is not None
    assert service.metrics.totals["sent"] == 0
    ipc.future(0).set_result(None)
    assert service.metrics.totals["sent"] == 1  # counted once the publish succeeded


def test_the_result_that_frees_room_sends_the_pending_frame_on_its_own_thread(tmp_path):
    ipc = FuturesIpc()
    service = make_service(ipc, tmp_path)
    capture(service, 1)
    capture(service, 2)
    ipc.future(0).set_result(None)
    request_1 = ipc.started[0][0]
    sent_on: list[str] = []
    publish_async = ipc.publish_async

    def recording(topic: str, message: Any) -> Future:
        sent_on.append(threading.current_thread().name)
        return publish_async(topic, message)

    ipc.publish_async = recording  # type: ignore[method-assign]
    network = threading.Thread(target=service.on_result, args=("local/result",
                                                               result_of(request_1)),
                               name="stand-in-network-thread")
    network.start()
    network.join(30)
    assert ipc.seqs() == [1, 2] and sent_on == ["stand-in-network-thread"]
    assert service.metrics.totals["ok"] == 1 and service.in_flight.pending is None


def test_a_publish_that_fails_at_once_frees_its_room_and_slot_and_is_counted(tmp_path, caplog):
    ipc = FuturesIpc(fail_at_once=True)
    service = make_service(ipc, tmp_path)
    capture(service, 1)
    assert ipc.seqs() == [1]
    assert len(service.in_flight) == 0 and service.in_flight.idle()
    assert free_slots(service) == ring_slots(1)
    assert service.metrics.totals["send_failures"] == 1 and service.metrics.totals["sent"] == 0
    assert "1 frame(s) not sent in " in caplog.text
    assert "the latest: frame 1: ServiceError: refused at once" in caplog.text
    for seq in range(2, 52):  # the next frames are tried as usual...
        capture(service, seq)
    assert ipc.seqs() == list(range(1, 52)) and service.metrics.totals["send_failures"] == 51
    not_sent_lines = [r for r in caplog.records if "not sent" in r.getMessage()]
    assert 1 <= len(not_sent_lines) <= 2  # ...and the log says so in a line or two, not 51


def test_a_publish_that_fails_later_frees_its_room_once_and_the_pending_frame_gets_it(tmp_path):
    ipc = FuturesIpc()
    service = make_service(ipc, tmp_path)
    capture(service, 1)
    capture(service, 2)  # pending: no room
    failing = threading.Thread(target=ipc.future(0).set_exception,
                               args=(IpcError(IpcErrorKind.CONNECTION_LOST, "lost"),))
    failing.start()
    failing.join(30)
    assert ipc.seqs() == [1, 2]  # the room went to frame 2 at once
    assert len(service.in_flight) == 1 and service.in_flight.pending is None
    assert service.metrics.totals["send_failures"] == 1
    assert free_slots(service) == ring_slots(1) - 1  # only frame 2's slot is taken
    ipc.future(1).set_result(None)
    totals = service.metrics.totals
    assert (totals["sent"], totals["send_failures"]) == (1, 1)  # each frame counted once


def test_a_later_failure_whose_retry_fails_at_once_ends_without_recursion(tmp_path):
    ipc = FuturesIpc()
    service = make_service(ipc, tmp_path)
    capture(service, 1)
    capture(service, 2)
    ipc.fail_at_once = True
    ipc.future(0).set_exception(IpcError(IpcErrorKind.CONNECTION_LOST, "lost"))
    assert ipc.seqs() == [1, 2] and service.in_flight.idle()
    assert service.metrics.totals["send_failures"] == 2
    assert free_slots(service) == ring_slots(1)


def test_a_failure_after_the_request_timed_out_frees_nothing_a_second_time(tmp_path):
    """The expiry freed the request's slot, which a newer frame then took: the publish's late
    failure must not free that slot again (it is the newer frame's now)."""
    ipc = FuturesIpc()
    service = make_service(ipc, tmp_path, ResultTimeout="1")
    capture(service, 1)
    [(_rid, frame_1)] = service.in_flight.expired(-1.0)  # as the expiry thread does
    frame_1.release_slot()
    slot_of_frame_1 = frame_1.slot
    capture(service, 2)  # sent: frame 1's room is free
    capture(service, 3)  # pending
    capture(service, 4)  # supersedes 3, in the slot frame 1 had
    pending = service.in_flight.pending
    assert pending is not None and pending.frame.slot == slot_of_frame_1
    before = free_slots(service)
    ipc.future(0).set_exception(IpcError(IpcErrorKind.CONNECTION_LOST, "late"))
    assert free_slots(service) == before  # frame 4's slot was not freed
    assert len(service.in_flight) == 1 and service.in_flight.pending is pending
    assert ipc.seqs() == [1, 2]  # frame 2 still holds the only room
    assert service.metrics.totals["send_failures"] == 1


def test_an_expiry_gives_the_room_to_the_pending_frame_without_the_capture_loop(tmp_path):
    ipc = FuturesIpc()
    service = make_service(ipc, tmp_path, ResultTimeout="0.2")
    capture(service, 1)
    capture(service, 2)
    service.start()
    try:
        wait_until(lambda: ipc.seqs() == [1, 2])
        assert service.metrics.totals["timeouts"] >= 1
    finally:
        service.stop()
        service.close()


def test_nothing_is_sent_once_stopped(tmp_path):
    ipc = FuturesIpc()
    service = make_service(ipc, tmp_path)
    capture(service, 1)
    capture(service, 2)
    service.stop()
    service.on_result("local/result", result_of(ipc.started[0][0]))
    assert ipc.seqs() == [1] and service.in_flight.pending is not None  # for the stop to drop


# --- through the real parts --------------------------------------------------------------------

OPEN_ACL = {"aws.greengrass.ipc.pubsub": {"all": {"operations": ["*"], "resources": ["*"]}}}
FRAMES = 8


@pytest.fixture
def component_client(server, monkeypatch):
    server.register_component("com.custom.requester", access_control=OPEN_ACL)
    for key, value in server.component_env("com.custom.requester").items():
        monkeypatch.setenv(key, value)
    ipc = IpcClient()
    yield ipc
    ipc.close()


def test_each_next_request_is_published_on_the_thread_that_took_the_previous_result(
        server, component_client, tmp_path, caplog):
    """A real requester (StreamService on the real SDK client, results on its network thread)
    classifying a video frame by frame against a responder at the server that answers each
    request once the next frame is pending: every request after the first is published by the
    thread that handled the previous request's result, not handed to another thread; the
    results' log lines are written by another thread (after that callback has returned)."""
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(FRAMES):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    config = config_from_mapping(RequesterConfig, {
        "Source": str(video), "VideoRealTime": "false", "FrameTransport": "inline",
        "FrameFormat": "jpeg", "StreamName": "real", "MetricsInterval": "0",
        "ResultTimeout": "60", "FrameDirectory": str(tmp_path / "frames")})
    ipc = component_client
    service = StreamService(ipc, lambda: config, use_ipc_config=False)

    lock = threading.Lock()
    published_by: dict[int, int] = {}  # frame -> the thread that published its request
    result_taken_by: dict[int, int] = {}  # frame -> the thread that handled its result
    publish_async, publish, on_result = ipc.publish_async, ipc.publish, service.on_result

    def record_publish(message: Any) -> None:
        with lock:
            published_by[parse_frame_id(message["request_id"])[1]] = threading.get_ident()

    def recording_publish_async(topic: str, message: Any) -> Future:
        if topic == config.request_topic:
            record_publish(message)
        return publish_async(topic, message)

    def recording_publish(topic: str, message: Any) -> None:
        if topic == config.request_topic:
            record_publish(message)
        publish(topic, message)

    def recording_on_result(topic: str, payload: Any) -> None:
        with lock:
            result_taken_by[parse_frame_id(payload["request_id"])[1]] = threading.get_ident()
        on_result(topic, payload)

    ipc.publish_async = recording_publish_async  # type: ignore[method-assign]
    ipc.publish = recording_publish  # type: ignore[method-assign]
    service.on_result = recording_on_result  # type: ignore[method-assign]

    requests: queue.Queue = queue.Queue()
    unsubscribe = server.subscribe(config.request_topic, lambda _t, m: requests.put(m))
    stop_responder = threading.Event()

    def respond() -> None:
        while not stop_responder.is_set():
            try:
                request = requests.get(timeout=0.1)
            except queue.Empty:
                continue
            seq = parse_frame_id(request["request_id"])[1]
            deadline = time.monotonic() + 30
            while seq < FRAMES and service.in_flight.pending is None \
                    and time.monotonic() < deadline:
                time.sleep(0.002)
            server.publish(config.result_topic, result_of(request["request_id"]))

    responder = threading.Thread(target=respond, daemon=True)
    responder.start()
    exit_code: list[int] = []
    loop = threading.Thread(target=lambda: exit_code.append(service.serve()))
    caplog.set_level(logging.INFO, logger="ggic.requester.stream")
    loop.start()
    try:
        loop.join(60)
        assert exit_code == [0]
    finally:
        service.stop()
        loop.join(30)
        stop_responder.set()
        responder.join(10)
        unsubscribe()
    assert sorted(published_by) == list(range(1, FRAMES + 1))
    assert service.metrics.totals["ok"] == service.metrics.totals["sent"] == FRAMES
    assert service.metrics.totals["dropped"] == 0
    network_threads = {result_taken_by[seq] for seq in range(1, FRAMES + 1)}
    assert loop.ident not in network_threads
    for seq in range(2, FRAMES + 1):
        assert published_by[seq] == result_taken_by[seq - 1], (seq, published_by,
                                                                result_taken_by)
    logged_by = {r.thread for r in caplog.records if r.getMessage().startswith("frame ")}
    assert len([r for r in caplog.records if "capture->result" in r.getMessage()]) == FRAMES
    assert logged_by and not logged_by & network_threads
