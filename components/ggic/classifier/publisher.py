"""Publishing the classifier's answers: a bounded outbox and several publishes in flight.

One thread takes answers from the :class:`Outbox` and starts each publish through the SDK's
async API, up to ``max_in_flight`` at once, so an answer is not held behind the previous one's
acknowledgement. A publish that fails with a retryable error (``ServiceError``, a timeout) is
tried again after a short pause, keeping its in-flight slot; one that can never succeed
(``UnauthorizedError``, ``InvalidArgumentsError``...) is logged and given up at once. Either
way the answer is then done: ``on_done`` is called exactly once per answer.

The outbox has two ways in:

* :meth:`Outbox.put` for results and pipeline errors: waits while ``capacity`` of them are
  queued, which slows the pipeline down to the publishing rate (the work queue then fills and
  new requests are refused BUSY);
* :meth:`Outbox.put_refusal` for the answers the request callback gives at once (BUSY, invalid
  request, shutting down) and those of a stopping service: never waits and never drops,
  because each is the only answer its request gets. The lane is bounded upstream: the request
  callback waits before it takes a request while MAX_OWED + QueueSize answers are owed (see
  :mod:`.intake`), so it holds at most that many (``peak`` records it), plus the few callbacks
  a stopping service releases.

The two are separate lanes and results go first: a result is never queued behind a flood's
BUSY answers, and the pipeline never waits for room taken by them.

:meth:`Publisher.put` (the pipeline's way in) starts a result's publish on the calling thread
when nothing is queued ahead of it, no other publish is being started and a slot is free: the
hand-off to the publisher thread, a thread wake, is then off the path of a lone request.
Otherwise it queues the result (:meth:`Outbox.put`). Starting is one at a time, the publisher
thread's and the callers' alike (:meth:`Outbox.claim_start` / :meth:`Outbox.take` hold the turn
until :meth:`Outbox.started`), so answers start in the order they were put.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

from ..ipc import IpcClient, IpcError
from ..messages import ClassificationResult

log = logging.getLogger(__name__)

PUBLISH_ATTEMPTS = 3
RETRY_PAUSE_S = 0.05
MAX_IN_FLIGHT = 32
OUTBOX_CAPACITY = 256


@dataclass(frozen=True)
class Outgoing:
    """One answer: the result and where it goes."""

    topic: str
    result: ClassificationResult
    iot_core_topic: str | None = None


@dataclass
class _Publication:
    item: Outgoing
    payload: dict = field(default_factory=dict)
    attempt: int = 1
    waiting: int = 0  # publishes of this answer not finished yet (local, IoT Core)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Outbox:
    """Answers waiting for the publisher, plus publishes waiting to be retried."""

    def __init__(self, capacity: int = OUTBOX_CAPACITY) -> None:
        self.capacity = capacity
        self._results: deque[Outgoing] = deque()
        self._refusals: deque[Outgoing] = deque()
        self._retries: list[tuple[float, int, _Publication]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._unbounded = False
        self._closed = False
        self._starting = False  # a publish is being started (whose turn it is to start one)
        self.peak = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._results) + len(self._refusals)

    def put(self, item: Outgoing) -> None:
        """Queue a result, waiting while ``capacity`` are queued (see :meth:`unbound`)."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._results) < self.capacity or self._unbounded)
            self._append(self._results, item)

    def put_refusal(self, item: Outgoing) -> None:
        """Queue an answer without ever waiting (for the request callback thread)."""
        with self._cond:
            self._append(self._refusals, item)

    def _append(self, lane: deque[Outgoing], item: Outgoing) -> None:
        lane.append(item)
        self.peak = max(self.peak, len(self._results) + len(self._refusals))
        self._cond.notify_all()

    def unbound(self) -> None:
        """Stop making :meth:`put` wait (stopping: every answer goes out as fast as it can)."""
        with self._cond:
            self._unbounded = True
            self._cond.notify_all()

    def retry_later(self, publication: _Publication, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._retries,
                           (time.monotonic() + delay, next(self._order), publication))
            self._cond.notify_all()

    def close(self) -> None:
        """:meth:`take` returns None once nothing is left."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def claim_start(self, acquire_slot: Callable[[], bool]) -> bool:
        """Take the turn to start a publish on the calling thread: only if nothing is queued,
        no publish is being started and ``acquire_slot()`` (not waiting) gets a slot. True: the
        caller starts its publish, then calls :meth:`started`."""
        with self._cond:
            if self._starting or self._results or self._refusals or not acquire_slot():
                return False
            self._starting = True
            return True

    def started(self) -> None:
        """The publish whose turn it was has been started (or given up): the next may go."""
        with self._cond:
            self._starting = False
            self._cond.notify_all()

    def take(self, *, turn: bool = False) -> Outgoing | _Publication | None:
        """The next retry that is due, else the next answer; None once closed and empty.
        ``turn``: also the turn to start it (waiting while a caller has it; give it back with
        :meth:`started`), so that no publish put later starts first."""
        with self._cond:
            while True:
                if turn and self._starting:  # a caller is starting a publish put before these
                    self._cond.wait()
                    continue
                now = time.monotonic()
                if self._retries and self._retries[0][0] <= now:
                    self._starting = turn
                    return heapq.heappop(self._retries)[2]
                if self._results:
                    item = self._results.popleft()
                    self._starting = turn
                    self._cond.notify_all()  # room for a waiting put()
                    return item
                if self._refusals:
                    self._starting = turn
                    return self._refusals.popleft()
                if self._closed and not self._retries:
                    return None
                timeout = self._retries[0][0] - now if self._retries else None
                self._cond.wait(timeout)


class Publisher:
    """Publishes what the outbox holds, ``max_in_flight`` at a time; ``on_done()`` once per
    answer, when its publish has succeeded or been given up."""

    def __init__(self, ipc: IpcClient, on_done: Callable[[], None], *,
                 max_in_flight: int = MAX_IN_FLIGHT, capacity: int = OUTBOX_CAPACITY) -> None:
        self.ipc = ipc
        self.on_done = on_done
        self.outbox = Outbox(capacity)
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="ggic-publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, item: Outgoing) -> None:
        """Publish a result: started here when nothing is queued ahead of it and a slot is
        free, else queued (waiting while the outbox is full, see :meth:`Outbox.put`)."""
        if not self.outbox.claim_start(lambda: self._slots.acquire(blocking=False)):
            self.outbox.put(item)
            return
        try:
            self._begin(_Publication(item))
        finally:
            self.outbox.started()

    def stop(self, timeout: float) -> None:
        """Publish what is queued, then end the thread (waits at most ``timeout``)."""
        self.outbox.unbound()
        self.outbox.close()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            taken = self.outbox.take(turn=True)
            if taken is None:
                return
            try:
                if isinstance(taken, _Publication):  # a retry: it kept its slot
                    self._start_local(taken)
                    continue
                self._slots.acquire()
                self._begin(_Publication(taken))
            finally:
                self.outbox.started()

    def _begin(self, publication: _Publication) -> None:
        """Encode and start a new answer's publish (its slot taken)."""
        try:
            publication.payload = publication.item.result.to_dict()
        except Exception:  # a bug: the answer is still done, the thread goes on
            log.exception("encoding the result of %s failed", publication.item.result.request_id)
            self._finish(publication)
            return
        self._start(publication)

    def _start(self, publication: _Publication) -> None:
        item = publication.item
        publication.waiting = 2 if item.iot_core_topic else 1
        if item.iot_core_topic:
            future = self.ipc.publish_to_iot_core_async(item.iot_core_topic, publication.payload)
            future.add_done_callback(lambda f: self._iot_core_done(publication, f))
        self._start_local(publication)

    def _start_local(self, publication: _Publication) -> None:
        item = publication.item
        future = self.ipc.publish_async(item.topic, publication.payload)
        future.add_done_callback(lambda f: self._local_done(publication, f))

    def _local_done(self, publication: _Publication, future: Future) -> None:
        error = future.exception()
        if error is None:
            self._one_finished(publication)
            return
        item = publication.item
        if isinstance(error, IpcError) and error.is_retryable() \
                and publication.attempt < PUBLISH_ATTEMPTS:
            log.warning("publishing the result of %s on %s failed (%s); trying again",
                        item.result.request_id, item.topic, error)
            publication.attempt += 1
            self.outbox.retry_later(publication, RETRY_PAUSE_S * publication.attempt)
            return
        self.failed += 1
        log.error("could not publish the result of %s on %s: %s", item.result.request_id,
                  item.topic, error)
        self._one_finished(publication)

    def _iot_core_done(self, publication: _Publication, future: Future) -> None:
        error = future.exception()
        if error is not None:
            log.error("could not publish the result of %s to IoT Core topic %s: %s",
                      publication.item.result.request_id, publication.item.iot_core_topic, error)
        self._one_finished(publication)

    def _one_finished(self, publication: _Publication) -> None:
        with publication.lock:
            publication.waiting -= 1
            last = publication.waiting <= 0
        if last:
            self._finish(publication)

    def _finish(self, publication: _Publication) -> None:
        self._slots.release()
        self.on_done()
