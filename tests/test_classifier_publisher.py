"""Unit tests of the publisher's own logic (outbox lanes, publishes in flight, retries) and of
the IPC facade's typed errors and callback runner; the real-SDK behaviour is proven in
test_classifier_flood.py and test_classifier_resilience.py."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import pytest
from awsiot.eventstreamrpc import ConnectionClosedError, DeserializeError, StreamClosedError
from awsiot.greengrasscoreipc import model

from ggic.classifier.control import Control, Reopening
from ggic.classifier.publisher import Outbox, Outgoing, Publisher
from ggic.ipc import IpcError, IpcErrorKind, ipc_error_of
from ggic.ipc_callbacks import CallbackRunner
from ggic.messages import ClassificationResult, ErrorCode


def answer(rid: str, code: ErrorCode | None = None) -> Outgoing:
    result = (ClassificationResult.failure(rid, code, "x") if code is not None
              else ClassificationResult.success(rid, [], {"name": "m"}, {}))
    return Outgoing("local/result", result)


class ManualIpc:
    """publish_async returns futures the test finishes by hand."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[tuple[str, Future]] = []

    def publish_async(self, topic, payload) -> Future:
        future: Future = Future()
        with self.lock:
            self.started.append((payload["request_id"], future))
        return future

    def count(self) -> int:
        with self.lock:
            return len(self.started)

    def wait_started(self, n: int) -> None:
        deadline = time.monotonic() + 5
        while self.count() < n:
            assert time.monotonic() < deadline, f"only {self.count()} of {n} publishes started"
            time.sleep(0.005)


def test_several_publishes_are_in_flight_and_their_number_is_bounded():
    ipc = ManualIpc()
    done = []
    publisher = Publisher(ipc, lambda: done.append(1), max_in_flight=4)
    publisher.start()
    for i in range(10):
        publisher.outbox.put(answer(f"r{i}"))
    ipc.wait_started(4)
    time.sleep(0.1)
    assert ipc.count() == 4 and done == []  # no acknowledgement yet: 4 in flight, no more
    ipc.started[0][1].set_result(None)
    ipc.wait_started(5)  # one acknowledged: the next starts without waiting for the others
    for i in range(1, 10):
        ipc.started[i][1].set_result(None)
        ipc.wait_started(min(10, i + 5))
    publisher.stop(5)
    assert len(done) == 10
    assert [rid for rid, _ in ipc.started] == [f"r{i}" for i in range(10)]


def test_results_go_before_queued_refusals_and_refusals_never_wait():
    outbox = Outbox(capacity=2)
    for i in range(5):
        outbox.put_refusal(answer(f"busy{i}", ErrorCode.BUSY))  # beyond capacity: no wait
    outbox.put(answer("ok0"))
    outbox.put(answer("ok1"))
    taken = [outbox.take().result.request_id for _ in range(3)]
    assert taken == ["ok0", "ok1", "busy0"]
    assert outbox.peak == 7


def test_a_full_results_lane_makes_put_wait_until_there_is_room():
    outbox = Outbox(capacity=1)
    outbox.put(answer("a"))
    putter = threading.Thread(target=outbox.put, args=(answer("b"),))
    putter.start()
    putter.join(0.2)
    assert putter.is_alive()  # waiting for room
    assert outbox.take().result.request_id == "a"
    putter.join(5)
    assert not putter.is_alive()
    assert outbox.take().result.request_id == "b"


def test_ipc_errors_keep_the_sdk_errors_kind_and_retryability():
    cases = [
        (model.UnauthorizedError(message="no"), IpcErrorKind.UNAUTHORIZED, False),
        (model.InvalidArgumentsError(message="bad"), IpcErrorKind.INVALID_ARGUMENTS, False),
        (model.ServiceError(message="busy"), IpcErrorKind.SERVICE, True),
        (model.ResourceNotFoundError(message="gone"), IpcErrorKind.RESOURCE_NOT_FOUND, False),
        (model.ConflictError(message="c"), IpcErrorKind.CONFLICT, False),
        (model.ComponentNotFoundError(message="c"), IpcErrorKind.OTHER_CLIENT_ERROR, False),
        (TimeoutError(), IpcErrorKind.TIMEOUT, True),
        (StreamClosedError(), IpcErrorKind.STREAM_CLOSED, False),
        (ConnectionClosedError(), IpcErrorKind.CONNECTION_LOST, False),
        (DeserializeError("x", ValueError(), b""), IpcErrorKind.MALFORMED, False),
        (ValueError("?"), IpcErrorKind.UNKNOWN, False),
    ]
    for exc, kind, retryable in cases:
        error = ipc_error_of(exc)
        assert (error.kind, error.is_retryable()) == (kind, retryable), exc
    assert ipc_error_of(model.UnauthorizedError(message="no")).message == "no"
    assert str(IpcError(IpcErrorKind.SERVICE, "down")) == "ServiceError: down"


def test_the_callback_runner_runs_in_order_and_quiesce_waits_for_what_was_submitted():
    runner = CallbackRunner()
    gate = threading.Event()
    ran: list[int] = []
    runner.submit(gate.wait, 5)
    for i in range(3):
        runner.submit(ran.append, i)
    assert not runner.quiesce(0.1)  # the first is still running or waiting to
    gate.set()
    assert runner.quiesce(5)
    assert ran == [0, 1, 2]
    runner.shutdown()
    assert runner.submit(ran.append, 9).cancelled()  # after shutdown: dropped, not raised


def test_reopening_is_immediate_then_backs_off_and_resets():
    reopening = Reopening(0.1, 0.5)
    which = Control.RESUBSCRIBE_REQUESTS
    assert reopening.ended(which, 10.0)
    assert not reopening.ended(which, 10.0)  # already scheduled
    assert reopening.due(10.0) == [which]
    assert [reopening.failed(which, 10.0) for _ in range(5)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.5, 0.5])
    assert reopening.due(10.4) == [] and reopening.wait_time(10.4, 1.0) == pytest.approx(0.1)
    reopening.succeeded(which)
    assert reopening.wait_time(11.0, 1.0) == 1.0
    assert reopening.ended(which, 12.0) and reopening.failed(which, 12.0) == pytest.approx(0.1)
