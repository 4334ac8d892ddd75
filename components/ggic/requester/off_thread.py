"""Work moved off the SDK's network thread, so it does not delay what that thread writes next.

A send started on the connection's network thread is written only once the callback that
started it returns (aws-c-event-stream schedules it as a task on that thread's event loop), so
the stream requester's result callback starts the next request's publish and hands the rest of
its work (metrics, the result's log line, change detection) here: one daemon thread runs the
calls in the order handed over. ``benchmarks/bench_stream_ab.py`` measured the gain (README).

Bounded: at most ``capacity`` calls wait; with the queue full, or before :meth:`start` and
after :meth:`stop`, a call runs at once on the caller's thread, so nothing handed over is lost
and memory stays bounded. A lock keeps two calls from ever running at once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_STOP = object()


class OffThread:
    """Runs ``call(*args)`` for each :meth:`submit`, one at a time, on its own thread."""

    def __init__(self, call: Callable[..., None], name: str, capacity: int = 256) -> None:
        self.call = call
        self.name = name
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._running = threading.Lock()  # held while a call runs
        self._thread: threading.Thread | None = None
        self._state = threading.Lock()  # guards _thread and what is queued

    def start(self) -> None:
        with self._state:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def submit(self, *args: Any) -> None:
        """Hand a call over (never waits for the thread; see the module docstring)."""
        with self._state:  # so none is queued behind stop's end marker
            if self._thread is not None:
                try:
                    self._queue.put_nowait(args)
                    return
                except queue.Full:
                    pass
        self._run_one(args)

    def stop(self, timeout: float = 5.0) -> None:
        """Run the calls handed over so far, then end the thread; later calls run at once."""
        with self._state:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout)

    def _run(self) -> None:
        while True:
            args = self._queue.get()
            if args is _STOP:
                return
            self._run_one(args)

    def _run_one(self, args: tuple[Any, ...]) -> None:
        with self._running:
            try:
                self.call(*args)
            except Exception:  # a bug must not end the thread nor reach the caller's thread
                log.exception("%s failed", self.name)
