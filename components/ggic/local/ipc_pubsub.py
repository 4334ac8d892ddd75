"""Local publish/subscribe: the broker and the PublishToTopic / SubscribeToTopic handlers."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .authorization import PUBSUB_SERVICE
from .ipc_errors import InvalidArgumentsError
from .topics import (
    TopicError,
    is_wildcard_filter,
    topic_matches,
    validate_publish_topic,
    validate_topic_filter,
)

if TYPE_CHECKING:
    from .ipc_operations import OperationContext, OperationResult

log = logging.getLogger("ggic.local.ipc")

PUBLISH_TO_TOPIC = "aws.greengrass#PublishToTopic"
SUBSCRIBE_TO_TOPIC = "aws.greengrass#SubscribeToTopic"
SUBSCRIPTION_EVENT = "aws.greengrass#SubscriptionResponseMessage"
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

    @property
    def is_binary(self) -> bool:
        return self.binary is not None

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
        for subscription in targets:
            try:
                subscription.deliver(message)
            except Exception:
                log.exception(
                    "delivering %s to %s failed", message.topic, subscription.topic_filter
                )
        return len(targets)


# --- operation handlers -------------------------------------------------------------------------


def _message_from_request(request: Mapping[str, Any], topic: str, source: str) -> PubSubMessage:
    publish_message = request.get("publishMessage")
    if not isinstance(publish_message, Mapping):
        raise InvalidArgumentsError("publishMessage is required")
    members = [
        key for key in ("jsonMessage", "binaryMessage") if publish_message.get(key) is not None
    ]
    if len(members) != 1:
        raise InvalidArgumentsError(
            "publishMessage must set exactly one of jsonMessage, binaryMessage"
        )
    body = publish_message[members[0]]
    if not isinstance(body, Mapping):
        raise InvalidArgumentsError(f"{members[0]} must be an object")
    if members[0] == "binaryMessage":
        try:
            data = base64.b64decode(body.get("message") or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InvalidArgumentsError("binaryMessage.message is not valid base64") from None
        return PubSubMessage(topic, source, binary=data)
    value = body.get("message")
    if not isinstance(value, Mapping):
        # The nucleus deserialises jsonMessage.message into a Map; anything else fails there.
        raise InvalidArgumentsError("jsonMessage.message must be a JSON object")
    return PubSubMessage(topic, source, json_value=value)


def handle_publish_to_topic(ctx: OperationContext, request: Mapping[str, Any]) -> OperationResult:
    from .ipc_operations import OperationResult

    topic = request.get("topic")
    if not isinstance(topic, str) or not topic:
        raise InvalidArgumentsError("Publish topic must not be null")
    ctx.authorize(PUBSUB_SERVICE, PUBLISH_TO_TOPIC, topic)
    try:
        validate_publish_topic(topic)
    except TopicError as exc:
        raise InvalidArgumentsError(str(exc)) from None
    message = _message_from_request(request, topic, ctx.component)
    ctx.nucleus.broker.publish(message)
    return OperationResult({})


def handle_subscribe_to_topic(ctx: OperationContext, request: Mapping[str, Any]) -> OperationResult:
    from .ipc_operations import OperationResult

    topic_filter = request.get("topic")
    if not isinstance(topic_filter, str) or not topic_filter:
        raise InvalidArgumentsError("Subscribe topic must not be empty")
    ctx.authorize(PUBSUB_SERVICE, SUBSCRIBE_TO_TOPIC, topic_filter)
    try:
        validate_topic_filter(topic_filter)
    except TopicError as exc:
        raise InvalidArgumentsError(str(exc)) from None
    receive_mode = request.get("receiveMode") or default_receive_mode(topic_filter)
    if receive_mode not in RECEIVE_MODES:
        raise InvalidArgumentsError(f"receiveMode must be one of {', '.join(RECEIVE_MODES)}")
    stream = ctx.stream

    def deliver(message: PubSubMessage) -> None:
        stream.send_event(message.event_payload())

    subscription = Subscription(
        topic_filter, deliver, owner=ctx.component, receive_mode=receive_mode
    )

    def open_subscription() -> None:
        stream.on_close(ctx.nucleus.broker.add(subscription))

    return OperationResult({}, on_stream_open=open_subscription)
