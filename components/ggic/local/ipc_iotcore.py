"""SubscribeToIoTCore against the local stand-in broker (``iotcore_broker``).

As the nucleus's MqttProxyIPCAgent: the topic is required (``Topic is required``), the caller
needs an ``aws.greengrass.ipc.mqttproxy`` policy for ``aws.greengrass#SubscribeToIoTCore`` on
the filter (MQTT-style resource matching; the nucleus answers just ``Not Authorized``), the QoS
is required and must be ``0`` or ``1`` (``Invalid QoS value``), and a filter the broker refuses
is answered as the nucleus answers a failed SUBACK: ``ServiceError("Subscribe to topic T failed
with error TOPIC_FILTER_INVALID")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .authorization import MQTT_PROXY_SERVICE
from .iotcore_broker import (
    TOPIC_FILTER_INVALID,
    IotCoreMessage,
    IotCoreSubscription,
    TopicFilterError,
    check_mqtt_filter,
)
from .ipc_errors import InvalidArgumentsError, ServiceError, UnauthorizedError
from .ipc_types import OperationContext, OperationResult

SUBSCRIBE_TO_IOT_CORE = "aws.greengrass#SubscribeToIoTCore"
IOT_CORE_MESSAGE_EVENT = "aws.greengrass#IoTCoreMessage"
QOS_VALUES = ("0", "1")


def handle_subscribe_to_iot_core(
    ctx: OperationContext, request: Mapping[str, Any]
) -> OperationResult:
    topic_filter = request.get("topicName")
    if not isinstance(topic_filter, str):
        raise InvalidArgumentsError("Topic is required")
    try:
        ctx.authorize(MQTT_PROXY_SERVICE, SUBSCRIBE_TO_IOT_CORE, topic_filter)
    except UnauthorizedError:
        raise UnauthorizedError("Not Authorized") from None
    qos = request.get("qos")
    if qos is None:
        raise InvalidArgumentsError("QoS is required")
    if qos not in QOS_VALUES:
        raise InvalidArgumentsError("Invalid QoS value")
    try:
        check_mqtt_filter(topic_filter)
    except TopicFilterError:
        raise ServiceError(
            f"Subscribe to topic {topic_filter} failed with error {TOPIC_FILTER_INVALID}"
        ) from None
    stream = ctx.stream

    def deliver(message: IotCoreMessage) -> None:
        stream.send_event(message.event_payload())

    subscription = IotCoreSubscription(topic_filter, deliver, ctx.component)

    def open_subscription() -> None:
        stream.on_close(ctx.nucleus.iot_core.subscribe(subscription))

    return OperationResult({}, on_stream_open=open_subscription)
