"""Taking requests in: the request subscription on an IPC connection of its own, and the bound
on answers owed that holds its callback back.

The classifier reads requests on a second IPC connection (``IpcClient(network_thread_callbacks=
True)``) that carries nothing else, so its callback runs on that connection's network thread and
may block: when :class:`OwedAnswers` counts ``limit`` answers owed, :meth:`OwedAnswers.admit`
waits for one to be published, and while it waits the SDK reads nothing more from that socket.
A flood therefore stays in the kernel's and the server's buffers, never delivered, instead of
piling up in this process: memory is bounded by QueueSize + MAX_OWED answers (plus the
callbacks blocked at the moment a stop releases them). Answers, configuration, state and
deployment hooks stay on the main connection, whose network thread never waits for us.

Every callback invocation is counted ``received`` before anything else happens, and every one
is answered (ok, an error, BUSY or UNAVAILABLE), so ``received - answered`` is what is owed.

Stopping (:meth:`RequestIntake.stop`): the stream is closed (what the server sends after that is
never handed to the callback), the callback goes on answering what the SDK still hands it until
the close completes or the time given runs out; then the intake connection is closed (what it
never read is not delivered) and :meth:`OwedAnswers.release` lets a callback blocked at that
moment queue its answer.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable

from ..ipc import IpcClient, MessageHandler, Subscription

log = logging.getLogger(__name__)


class OwedAnswers:
    """How many requests were received, admitted and answered; :meth:`admit` holds the intake
    callback back while ``limit`` admitted requests wait for their answer."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.received = 0
        self.delivered = 0  # admitted past the bound
        self.answered = 0
        self._released = False

    @property
    def owed(self) -> int:
        """Received and not answered yet (the callbacks held back included)."""
        with self._cond:
            return self.received - self.answered

    def admit(self, limit: int) -> None:
        """One request received: wait while ``limit`` admitted ones are owed (unless
        :meth:`release` d), then admit it."""
        with self._cond:
            self.received += 1
            self._cond.wait_for(lambda: self.delivered - self.answered < limit
                                or self._released)
            self.delivered += 1

    def answered_one(self) -> None:
        with self._cond:
            self.answered += 1
            self._cond.notify_all()

    def release(self) -> None:
        """Stop holding callbacks back (stopping: every one still running is answered)."""
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every received request has been answered."""
        with self._cond:
            return self._cond.wait_for(lambda: self.received == self.answered, max(0.0, timeout))


class RequestIntake:
    """The request subscription on ``connection`` (``dedicated``: a connection of its own,
    closed by :meth:`stop`; else shared, e.g. a test double, and left open)."""

    def __init__(self, connection: IpcClient, *, dedicated: bool) -> None:
        self.connection = connection
        self.dedicated = dedicated
        self._subscription: Subscription | None = None

    def subscribe(self, topic: str, handler: MessageHandler,
                  on_closed: Callable[[], None]) -> None:
        """(Re)open the subscription; raises IpcError."""
        if self._subscription is not None:
            self._subscription.close()
        self._subscription = self.connection.subscribe(topic, handler, on_closed=on_closed)

    def stop(self, deadline: float, release: Callable[[], None]) -> bool:
        """Close the stream and wait (until the ``time.monotonic()`` ``deadline``) for the close
        to complete while the callback keeps answering; then close a dedicated connection and
        ``release()`` a callback still held back. True if the stream closed in time."""
        subscription, self._subscription = self._subscription, None
        closed: Future | None = subscription.begin_close() if subscription is not None else None
        in_time = True
        if closed is not None:
            wait = deadline - time.monotonic()
            try:
                closed.result(max(0.0, wait))
            except FutureTimeout:
                in_time = False
                if wait > 0:  # (no time given: the connection is gone, nothing to say)
                    log.warning("the request stream did not close in time; closing its "
                                "connection (requests it has not read are not delivered)")
            except Exception as exc:  # the connection may be gone already
                log.debug("closing the request stream: %s", exc)
        finished: Future | None = None
        if self.dedicated:
            finished = self.connection.begin_close()
        release()  # after the close began, so a released callback reads little further
        if finished is not None:
            try:
                finished.result(max(0.2, deadline - time.monotonic()))
            except Exception as exc:  # a timeout, or how the connection ended
                log.debug("closing the request connection: %s", exc)
        return in_time
