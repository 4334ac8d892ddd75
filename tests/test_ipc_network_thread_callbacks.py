"""A subscription whose callback runs on the SDK's network thread (``IpcClient.subscribe(...,
on_network_thread=True)``), through the real awsiotsdk client over a real socket (``ggic.local``'s
IPC server): it skips the callback thread (one thread wake less per message) while the client's
other subscriptions keep it; messages arrive once, in order; a callback's bug is logged and the
stream stays open, as on the callback thread. The stream requester takes its results that way."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from ggic.config import RequesterConfig, config_from_mapping
from ggic.ipc import IpcClient
from ggic.messages import ClassificationResult, Prediction
from ggic.requester.handoff import Frame
from ggic.requester.stream import StreamService
from waiting import wait_until

OPEN_ACL = {"aws.greengrass.ipc.pubsub": {"all": {"operations": ["*"], "resources": ["*"]}}}
NAME = "com.example.Results"
CALLBACK_THREAD = "ggic-ipc-callbacks"  # CallbackRunner's thread


@pytest.fixture
def clients(server, monkeypatch):
    """A component's client (default: callbacks on the callback thread) and a publisher."""
    server.register_component(NAME, access_control=OPEN_ACL)
    for key, value in server.component_env(NAME).items():
        monkeypatch.setenv(key, value)
    component, publisher = IpcClient(), IpcClient()
    yield component, publisher
    component.close()
    publisher.close()


class Recording:
    """Records each message's number and the thread it was handed over on."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.lock = threading.Lock()
        self.received: list[int] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def __call__(self, _topic: str, payload: Any) -> None:
        with self.lock:
            self.received.append(payload["n"])
            self.threads.add(threading.current_thread().name)
        if payload["n"] == self.fail_on:
            raise RuntimeError("a bug in the callback")

    def count(self) -> int:
        with self.lock:
            return len(self.received)


def test_only_the_subscription_asked_for_runs_on_the_network_thread_in_order(clients):
    component, publisher = clients
    direct, queued = Recording(), Recording()
    component.subscribe("direct/topic", direct, on_network_thread=True)
    component.subscribe("queued/topic", queued)
    for n in range(20):
        publisher.publish("direct/topic", {"n": n})
        publisher.publish("queued/topic", {"n": n})
    assert wait_until(lambda: direct.count() == 20 and queued.count() == 20)
    assert direct.received == list(range(20)) and queued.received == list(range(20))
    assert CALLBACK_THREAD not in direct.threads and len(direct.threads) == 1
    assert queued.threads == {CALLBACK_THREAD}


def test_a_failing_network_thread_callback_is_logged_and_its_stream_stays_open(clients, caplog):
    component, publisher = clients
    failing = Recording(fail_on=0)
    closed = threading.Event()
    component.subscribe("direct/topic", failing, on_closed=closed.set, on_network_thread=True)
    with caplog.at_level(logging.ERROR, logger="ggic.ipc"):
        for n in range(5):
            publisher.publish("direct/topic", {"n": n})
        assert wait_until(lambda: failing.count() == 5)
    assert failing.received == list(range(5)) and not closed.is_set()
    assert "an IPC callback failed" in caplog.text


def test_the_stream_requester_takes_its_results_on_the_network_thread(clients, tmp_path):
    """The result that frees room reaches the in-flight table without a hand-off to the
    callback thread (the next request is sent straight from the network thread)."""
    _component, publisher = clients
    config = config_from_mapping(RequesterConfig, {
        "Source": "rtsp://cam/stream", "FrameDirectory": str(tmp_path / "frames"),
        "StreamName": "cam", "MetricsInterval": "0", "ResultTopic": "cam/result"})
    ipc = IpcClient()
    service = StreamService(ipc, lambda: config, use_ipc_config=False)
    popped_on: list[str] = []
    pop_sent = service.in_flight.pop_sent

    def recording_pop_sent(request_id: str) -> Any:
        popped_on.append(threading.current_thread().name)
        return pop_sent(request_id)

    service.in_flight.pop_sent = recording_pop_sent  # type: ignore[method-assign]
    service.start()
    try:
        service.in_flight.add("cam-1-0", Frame(1, 0.0, 0.0, -1))
        publisher.publish("cam/result", ClassificationResult.success(
            "cam-1-0", [Prediction("cat", 1, 0.9)], {}, {}).to_dict())
        assert wait_until(lambda: service.metrics.totals["ok"] == 1)
        assert len(service.in_flight) == 0
        assert popped_on and CALLBACK_THREAD not in popped_on
    finally:
        service.close()
        ipc.close()
