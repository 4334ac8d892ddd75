"""Answering the requests that found the IPC callback queue full (see :mod:`ggic.ipc_callbacks`).

Such a request is answered BUSY at once, on the SDK's network thread, without being read:
its ``request_id`` is a dict lookup for a ``jsonMessage`` or a scan of the first
``SCAN_BYTES`` of a ``binaryMessage`` (else a generated id), its ``reply_to`` is honoured for a
``jsonMessage`` only. The answer goes through the outbox's refusal lane, which never waits but
is capped (:meth:`~.publisher.Outbox.offer_refusal`): when it is full too, answers cannot leave
as fast as requests arrive, and the request is dropped, counted and logged (rate-limited).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any, Callable

from ..config import ClassifierConfig
from ..messages import ClassificationResult, ErrorCode, new_request_id, request_id_of
from ..rate_limited_log import RateLimitedCounter
from .publisher import Outbox, Outgoing
from .topic_policy import topic_allowed

log = logging.getLogger(__name__)

OVERLOADED_MESSAGE = ("the classifier is overloaded (more requests arrived than it could take "
                      "in); retry later")
#: How much of a binary message is scanned for its request_id (never more).
SCAN_BYTES = 4096
_BINARY_REQUEST_ID = re.compile(rb'"request_id"\s*:\s*"([A-Za-z0-9._:@/+=-]{1,128})"')


def overflow_answer(payload: Any, config: ClassifierConfig, publish_policy: tuple[str, ...],
                    done: Callable[[], None] | None = None) -> Outgoing:
    """The BUSY answer to ``payload``, read no further than its id and reply_to."""
    rid: str | None = None
    reply_topic = config.result_topic
    if isinstance(payload, (bytes, bytearray, memoryview)):
        found = _BINARY_REQUEST_ID.search(bytes(payload[:SCAN_BYTES]))
        rid = found.group(1).decode("ascii") if found else None
    elif isinstance(payload, Mapping):
        rid = request_id_of(payload)
        reply_to = payload.get("reply_to")
        if isinstance(reply_to, str) and topic_allowed(reply_to, publish_policy):
            reply_topic = reply_to
    result = ClassificationResult.failure(rid or new_request_id(), ErrorCode.BUSY,
                                          OVERLOADED_MESSAGE)
    return Outgoing(reply_topic, result,
                    config.iot_core_topic if config.publish_to_iot_core else None, done)


class OverflowAnswers:
    """Answers overflowing requests; ``count_delivered(+1/-1)`` keeps the service's count of
    delivered (owed) requests, ``record_result`` its metrics. :attr:`owed` is how many of
    those owed answers are ours: the service's MAX_OWED gate leaves them out, or the refusal
    lane full of BUSY answers would hold back the requests it can classify."""

    def __init__(self, outbox: Outbox, count_delivered: Callable[[int], None],
                 record_result: Callable[[ClassificationResult], None]) -> None:
        self._outbox = outbox
        self._count_delivered = count_delivered
        self._record_result = record_result
        self.dropped = 0
        self.owed = 0
        self._lock = threading.Lock()
        self._answered_log = RateLimitedCounter(
            "answered %d request(s) BUSY in %.1f s without reading them: the IPC callback "
            "queue was full (the classifier is overloaded)%s", logger=log)
        self._dropped_log = RateLimitedCounter(
            "DROPPED %d request(s) unanswered in %.1f s: the IPC callback queue and the "
            "refusal lane were both full (answers could not leave as fast as requests "
            "arrived)%s", logger=log)

    def take(self, payload: Any, config: ClassifierConfig,
             publish_policy: tuple[str, ...]) -> None:
        """Never blocks (the SDK's network thread)."""
        item = overflow_answer(payload, config, publish_policy, self._one_done)
        with self._lock:
            self.owed += 1
        self._count_delivered(1)  # owed before it can be answered
        if self._outbox.offer_refusal(item):
            self._record_result(item.result)
            self._answered_log.note()
            return
        with self._lock:
            self.owed -= 1
        self._count_delivered(-1)
        self.dropped += 1
        self._dropped_log.note()

    def _one_done(self) -> None:
        with self._lock:
            self.owed -= 1

    def flush(self) -> None:
        for counter in (self._answered_log, self._dropped_log):
            counter.flush()
