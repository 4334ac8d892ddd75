"""Unit tests of the classifier service's intake accounting and lifecycle (IPC double, fake
pipeline): every received message is answered, the owed limit holds the callback back,
stopping closes the request connection and answers a callback held back, ended subscriptions
are reopened with backoff, a lost connection (either) ends ``serve`` with 1."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import pytest

import ggic.classifier.service as service_module
from ggic.classifier.service import ClassifierService
from ggic.ipc import IpcClient, IpcError, IpcErrorKind
from intake_harness import ACCESS
from test_classifier_service_unit import Harness, harness  # noqa: F401 - ``make`` uses it


@pytest.fixture
def make(harness):  # noqa: F811 - the imported fixture
    """The unit tests' factory of started harnesses (shut down at teardown)."""
    return harness


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_an_exception_escaping_the_intake_is_still_answered_and_not_left_pending(make, mocker):
    h = make()
    mocker.patch.object(service_module, "parse_request", side_effect=RecursionError("deep"))
    h.send({"request_id": "a", "image_path": "/a.jpg"})
    (_, result), = h.wait_results(1)
    assert result["error"]["code"] == "INTERNAL_ERROR"
    assert h.service.wait_idle(5)
    assert h.service.delivered == h.service.answered == 1


def test_the_callback_waits_while_max_owed_answers_are_owed(make, mocker):
    mocker.patch.object(service_module, "MAX_OWED", 3)
    h = make({"QueueSize": "1"})
    held: list[Future] = []
    h.ipc.publish_async.side_effect = lambda topic, message: held.append(Future()) or held[-1]
    h.service._accepting.clear()  # every request is answered at once (UNAVAILABLE)
    sender = threading.Thread(target=lambda: [h.send({"request_id": f"r{i}",
                                                        "image_path": "/a.jpg"})
                                              for i in range(6)])
    sender.start()
    assert wait_for(lambda: h.service.delivered == 4)  # MAX_OWED + QueueSize
    sender.join(0.2)
    assert sender.is_alive() and h.service.delivered == 4  # the 5th waits, undelivered
    assert wait_for(lambda: len(held) == 4)
    held[0].set_result(None)  # one answer out: one more comes in
    assert wait_for(lambda: h.service.delivered == 5)
    for future in held[1:4]:
        future.set_result(None)
    assert wait_for(lambda: len(held) == 6)
    for future in held[4:]:
        future.set_result(None)
    sender.join(5)
    assert not sender.is_alive() and h.service.wait_idle(5)


def test_an_ended_request_subscription_is_reopened_with_backoff(make, caplog):
    h = make()
    calls = []
    real = h.ipc.subscribe.side_effect

    def flaky(topic, handler, on_error=None, on_closed=None):
        calls.append(time.monotonic())
        if len(calls) <= 3:
            raise IpcError(IpcErrorKind.SERVICE, "not now")
        return real(topic, handler, on_error, on_closed)

    h.ipc.subscribe.side_effect = flaky
    server = threading.Thread(target=h.service.serve)
    server.start()
    try:
        h.on_closed["local/inference"]()
        assert wait_for(lambda: len(calls) == 4, 10)
        pauses = [b - a for a, b in zip(calls, calls[1:])]
        assert pauses[1] > pauses[0] * 1.5 and pauses[2] > pauses[1] * 1.5  # doubling
        assert "the request subscription ended; opening it again" in caplog.text
        assert "could not reopen the request subscription: ServiceError: not now" in caplog.text
        h.send({"request_id": "after", "image_path": "/a.jpg"})  # the new handler
        h.wait_results(1)
    finally:
        h.service.stop()
        server.join(10)


def serve_result_when_lost(service, connection, reason: str) -> list[int]:
    """Run ``service.serve()``, make ``connection`` (an IPC double) report itself lost, and
    return what serve returned within 5 s (empty if it did not)."""
    (lost,), _ = connection.on_connection_lost.call_args
    result: list[int] = []
    server = threading.Thread(target=lambda: result.append(service.serve()))
    server.start()
    lost(reason)
    server.join(5)
    return result


def test_a_lost_connection_ends_serve_with_1_at_once(make):
    h = make()
    assert serve_result_when_lost(h.service, h.ipc, "the nucleus went away") == [1]


