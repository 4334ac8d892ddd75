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
from waiting import wait_until


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


class StartingIpc:
    """publish_async records who started each publish (and when asked, is slow to start one);
    the acknowledgement comes a moment later from another thread, as the SDK's does."""

    def __init__(self, slow_every: int = 0) -> None:
        self.lock = threading.Lock()
        self.started: list[tuple[str, str]] = []  # (request id, starting thread)
        self.slow_every = slow_every

    def publish_async(self, topic, payload) -> Future:
        future: Future = Future()
        with self.lock:
            self.started.append((payload["request_id"], threading.current_thread().name))
            n = len(self.started)
        if self.slow_every and n % self.slow_every == 0:
            time.sleep(0.002)  # the turn to start is held: what is put meanwhile is queued
        threading.Timer(0.001, future.set_result, (None,)).start()
        return future


def test_a_result_with_nothing_queued_ahead_is_published_by_the_thread_that_made_it():
    ipc = StartingIpc()
    done = threading.Semaphore(0)
    publisher = Publisher(ipc, done.release)
    publisher.start()
    try:
        for i in range(3):
            publisher.put(answer(f"r{i}"))
            assert done.acquire(timeout=5)  # answered (on_done) before the next
        assert ipc.started == [(f"r{i}", threading.current_thread().name) for i in range(3)]
    finally:
        publisher.stop(5)


def test_results_start_once_each_in_the_order_each_thread_put_them_whichever_thread_starts():
    """Two producing threads (the inference thread, a worker's errors), few slots, some slow
    starts: results go both ways (started by their producer, queued for the publisher thread),
    each producer's in its order, every one exactly once, and each answer is done once."""
    ipc = StartingIpc(slow_every=3)
    done: list[int] = []
    lock = threading.Lock()

    def on_done() -> None:
        with lock:
            done.append(1)

    publisher = Publisher(ipc, on_done, max_in_flight=1, capacity=8)
    publisher.start()

    def produce(name: str) -> None:
        for i in range(150):
            publisher.put(answer(f"{name}-{i}"))
            if i % 10 == 0:
                time.sleep(0.003)  # now and then nothing is queued: the direct way

    producers = [threading.Thread(target=produce, args=(name,), name=name)
                 for name in ("producer-a", "producer-b")]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join(30)
    publisher.stop(10)
    ids = [rid for rid, _ in ipc.started]
    assert sorted(ids) == sorted(f"{n}-{i}" for n in ("producer-a", "producer-b")
                                 for i in range(150))  # each once
    for name in ("producer-a", "producer-b"):
        assert [rid for rid in ids if rid.startswith(name)] == [f"{name}-{i}" for i in range(150)]
    starters = {thread for _, thread in ipc.started}
    assert "ggic-publisher" in starters and starters & {"producer-a", "producer-b"}
    assert wait_until(lambda: len(done) == 300)  # the last acknowledgements come just after
    time.sleep(0.05)
    assert len(done) == 300  # and never more


def test_one_publish_is_started_at_a_time_so_none_put_later_overtakes_one_taken():
    outbox = Outbox()
    outbox.put(answer("first"))
    assert outbox.take(turn=True).result.request_id == "first"  # not started yet
    assert not outbox.claim_start(lambda: True)  # a later one may not start before it
    outbox.started()
    assert outbox.claim_start(lambda: True)  # now it may: nothing queued, nothing starting
    outbox.put(answer("second"))
    taken: list[str] = []
    thread = threading.Thread(target=lambda: taken.append(
        outbox.take(turn=True).result.request_id))
    thread.start()
    thread.join(0.2)
    assert taken == []  # the publisher thread waits while a caller starts its publish
    outbox.started()
    thread.join(5)
    assert taken == ["second"]
    assert not outbox.claim_start(lambda: False)  # no slot free: it is queued instead


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
