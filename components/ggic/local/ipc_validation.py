"""SubscribeToValidateConfigurationUpdates / SendConfigurationValidityReport handlers (the
flow: config_validation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .ipc_types import OperationContext, OperationResult

VALIDATE_CONFIGURATION_EVENT = "aws.greengrass#ValidateConfigurationUpdateEvents"


def handle_subscribe_to_validate_configuration_updates(
    ctx: OperationContext, request: Mapping[str, Any]
) -> OperationResult:
    stream = ctx.stream

    def open_subscription() -> None:
        stream.on_close(ctx.nucleus.validation.subscribe(ctx.component, stream.send_json_event))

    return OperationResult({}, on_stream_open=open_subscription)


def handle_send_configuration_validity_report(
    ctx: OperationContext, request: Mapping[str, Any]
) -> OperationResult:
    ctx.nucleus.validation.report(ctx.component, request.get("configurationValidityReport"))
    return OperationResult({})
