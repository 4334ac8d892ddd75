"""SubscribeToComponentUpdates / DeferComponentUpdate handlers (the flow: component_updates)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .ipc_errors import ResourceNotFoundError
from .ipc_types import OperationContext, OperationResult

COMPONENT_UPDATE_EVENT = "aws.greengrass#ComponentUpdatePolicyEvents"


def handle_subscribe_to_component_updates(
    ctx: OperationContext, request: Mapping[str, Any]
) -> OperationResult:
    if not ctx.nucleus.is_registered(ctx.component):
        raise ResourceNotFoundError(
            "Component with given name not found currently in Greengrass",
            resource_type="Component", resource_name=ctx.component)
    stream = ctx.stream

    def open_subscription() -> None:
        stream.on_close(ctx.nucleus.component_updates.subscribe(
            ctx.component, stream.send_json_event))

    return OperationResult({}, on_stream_open=open_subscription)


def handle_defer_component_update(
    ctx: OperationContext, request: Mapping[str, Any]
) -> OperationResult:
    ctx.nucleus.component_updates.defer(
        ctx.component, request.get("deploymentId"), request.get("recheckAfterMs"),
        request.get("message"))
    return OperationResult({})
