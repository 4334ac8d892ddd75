"""The PublishToTopic / SubscribeToTopic operation handlers (the broker is pubsub_broker)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from .authorization import PUBSUB_SERVICE
from .ipc_errors import InvalidArgumentsError, ServiceError
from .ipc_types import OperationContext, OperationResult
from .pubsub_broker import (
    RECEIVE_MODES,
    PubSubMessage,
    Subscription,
    default_receive_mode,
)
from .topics import (
    NoTopicLevelError,
    TopicError,
    validate_publish_topic,
    validate_topic_filter,
)

PUBLISH_TO_TOPIC = "aws.greengrass#PublishToTopic"
SUBSCRIBE_TO_TOPIC = "aws.greengrass#SubscribeToTopic"
SUBSCRIPTION_EVENT = "aws.greengrass#SubscriptionResponseMessage"


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
    topic = request.get("topic")
    if not isinstance(topic, str) or not topic:
        raise InvalidArgumentsError("Publish topic must not be null")
    ctx.authorize(PUBSUB_SERVICE, PUBLISH_TO_TOPIC, topic)
    try:
        validate_publish_topic(topic)
    except NoTopicLevelError as exc:
        # the nucleus's SubscriptionTrie.get fails on a topic with no level: an internal error
        raise ServiceError(str(exc)) from None
    except TopicError as exc:
        raise InvalidArgumentsError(str(exc)) from None
    message = _message_from_request(request, topic, ctx.component)
    ctx.nucleus.broker.publish(message)
    return OperationResult({})


def handle_subscribe_to_topic(ctx: OperationContext, request: Mapping[str, Any]) -> OperationResult:
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
