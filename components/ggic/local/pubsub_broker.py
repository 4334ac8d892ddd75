"""Local publish/subscribe: messages, subscriptions and the broker that matches them (no IPC)."""

from __future__ import annotations

import base64
import copy
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from .topics import is_wildcard_filter, topic_matches

log = logging.getLogger("ggic.local.ipc")

RECEIVE_ALL = "RECEIVE_ALL_MESSAGES"
RECEIVE_FROM_OTHERS = "RECEIVE_MESSAGES_FROM_OTHERS"
RECEIVE_MODES = (RECEIVE_ALL, RECEIVE_FROM_OTHERS)


@dataclass
class PubSubMessage:
    """One published message: a JSON value, or bytes (``binary``)."""

    topic: str
    source: str
    json_value: Any = None
    binary: bytes | None = None
    _event_payload: bytes | None = field(default=None, init=False, repr=False)

    def event_payload(self) -> bytes:
        """The SubscriptionResponseMessage JSON, encoded once however many subscribers get it."""
        if self._event_payload is None:
            context = {"topic": self.topic}
            if self.binary is not None:
                body = {
                    "message": base64.b64encode(self.binary).decode("ascii"),
                    "context": context,
                }
                event = {"binaryMessage": body}
            else:
                event = {"jsonMessage": {"message": self.json_value, "context": context}}
            self._event_payload = json.dumps(event).encode("utf-8")
        return self._event_payload

    def decoded(self) -> Any:
        """What a server-side subscriber gets: bytes, or a private copy of the JSON value."""
        return self.binary if self.binary is not None else copy.deepcopy(self.json_value)


@dataclass(eq=False)
class Subscription:
    topic_filter: str
    deliver: Callable[[PubSubMessage], None]
    owner: str | None = None
    """The subscribing component (None for server-side subscriptions)."""
    receive_mode: str = RECEIVE_ALL


def default_receive_mode(topic_filter: str) -> str:
    """The nucleus's default: wildcard filters skip the subscriber's own messages."""
    return RECEIVE_FROM_OTHERS if is_wildcard_filter(topic_filter) else RECEIVE_ALL


class PubSubBroker:
    """Thread-safe subscription table; deliveries run in the publisher's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []

    def add(self, subscription: Subscription) -> Callable[[], None]:
        with self._lock:
            self._subscriptions.append(subscription)
        log.debug("subscribed %s to %s", subscription.owner or "server", subscription.topic_filter)
        return lambda: self.remove(subscription)

    def remove(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
                log.debug(
                    "unsubscribed %s from %s",
                    subscription.owner or "server",
                    subscription.topic_filter,
                )

    def subscription_count(self) -> int:
        with self._lock:
            return len(self._subscriptions)

    def publish(self, message: PubSubMessage) -> int:
        """Deliver to every matching subscription; returns the number of deliveries."""
        with self._lock:
            targets = [
                sub
                for sub in self._subscriptions
                if topic_matches(sub.topic_filter, message.topic)
                and not (sub.receive_mode == RECEIVE_FROM_OTHERS and sub.owner == message.source)
            ]
        # components' subscriptions first: a server-side observer (a test's, ggic local's own
        # records) hands its copy to another thread, which must not delay a component's event
        targets.sort(key=lambda sub: sub.owner is None)
        for subscription in targets:
            try:
                subscription.deliver(message)
            except Exception:
                log.exception(
                    "delivering %s to %s failed", message.topic, subscription.topic_filter
                )
        return len(targets)
