"""The executor the IPC client runs subscription callbacks on: one thread, in arrival order.

``GreengrassCoreIPCClientV2`` hands every stream event to an executor (by default a
``ThreadPoolExecutor`` whose queue nobody can see). Ours is one thread whose queue we can
measure and, when a component stops, wait out: :meth:`CallbackRunner.quiesce` returns once
every event already handed to it has been run.

``submit`` is called on the SDK's network thread and never blocks (blocking it would stall the
acknowledgements the component's own publishes wait for), so the queue is not bounded here: it
carries only rare events (configuration changes, deployment notices, stream closed). A flood
of requests never reaches it: the classifier takes requests on a connection of their own whose
callback runs on that connection's network thread and may block (see :mod:`ggic.ipc`).
:attr:`peak_backlog` tells how far it got behind.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Executor, Future
from typing import Any, Callable

log = logging.getLogger(__name__)


class CallbackRunner(Executor):
    def __init__(self, name: str = "ggic-ipc-callbacks") -> None:
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
        with self._cond:
            if self._shutdown:  # the client is closing: events still arriving are not run
                future.cancel()
                return future
            self._queue.append((call, args if not kwargs else (), future))
            self.peak_backlog = max(self.peak_backlog, len(self._queue))
            self._cond.notify_all()
        return future

    def backlog(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._running else 0)

    def quiesce(self, timeout: float) -> bool:
        """Wait until every callback submitted so far has run; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._running, timeout)

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
