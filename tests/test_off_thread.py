"""requester/off_thread.py: work handed off the network thread runs in order on a thread of its
own, never lost (a full queue, or no thread, runs it at once on the caller's thread), one call
at a time; stop runs what was handed over first; a failing call is logged and the thread goes
on."""

from __future__ import annotations

import logging
import threading

from ggic.requester.off_thread import OffThread
from waiting import wait_until


class Calls:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[int, str]] = []
        self.running = 0
        self.overlapped = False
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, n: int) -> None:
        with self.lock:
            self.running += 1
            self.overlapped |= self.running > 1
        self.gate.wait(30)
        if n < 0:
            with self.lock:
                self.running -= 1
            raise RuntimeError("a bug in the call")
        with self.lock:
            self.seen.append((n, threading.current_thread().name))
            self.running -= 1


def test_calls_run_in_order_on_the_thread_not_the_caller():
    calls = Calls()
    worker = OffThread(calls, "test-off-thread")
    worker.start()
    for n in range(50):
        worker.submit(n)
    worker.stop()  # runs what was handed over first
    assert [n for n, _ in calls.seen] == list(range(50))
    assert {name for _, name in calls.seen} == {"test-off-thread"}


def test_before_start_and_after_stop_a_call_runs_at_once_on_the_caller():
    calls = Calls()
    worker = OffThread(calls, "test-off-thread")
    worker.submit(1)
    assert calls.seen == [(1, threading.current_thread().name)]
    worker.start()
    worker.stop()
    worker.submit(2)
    assert calls.seen[-1] == (2, threading.current_thread().name)


def test_a_full_queue_runs_the_call_at_once_and_never_two_at_a_time():
    calls = Calls()
    calls.gate.clear()  # the thread's first call waits: the queue fills up behind it
    worker = OffThread(calls, "test-off-thread", capacity=2)
    worker.start()
    worker.submit(0)
    wait_until(lambda: calls.running == 1)
    worker.submit(1)
    worker.submit(2)  # queued: capacity 2
    late = threading.Thread(target=worker.submit, args=(3,), name="caller")
    late.start()  # full: runs on the caller, once the running call is done
    calls.gate.set()
    late.join(30)
    worker.stop()
    assert sorted(n for n, _ in calls.seen) == [0, 1, 2, 3]  # nothing lost
    assert (3, "caller") in calls.seen
    assert not calls.overlapped


def test_a_failing_call_is_logged_and_the_thread_goes_on(caplog):
    calls = Calls()
    worker = OffThread(calls, "test-off-thread")
    worker.start()
    with caplog.at_level(logging.ERROR, logger="ggic.requester.off_thread"):
        worker.submit(-1)
        worker.submit(1)
        worker.stop()
    assert [n for n, _ in calls.seen] == [1]
    assert "test-off-thread failed" in caplog.text and "a bug in the call" in caplog.text
