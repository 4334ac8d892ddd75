"""Backpressure through the real awsiotsdk client over a real socket (``ggic.local``'s IPC server)
(issue #8): a subscription on a connection of its own (``IpcClient(network_thread_callbacks=
True)``) whose callback blocks makes the SDK stop reading that socket, so a flood waits in the
server's and the kernel's buffers, undelivered, instead of in the subscriber's memory; the
component's other connection keeps publishing meanwhile; released, every message arrives once,
in order; a stream closed while the callback blocks delivers nothing more once its close has
completed."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from ggic.ipc import IpcClient
from waiting import wait_until

OPEN_ACL = {"aws.greengrass.ipc.pubsub": {"all": {"operations": ["*"], "resources": ["*"]}}}
NAME = "com.example.Intake"


@pytest.fixture
def component(server, monkeypatch):
    """Two connections of one component, as the classifier opens them: main and intake."""
    server.register_component(NAME, access_control=OPEN_ACL)
    for key, value in server.component_env(NAME).items():
        monkeypatch.setenv(key, value)
    main = IpcClient()
    intake = IpcClient(network_thread_callbacks=True)
    yield main, intake
    intake.close()
    main.close()


def unsent(server) -> int:
    """Bytes the server holds unsent for the component (reaches into the server: it has no
    public way to tell, and production code needs none)."""
    with server._lock:
        return sum(c.writer.transport.get_write_buffer_size() for c in server._connections
                   if c.component == NAME)


class Blocking:
    """A callback that records each message and blocks while ``gate`` is closed."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.received: list[int] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, _topic: str, payload: Any) -> None:
        with self.lock:
            self.received.append(payload["n"])
            self.threads.add(threading.current_thread().name)
        assert self.gate.wait(30)

    def count(self) -> int:
        with self.lock:
            return len(self.received)


def test_a_blocked_callback_leaves_the_flood_unread_and_answers_still_leave(server, component):
    main, intake = component
    callback = Blocking()
    intake.subscribe("flood/in", callback)
    answers: list[Any] = []
    unsubscribe = server.subscribe("flood/out", lambda _t, m: answers.append(m))
    sent = 5000
    try:
        for n in range(sent):
            server.publish("flood/in", {"n": n, "pad": "x" * 200})
        # the server wrote them all, and most still wait in its buffer: the client stopped
        # reading (the kernel's socket buffers hold a few hundred KB more)
        wait_until(lambda: server.traffic(NAME)[0] == sent, 30)
        time.sleep(0.3)
        assert unsent(server) > 500_000, unsent(server)
        assert callback.count() == 1  # only the first was delivered; it still blocks
        # the same component's main connection is not held up by it
        for n in range(50):
            main.publish("flood/out", {"answer": n})
        wait_until(lambda: len(answers) == 50, 15)
        callback.gate.set()
        wait_until(lambda: callback.count() == sent, 60)
        time.sleep(0.2)
        assert callback.received == list(range(sent))  # each once, in order
        assert callback.threads != {threading.current_thread().name}
    finally:
        callback.gate.set()
        unsubscribe()


def test_a_stream_closed_while_its_callback_blocks_delivers_nothing_after_the_close(
        server, component):
    _main, intake = component
    callback = Blocking()
    subscription = intake.subscribe("flood/in", callback)
    sent = 3000
    for n in range(sent):
        server.publish("flood/in", {"n": n, "pad": "x" * 200})
    wait_until(lambda: server.traffic(NAME)[0] == sent, 30)
    closed = subscription.begin_close()
    time.sleep(0.2)
    assert not closed.done()  # the close waits for the network thread the callback holds
    callback.gate.set()
    closed.result(10)
    after_close = callback.count()
    finished = intake.begin_close()  # what it never read is never delivered
    finished.result(10)
    time.sleep(0.3)
    assert callback.count() == after_close < sent
    assert callback.received == list(range(after_close))  # no gap, no duplicate
    assert intake.lost_reason is None  # closed by us: not reported lost
