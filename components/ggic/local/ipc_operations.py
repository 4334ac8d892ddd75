"""The IPC operations the local runtime answers, and how each is dispatched.

An operation handler takes an :class:`OperationContext` and the request (decoded JSON) and
returns an :class:`OperationResult`, or raises an :mod:`ipc_errors` error. Handlers run on the
server's event loop, so they must be quick; the greengrass-cli operations are delegated to a
:class:`ControlHandler` and run on a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .authorization import MQTT_PROXY_SERVICE, NotAuthorized, authorize
from .ipc_config import (
    CONFIGURATION_EVENT,
    handle_get_configuration,
    handle_subscribe_to_configuration_update,
    handle_update_configuration,
)
from .ipc_errors import InvalidArgumentsError, ServiceError, UnauthorizedError
from .ipc_pubsub import SUBSCRIPTION_EVENT, handle_publish_to_topic, handle_subscribe_to_topic

if TYPE_CHECKING:
    from .ipc_nucleus import LocalNucleus

log = logging.getLogger("ggic.local.ipc")

PREFIX = "aws.greengrass#"
REPORTED_STATES = ("RUNNING", "ERRORED")
QOS_VALUES = {"0": 0, "1": 1}


class OperationStream(Protocol):
    """The server side of one operation's stream, as handlers see it (thread-safe)."""

    def send_event(self, payload: bytes) -> None: ...

    def send_json_event(self, event: Mapping[str, Any]) -> None: ...

    def on_close(self, callback: Callable[[], None]) -> None: ...


@dataclass
class OperationContext:
    component: str
    """The caller, identified by its auth token."""
    nucleus: LocalNucleus
    stream: OperationStream

    def authorize(self, service: str, operation: str, resource: str) -> None:
        """Raise UnauthorizedError (and log the missing policy) unless a policy allows it."""
        try:
            authorize(self.nucleus.access_control(self.component), service, operation, resource)
        except NotAuthorized as exc:
            log.warning("%s", exc.hint)
            raise UnauthorizedError(exc.message) from None


@dataclass
class OperationResult:
    response: Mapping[str, Any]
    on_stream_open: Callable[[], None] | None = None
    """For streaming operations: called right after the response is sent (start events)."""


Handler = Callable[[OperationContext, Mapping[str, Any]], OperationResult]


@dataclass(frozen=True)
class Operation:
    name: str
    handler: Handler | None = None
    """None: delegated to the control handler."""
    event_type: str | None = None
    """Model type of the stream events; None for request/response operations."""

    @property
    def response_type(self) -> str:
        return self.name + "Response"

    @property
    def delegated(self) -> bool:
        return self.handler is None


# --- the control (greengrass-cli) operations ----------------------------------------------------


class ControlHandler:
    """The runtime's side of the greengrass-cli IPC operations.

    Each method takes the request as a dict (the operation's JSON shape, e.g.
    ``{"componentName": "com.custom.requester"}``) and returns the response dict, or raises an
    :mod:`ipc_errors` error (ResourceNotFoundError, InvalidArgumentsError, ...). Methods run on
    a worker thread and may block. The defaults answer ServiceError.
    """

    def _unsupported(self, operation: str) -> dict[str, Any]:
        raise ServiceError(f"operation {PREFIX}{operation} is not supported by this runtime")

    def create_local_deployment(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._unsupported("CreateLocalDeployment")

    def get_local_deployment_status(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._unsupported("GetLocalDeploymentStatus")

    def list_local_deployments(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._unsupported("ListLocalDeployments")

    def list_components(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._unsupported("ListComponents")

    def get_component_details(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._unsupported("GetComponentDetails")

    def restart_component(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._unsupported("RestartComponent")

    def stop_component(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._unsupported("StopComponent")


CONTROL_METHODS: Mapping[str, str] = {
    PREFIX + "CreateLocalDeployment": "create_local_deployment",
    PREFIX + "GetLocalDeploymentStatus": "get_local_deployment_status",
    PREFIX + "ListLocalDeployments": "list_local_deployments",
    PREFIX + "ListComponents": "list_components",
    PREFIX + "GetComponentDetails": "get_component_details",
    PREFIX + "RestartComponent": "restart_component",
    PREFIX + "StopComponent": "stop_component",
}


def run_control_operation(
    control_handler: ControlHandler | None, operation: str, request: dict[str, Any]
) -> Mapping[str, Any]:
    """Call the control handler's method for ``operation`` (on a worker thread)."""
    if control_handler is None:
        raise ServiceError(f"operation {operation} needs a control handler; this server has none")
    method = getattr(control_handler, CONTROL_METHODS[operation], None)
    if method is None:
        raise ServiceError(f"the control handler does not implement {operation}")
    response = method(request)
    if not isinstance(response, Mapping):
        raise ServiceError(
            f"the control handler returned {type(response).__name__} for {operation}"
        )
    return response


def check_control_access(ctx: OperationContext, operation: str) -> None:
    if not ctx.nucleus.is_cli(ctx.component):
        message = (
            f"Principal {ctx.component} is not authorized to perform aws.greengrass.Cli:{operation}"
        )
        log.warning(
            "%s is not authorized to perform %s: only components registered as a CLI "
            "(register_component(..., cli=True)) may use the local deployment operations",
            ctx.component,
            operation,
        )
        raise UnauthorizedError(message)


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
        *(Operation(name) for name in CONTROL_METHODS),
    )
}


def not_implemented(operation: str) -> ServiceError:
    return ServiceError(f"operation {operation} is not implemented by the ggic local runtime")