def test_a_connection_lost_while_reopening_ends_serve_with_1(make):
    h = make()
    h.ipc.subscribe.side_effect = IpcError(IpcErrorKind.CONNECTION_LOST, "closed")
    result: list[int] = []
    server = threading.Thread(target=lambda: result.append(h.service.serve()))
    server.start()
    h.on_closed["local/inference"]()
    server.join(5)
    assert result == [1]


def test_a_request_topic_that_cannot_be_subscribed_yet_is_retried_not_fatal(make, caplog):
    h = make()
    real = h.ipc.subscribe.side_effect
    attempts = []

    def refused_once(topic, handler, on_error=None, on_closed=None):
        attempts.append(topic)
        if len(attempts) == 1:
            raise IpcError(IpcErrorKind.UNAUTHORIZED, "not allowed yet")
        return real(topic, handler, on_error, on_closed)

    h.ipc.subscribe.side_effect = refused_once
    h.config["RequestTopic"] = "other/inference"
    h.service.apply_config_update()  # must not raise
    assert "could not reopen the request subscription: UnauthorizedError" in caplog.text
    server = threading.Thread(target=h.service.serve)
    server.start()
    try:
        assert wait_for(lambda: attempts == ["other/inference"] * 2)
        h.send({"request_id": "moved", "image_path": "/a.jpg"}, topic="other/inference")
        h.wait_results(1)
    finally:
        h.service.stop()
        server.join(10)


def make_with_intake(mocker, subscription, **config):
    """A started harness whose requests come through a dedicated intake connection double;
    ``subscription`` is what its subscribe returns. Shut down by the caller."""
    h = Harness(mocker, {"accessControl": ACCESS, **config})
    intake = mocker.Mock(spec=IpcClient)
    order: list[str] = []
    h.order = order

    def subscribe(topic, handler, on_error=None, on_closed=None):
        h.handlers[topic] = handler
        return subscription

    def begin_close():
        order.append("intake connection closed")
        done: Future = Future()
        done.set_result(None)
        return done

    intake.subscribe.side_effect = subscribe
    intake.begin_close.side_effect = begin_close
    h.intake = intake
    h.service = ClassifierService(h.ipc, model_loader=h.service.model_loader, intake=intake)
    h.service.start()
    return h


class StuckSubscription:
    """A request stream whose close never completes (the network thread is held)."""

    def __init__(self) -> None:
        self.closes = 0

    def close(self, timeout: float = 5.0) -> None:
        self.closes += 1

    def begin_close(self) -> Future:
        self.closes += 1
        return Future()


def test_stopping_closes_the_request_connection_then_answers_the_callback_held_back(
        mocker, make):
    mocker.patch.object(service_module, "MAX_OWED", 1)
    mocker.patch.object(service_module, "INTAKE_CLOSE_S", 0.3)
    stream = StuckSubscription()
    h = make_with_intake(mocker, stream, QueueSize="1")
    held: list[Future] = []

    def publish_async(topic, message) -> Future:
        h._publish(topic, message)
        held.append(Future())
        return held[-1]

    h.ipc.publish_async.side_effect = publish_async
    h.send({"request_id": "a", "image_path": "/a.jpg"})
    h.send({"request_id": "b", "image_path": "/b.jpg"})
    assert wait_for(lambda: len(held) == 2)  # two answers owed: MAX_OWED + QueueSize

    def third() -> None:
        h.send({"request_id": "c", "image_path": "/c.jpg"})
        h.order.append("callback admitted")

    sender = threading.Thread(target=third)
    sender.start()
    assert wait_for(lambda: h.service.received == 3)
    sender.join(0.2)
    assert sender.is_alive()  # held back: the SDK reads no further
    stopper = threading.Thread(target=h.service.shutdown)
    stopper.start()
    sender.join(5)
    assert not sender.is_alive()
    # the stream close never completed: after INTAKE_CLOSE_S the connection is closed and the
    # held-back callback is let through and answered
    assert stream.closes == 1
    assert sorted(h.order) == ["callback admitted", "intake connection closed"]
    assert wait_for(lambda: len(held) == 3)
    for future in held:
        future.set_result(None)
    stopper.join(10)
    assert not stopper.is_alive()
    (_, last), = h.published[-1:]
    assert last["request_id"] == "c" and last["error"]["code"] == "UNAVAILABLE"
    assert h.service.received == h.service.answered == 3


def test_a_lost_request_connection_ends_serve_with_1(mocker, make):
    h = make_with_intake(mocker, StuckSubscription())
    assert serve_result_when_lost(h.service, h.intake,
                                  "the request connection went away") == [1]
