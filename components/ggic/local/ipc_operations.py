"""The IPC operations the local runtime answers: the dispatch table and the small handlers.

An operation handler takes an :class:`~ipc_types.OperationContext` and the request (decoded
JSON) and returns an :class:`~ipc_types.OperationResult`, or raises an :mod:`ipc_errors` error.
Handlers run on the server's event loop, so they must be quick; the greengrass-cli operations
are delegated to a :class:`~control_api.ControlHandler` and run on a worker thread.
Imports go one way: this table -> handler modules -> ipc_types -> ipc_nucleus.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Any

from .authorization import MQTT_PROXY_SERVICE
from .control_api import CONTROL_METHODS, PREFIX
from .ipc_auth_token import handle_validate_authorization_token
from .ipc_component_updates import (
    COMPONENT_UPDATE_EVENT,
    handle_defer_component_update,
    handle_subscribe_to_component_updates,
)
from .ipc_config import (
    CONFIGURATION_EVENT,
    handle_get_configuration,
    handle_subscribe_to_configuration_update,
    handle_update_configuration,
)
from .ipc_errors import InvalidArgumentsError, ServiceError
from .ipc_iotcore import IOT_CORE_MESSAGE_EVENT, handle_subscribe_to_iot_core
from .ipc_metrics import handle_put_component_metric
from .ipc_pause import handle_pause_component, handle_resume_component
from .ipc_pubsub import SUBSCRIPTION_EVENT, handle_publish_to_topic, handle_subscribe_to_topic
from .ipc_types import Operation, OperationContext, OperationResult
from .ipc_validation import (
    VALIDATE_CONFIGURATION_EVENT,
    handle_send_configuration_validity_report,
    handle_subscribe_to_validate_configuration_updates,
)

log = logging.getLogger("ggic.local.ipc")

REPORTED_STATES = ("RUNNING", "ERRORED")
QOS_VALUES = {"0": 0, "1": 1}


CLI_SERVICE = "aws.greengrass.Cli"
#: The request field each greengrass-cli operation is authorized on; the others on "*".
CONTROL_RESOURCE_FIELDS: Mapping[str, str] = {
    PREFIX + "GetComponentDetails": "componentName",
    PREFIX + "RestartComponent": "componentName",
    PREFIX + "StopComponent": "componentName",
    PREFIX + "GetLocalDeploymentStatus": "deploymentId",
}


def check_control_access(
    ctx: OperationContext, operation: str, request: Mapping[str, Any]
) -> None:
    """As the greengrass-cli's CLIEventStreamAgent.authorizeRequest: the CLI itself may call
    everything; any other component needs an ``aws.greengrass.Cli`` policy for the operation on
    the component name, the deployment id or ``*``. A request without that field is let through
    to be refused by its validation (the CLI validates before it authorizes)."""
    if ctx.nucleus.is_cli(ctx.component):
        return
    field = CONTROL_RESOURCE_FIELDS.get(operation)
    resource = request.get(field) if field else "*"
    if not isinstance(resource, str) or not resource:
        return
    ctx.authorize(CLI_SERVICE, operation, resource)


# --- small handlers ----------------------------------------------------------------------------


def handle_update_state(ctx: OperationContext, request: Mapping[str, Any]) -> OperationResult:
    state = request.get("state")
    if state not in REPORTED_STATES:
        raise InvalidArgumentsError(
            f"state must be one of {', '.join(REPORTED_STATES)}, got {state!r}"
        )
    ctx.nucleus.record_state(ctx.component, state)
    return OperationResult({})


def handle_publish_to_iot_core(
    ctx: OperationContext, request: Mapping[str, Any]
) -> OperationResult:
    topic = request.get("topicName")
    if not isinstance(topic, str) or not topic:
        raise InvalidArgumentsError("topicName is required")
    ctx.authorize(MQTT_PROXY_SERVICE, PREFIX + "PublishToIoTCore", topic)
    if "+" in topic or "#" in topic:
        raise InvalidArgumentsError("topicName must not contain MQTT wildcards")
    qos = request.get("qos")
    if qos not in QOS_VALUES:
        raise InvalidArgumentsError(f"qos must be '0' or '1', got {qos!r}")
    try:
        payload = base64.b64decode(request.get("payload") or "", validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise InvalidArgumentsError("payload is not valid base64") from None
    record = {
        "topic": topic,
        "payload": payload,
        "qos": QOS_VALUES[qos],
        "retain": bool(request.get("retain", False)),
        "component": ctx.component,
    }
    for key in ("userProperties", "contentType", "payloadFormat", "messageExpiryIntervalSeconds"):
        if request.get(key) is not None:
            record[key] = request[key]
    ctx.nucleus.record_iot_core_publish(record)
    return OperationResult({})


OPERATIONS: Mapping[str, Operation] = {
    op.name: op
    for op in (
        Operation(PREFIX + "PublishToTopic", handle_publish_to_topic),
        Operation(PREFIX + "SubscribeToTopic", handle_subscribe_to_topic, SUBSCRIPTION_EVENT),
        Operation(PREFIX + "GetConfiguration", handle_get_configuration),
        Operation(PREFIX + "UpdateConfiguration", handle_update_configuration),
        Operation(
            PREFIX + "SubscribeToConfigurationUpdate",
            handle_subscribe_to_configuration_update,
            CONFIGURATION_EVENT,
        ),
        Operation(PREFIX + "UpdateState", handle_update_state),
        Operation(PREFIX + "PublishToIoTCore", handle_publish_to_iot_core),
        Operation(PREFIX + "SubscribeToIoTCore", handle_subscribe_to_iot_core,
                  IOT_CORE_MESSAGE_EVENT),
        Operation(PREFIX + "SubscribeToComponentUpdates", handle_subscribe_to_component_updates,
                  COMPONENT_UPDATE_EVENT),
        Operation(PREFIX + "DeferComponentUpdate", handle_defer_component_update),
        Operation(PREFIX + "PauseComponent", handle_pause_component),
        Operation(PREFIX + "ResumeComponent", handle_resume_component),
        Operation(PREFIX + "PutComponentMetric", handle_put_component_metric),
        Operation(PREFIX + "ValidateAuthorizationToken", handle_validate_authorization_token),
        Operation(PREFIX + "SubscribeToValidateConfigurationUpdates",
                  handle_subscribe_to_validate_configuration_updates,
                  VALIDATE_CONFIGURATION_EVENT),
        Operation(PREFIX + "SendConfigurationValidityReport",
                  handle_send_configuration_validity_report),
        *(Operation(name) for name in CONTROL_METHODS),
    )
}


def not_implemented(operation: str) -> ServiceError:
    return ServiceError(f"operation {operation} is not implemented by the ggic local runtime")
