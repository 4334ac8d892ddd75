"""Between the request callback and the classifier's pipeline threads: the jobs waiting for a
preprocessing worker (at most QueueSize) and the items ready for the inference thread (at most
Workers + 1), under one lock.

    submit(job)  ->  jobs  ->  worker: prepare  ->  ready  ->  inference thread: model
                 \\__________ (the pipeline is idle) __________/   (prepares it itself)

The shortcut: a job that arrives while the inference thread waits with nothing ready, no
worker preparing and no job queued goes straight to the inference thread, which prepares it
itself. A lone request (a camera with MaxInFlight 1 sends nothing else) then crosses one thread
hand-off (the request callback -> the inference thread) instead of two (-> a worker -> the
inference thread), each a thread wake on its path. Under load nothing changes: the workers
prepare the next jobs while the model runs, and jobs still start in arrival order (the
shortcut is only taken when nothing is ahead of the job).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque

from .stages import STOP, Job, Prepared, ReadyItem, Stop, WarmUp, WorkItem


class PipelineQueues:
    def __init__(self, queue_size: int = 0, ready_size: int = 1) -> None:
        self.queue_size = queue_size
        """At most this many jobs wait for a worker (0: no bound); more: :meth:`submit`
        raises queue.Full (the request is answered BUSY)."""
        self.ready_size = ready_size
        self._lock = threading.Lock()
        self._job_waiting = threading.Condition(self._lock)  # workers wait on it
        self._ready_waiting = threading.Condition(self._lock)  # the inference thread
        self._room = threading.Condition(self._lock)  # workers with an input prepared
        self._jobs: deque[WorkItem] = deque()
        self._ready: deque[ReadyItem] = deque()
        self._preparing = 0
        self._inference_idle = False

    def qsize(self) -> int:
        """Jobs waiting for a worker (the metrics' queue depth)."""
        with self._lock:
            return sum(1 for item in self._jobs if isinstance(item, Job))

    # --- the request callback ----------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue ``job`` for a worker, or hand it to an idle inference thread; queue.Full when
        QueueSize jobs already wait."""
        with self._lock:
            if self._inference_idle and not self._ready and not self._jobs \
                    and self._preparing == 0:
                self._inference_idle = False
                self._ready.append(job)
                self._ready_waiting.notify()
                return
            if self.queue_size > 0 and len(self._jobs) >= self.queue_size:
                raise queue.Full
            self._jobs.append(job)
            self._job_waiting.notify()

    def take_queued_jobs(self) -> list[Job]:
        """Remove the jobs no worker has taken yet (a stop past its drain time)."""
        with self._lock:
            jobs = [item for item in self._jobs if isinstance(item, Job)]
            kept = [item for item in self._jobs if not isinstance(item, Job)]
            self._jobs.clear()
            self._jobs.extend(kept)
            return jobs

    # --- the preprocessing workers -----------------------------------------------------------

    def next_job(self) -> WorkItem:
        """The next job (or a stop) for a worker; a job must end with :meth:`prepared`."""
        with self._lock:
            self._job_waiting.wait_for(lambda: bool(self._jobs))
            item = self._jobs.popleft()
            if isinstance(item, Job):
                self._preparing += 1
            return item

    def prepared(self, item: Prepared | None) -> None:
        """A worker is done with its job: ``item`` for the inference thread (waits for room),
        or None (the job was answered already, say with an error)."""
        with self._lock:
            if item is not None:
                self._room.wait_for(lambda: len(self._ready) < self.ready_size)
                self._ready.append(item)
                self._inference_idle = False
                self._ready_waiting.notify()
            self._preparing -= 1

    # --- the inference thread ----------------------------------------------------------------

    def next_for_inference(self) -> ReadyItem:
        """The next item for the inference thread (waits for one)."""
        with self._lock:
            while not self._ready:
                self._inference_idle = True
                self._ready_waiting.wait()
            self._inference_idle = False
            item = self._ready.popleft()
            self._room.notify()
            return item

    def put_for_inference(self, item: WarmUp | Stop, timeout: float | None = None) -> bool:
        """Queue a warm-up or a stop for the inference thread, after what is ready; False if
        there was no room within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while len(self._ready) >= self.ready_size:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._room.wait(left)
            self._ready.append(item)
            self._inference_idle = False
            self._ready_waiting.notify()
            return True

    def stop_workers(self, count: int) -> None:
        """One stop per worker, after the jobs queued."""
        with self._lock:
            for _ in range(count):
                self._jobs.append(STOP)
            self._job_waiting.notify_all()
