"""The executor the IPC client runs subscription callbacks on: one thread, in arrival order.

``GreengrassCoreIPCClientV2`` hands every stream event to an executor (by default a
``ThreadPoolExecutor`` whose queue nobody can see). Ours is one thread whose queue we can
measure and, when a component stops, wait out: :meth:`CallbackRunner.quiesce` returns once
every event already handed to it has been run, so "the SDK invoked our callback" is a count the
component can rely on when it answers everything it received before it exits.

``submit`` is called on the SDK's network thread and never blocks (blocking it would stall the
acknowledgements the component's own publishes wait for). The SDK reads the socket as fast as
it can and gives us no way to stop reading, and the callbacks this runs may wait, which holds
the next events here, undelivered. So the queue is capped for callbacks that say what to do
with an event there is no room for: a callback carrying an ``overflow`` attribute (see
:func:`with_overflow`) is not queued once ``MAX_BACKLOG`` events are; its ``overflow(*args)``
runs at once on the submitting thread instead (it must be quick and never block: it answers
the event cheaply, or counts it dropped). Other callbacks (stream closed, configuration
events: rare) are always queued. :attr:`peak_backlog` tells how far it got behind,
:attr:`overflowed` how many events went to ``overflow``, and :meth:`discard` drops what a
stopping component has no time left for.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Executor, Future
from typing import Any, Callable

log = logging.getLogger(__name__)

#: Events queued at most for callbacks that have an ``overflow`` (memory stays bounded
#: whatever a flood's duration; each event is a few hundred bytes plus its payload).
MAX_BACKLOG = 2048


def with_overflow(fn: Callable[..., Any], overflow: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` itself (give it a function of its own), marked so that a
    :class:`CallbackRunner` with no room left runs ``overflow`` (same arguments, on the
    submitting thread) instead of queueing it."""
    fn.overflow = overflow  # type: ignore[attr-defined]
    return fn


class CallbackRunner(Executor):
    def __init__(self, name: str = "ggic-ipc-callbacks", max_backlog: int = MAX_BACKLOG) -> None:
        self.max_backlog = max_backlog
        self.overflowed = 0
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...], Future]] = deque()
        self._cond = threading.Condition()
        self._running = False
        self._shutdown = False
        self.peak_backlog = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        call = (lambda: fn(*args, **kwargs)) if kwargs else fn
        overflow = getattr(fn, "overflow", None)
        with self._cond:
            if self._shutdown:  # the client is closing: events still arriving are not run
                future.cancel()
                return future
            full = overflow is not None and len(self._queue) >= self.max_backlog
            if full:
                self.overflowed += 1
            else:
                self._queue.append((call, args if not kwargs else (), future))
                self.peak_backlog = max(self.peak_backlog, len(self._queue))
                self._cond.notify_all()
        if full:
            try:
                future.set_result(overflow(*args, **kwargs))
            except BaseException as exc:  # never raise into the SDK's network thread
                log.exception("an IPC overflow callback failed")
                future.set_exception(exc)
        return future

    def backlog(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._running else 0)

    def quiesce(self, timeout: float) -> bool:
        """Wait until every callback submitted so far has run; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._running, timeout)

    def discard(self) -> int:
        """Drop the callbacks not started yet (a stopping component that has run out of time
        for them); how many."""
        with self._cond:
            dropped = len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
            return dropped

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cond:
            self._shutdown = True
            if cancel_futures:
                self._queue.clear()
            self._cond.notify_all()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._shutdown:
                    self._cond.wait()
                if not self._queue:
                    self._cond.notify_all()
                    return
                call, args, future = self._queue.popleft()
                self._running = True
            try:
                future.set_result(call(*args))
            except BaseException as exc:  # a callback's bug must not end the runner
                log.exception("an IPC callback failed")
                future.set_exception(exc)
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()
