"""A local stand-in for AWS IoT Core's MQTT broker (the cloud side of the MQTT proxy).

What components publish with PublishToIoTCore goes here, and so does what ``ggic local iotcore
pub`` publishes "from the cloud"; every SubscribeToIoTCore subscription whose filter matches
receives it. Matching follows MQTT 3.1.1 / 5 (section 4.7), as AWS IoT Core's broker does, not
the nucleus's local pub/sub trie: ``a/#`` also matches ``a``, and a filter starting with a
wildcard does not match a topic starting with ``$``. A publisher that is itself subscribed gets
its own message back, as from AWS IoT Core (the nucleus shares one MQTT connection among all
components). Thread-safe; deliveries run in the publisher's thread.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("ggic.local.ipc")

#: MQTT5 SUBACK reason code name the cloud broker answers an invalid filter with.
TOPIC_FILTER_INVALID = "TOPIC_FILTER_INVALID"
#: The MQTTMessage fields carried through as the publisher gave them.
PASSED_THROUGH = ("userProperties", "contentType", "payloadFormat",
                  "messageExpiryIntervalSeconds", "responseTopic", "correlationData")


class TopicFilterError(ValueError):
    """A filter the broker refuses (the nucleus answers the SUBACK's failure)."""


def check_mqtt_filter(topic_filter: str) -> None:
    """MQTT section 4.7.1: ``#`` only as a whole last level, ``+`` only as a whole level."""
    if not topic_filter:
        raise TopicFilterError("the topic filter is empty")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise TopicFilterError(f"'#' must be a whole last level: {topic_filter!r}")
        if "+" in level and level != "+":
            raise TopicFilterError(f"'+' must be a whole level: {topic_filter!r}")


def mqtt_matches(topic_filter: str, topic: str) -> bool:
    """Does ``topic`` match ``topic_filter`` under MQTT's rules (``a/#`` matches ``a``)?"""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


@dataclass
class IotCoreMessage:
    topic: str
    payload: bytes
    source: str
    """The publishing component (or ``ggic.local`` for the CLI's "cloud" messages)."""
    qos: int = 0
    retain: bool = False
    properties: Mapping[str, Any] = field(default_factory=dict)
    """MQTT5 properties as the model's JSON (PASSED_THROUGH keys)."""
    _event: bytes | None = field(default=None, init=False, repr=False)

    def event_payload(self) -> bytes:
        """The ``IoTCoreMessage`` stream event (the model's JSON), encoded once."""
        if self._event is None:
            message: dict[str, Any] = {
                "topicName": self.topic,
                "payload": base64.b64encode(self.payload).decode("ascii"),
                "retain": self.retain,
            }
            message.update({k: v for k, v in self.properties.items() if k in PASSED_THROUGH})
            self._event = json.dumps({"message": message}).encode("utf-8")
        return self._event


@dataclass(eq=False)
class IotCoreSubscription:
    topic_filter: str
    deliver: Callable[[IotCoreMessage], None]
    owner: str


class IotCoreBroker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: list[IotCoreSubscription] = []

    def subscribe(self, subscription: IotCoreSubscription) -> Callable[[], None]:
        """Add a subscription (its filter checked first); returns the unsubscribe function."""
        try:
            check_mqtt_filter(subscription.topic_filter)
        except TopicFilterError as exc:
            raise TopicFilterError(str(exc)) from None
        with self._lock:
            self._subscriptions.append(subscription)
        log.debug("%s subscribed to AWS IoT Core topic %s", subscription.owner,
                  subscription.topic_filter)
        return lambda: self._remove(subscription)

    def _remove(self, subscription: IotCoreSubscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def subscription_count(self) -> int:
        with self._lock:
            return len(self._subscriptions)

    def publish(self, message: IotCoreMessage) -> int:
        """Deliver to every matching subscription; returns the number of deliveries."""
        with self._lock:
            targets = [s for s in self._subscriptions
                       if mqtt_matches(s.topic_filter, message.topic)]
        for subscription in targets:
            try:
                subscription.deliver(message)
            except Exception:
                log.exception("delivering AWS IoT Core topic %s to %s failed", message.topic,
                              subscription.owner)
        return len(targets)
