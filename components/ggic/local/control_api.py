"""The runtime's side of the greengrass-cli IPC operations, as the IPC server calls it.

The IPC server knows only this interface; ``control.LocalControlHandler`` implements it over a
``LocalRuntime``. Methods run on a worker thread and may block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .ipc_errors import ServiceError

PREFIX = "aws.greengrass#"


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

    def cancel_local_deployment(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._unsupported("CancelLocalDeployment")

    def create_debug_password(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._unsupported("CreateDebugPassword")

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
    PREFIX + "CancelLocalDeployment": "cancel_local_deployment",
    PREFIX + "CreateDebugPassword": "create_debug_password",
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
