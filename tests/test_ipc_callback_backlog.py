"""The IPC callback queue is bounded under a flood (issue #8): a subscription callback that
waits holds at most ``max_backlog`` events; the rest go to the subscription's ``on_overflow``
at once, which the classifier answers BUSY without reading the request (or, when even its
refusal lane is full, drops counted)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import awsiot.greengrasscoreipc
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import BinaryMessage, JsonMessage, PublishMessage

from ggic.classifier.service import ClassifierService
from ggic.ipc import IpcClient
from ggic.ipc_callbacks import CallbackRunner, with_overflow
from intake_harness import Intake
from waiting import wait_until

OPEN_ACL = {"aws.greengrass.ipc.pubsub": {"all": {"operations": ["*"], "resources": ["*"]}}}


def test_a_blocked_callback_queues_at_most_max_backlog_events_the_rest_overflow() -> None:
    gate = threading.Event()
    ran: list[int] = []
    overflowed: list[int] = []
    runner = CallbackRunner(max_backlog=50)

    def callback(n: int) -> None:
        gate.wait(10)
        ran.append(n)

    def plain(n: int) -> None:
        gate.wait(10)
        ran.append(n)

    marked = with_overflow(callback, overflowed.append)
    try:
        for n in range(5000):
            runner.submit(marked, n)
            assert runner.backlog() <= 51  # 50 queued + the one running
        assert runner.peak_backlog <= 50
        assert runner.overflowed == len(overflowed) >= 5000 - 51
        gate.set()
        assert runner.quiesce(10)
        # every event went exactly one way
        assert sorted(ran + overflowed) == list(range(5000))
        # unmarked callbacks (stream closed, configuration events) are never overflowed
        gate.clear()
        runner.submit(marked, -1)
        for n in range(60):
            runner.submit(plain, 10_000 + n)
        assert runner.backlog() == 61 and runner.overflowed == len(overflowed)
        gate.set()
        assert runner.quiesce(10)
    finally:
        gate.set()
        runner.shutdown()


def test_overflow_through_the_real_sdk_splits_a_flood_without_loss(server) -> None:
    """The real awsiotsdk client over the ``ggic.local`` socket, with our runner capped at 20:
    a flood to a subscriber whose callback waits is split between the callback (at most 21
    held) and ``on_overflow``, each JSON and binary message exactly once."""
    token = server.register_component("com.example.sub", access_control=OPEN_ACL)
    runner = CallbackRunner(max_backlog=20)
    sub_client = GreengrassCoreIPCClientV2(
        client=awsiot.greengrasscoreipc.connect(ipc_socket=str(server.socket_path),
                                                authtoken=token),
        executor=None)
    token = server.register_component("com.example.pub", access_control=OPEN_ACL)
    pub = GreengrassCoreIPCClientV2(client=awsiot.greengrasscoreipc.connect(
        ipc_socket=str(server.socket_path), authtoken=token), executor=None)
    gate = threading.Event()
    handled: list[Any] = []
    overflowed: list[Any] = []

    def handler(_topic: str, payload: Any) -> None:
        gate.wait(30)
        handled.append(payload)

    try:
        IpcClient(sub_client, callbacks=runner).subscribe("flood/in", handler,
                                        on_overflow=lambda _t, p: overflowed.append(p))
        sent = 200
        for n in range(sent):
            message = (JsonMessage(message={"n": n}) if n % 2 else None)
            binary = None if n % 2 else BinaryMessage(message=f'{{"n": {n}}}'.encode())
            pub.publish_to_topic(topic="flood/in", publish_message=PublishMessage(
                json_message=message, binary_message=binary))
        wait_until(lambda: len(overflowed) + runner.backlog() >= sent, 30)
        assert runner.peak_backlog <= 20
        gate.set()
        assert runner.quiesce(30)
        numbers = sorted(
            p["n"] if isinstance(p, dict) else int(bytes(p)[6:-1]) for p in handled + overflowed)
        assert numbers == list(range(sent))
        assert len(overflowed) >= sent - 21 and runner.overflowed == len(overflowed)
    finally:
        gate.set()
        sub_client.close()
        runner.shutdown()
        pub.close()


def test_overflow_is_answered_busy_with_the_request_id_read_cheaply() -> None:
    h = Intake()
    try:
        overflow = h.overflow_handlers["local/inference"]
        overflow("local/inference", {"request_id": "j1", "image_path": "/x.jpg"})
        overflow("local/inference", {"request_id": "j2", "reply_to": "replies/a"})
        overflow("local/inference", {"request_id": "j3", "reply_to": "not/allowed"})
        overflow("local/inference", b'{"request_id": "b1", "image_base64": "AAAA"}')
        # the id past the scanned prefix of a large binary message is not looked for
        overflow("local/inference", b'{"image_base64": "' + b"A" * 3_000_000
                 + b'", "request_id": "late"}')
        overflow("local/inference", b"\xff\xfe not json")
        results = h.wait_results(6)
        assert all(m["status"] == "error" and m["error"]["code"] == "BUSY"
                   for _, m in results)
        by_id = {m["request_id"]: topic for topic, m in results}
        assert by_id.pop("j1") == "local/result"
        assert by_id.pop("j2") == "replies/a"
        assert by_id.pop("j3") == "local/result"
        assert by_id.pop("b1") == "local/result"
        assert "late" not in by_id and len(by_id) == 2  # generated ids
        assert h.service.wait_idle(5) and h.service.delivered == h.service.answered == 6
        assert h.service.overflow.owed == 0
    finally:
        h.service.shutdown()


def test_a_full_refusal_lane_drops_the_overflow_counted_and_logged(caplog) -> None:
    caplog.set_level(logging.WARNING)
    h = Intake()
    service: ClassifierService = h.service
    try:
        service._publisher.outbox.refusal_capacity = 0
        for n in range(3):
            h.overflow_handlers["local/inference"]("local/inference", {"request_id": f"d{n}"})
        assert service.overflow.dropped == 3
        assert service.wait_idle(0) and service.delivered == 0  # nothing left owed
        assert service.overflow.owed == 0
        assert "DROPPED 1 request(s) unanswered" in caplog.text  # the first at once
    finally:
        service.shutdown()
    assert not h.published
