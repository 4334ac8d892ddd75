"""PauseComponent / ResumeComponent operation handlers (the work is in ``component_pause``).

As the nucleus's LifecycleIPCEventStreamAgent: the component name is required (``Component
name is required.``), then the caller needs an ``aws.greengrass.ipc.lifecycle`` policy for the
operation on the target component's name, even to pause itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .ipc_errors import InvalidArgumentsError, ServiceError
from .ipc_types import OperationContext, OperationResult

LIFECYCLE_SERVICE = "aws.greengrass.ipc.lifecycle"
PAUSE_COMPONENT = "aws.greengrass#PauseComponent"
RESUME_COMPONENT = "aws.greengrass#ResumeComponent"


def _target(ctx: OperationContext, request: Mapping[str, Any], operation: str) -> str:
    name = request.get("componentName")
    if not isinstance(name, str) or not name:
        raise InvalidArgumentsError("Component name is required.")
    ctx.authorize(LIFECYCLE_SERVICE, operation, name)
    if ctx.nucleus.pauser is None:
        raise ServiceError("Pause/resume component not supported on this platform.")
    return name


def handle_pause_component(ctx: OperationContext, request: Mapping[str, Any]) -> OperationResult:
    name = _target(ctx, request, PAUSE_COMPONENT)
    ctx.nucleus.pauser.pause(name)
    return OperationResult({})


def handle_resume_component(ctx: OperationContext, request: Mapping[str, Any]) -> OperationResult:
    name = _target(ctx, request, RESUME_COMPONENT)
    ctx.nucleus.pauser.resume(name)
    return OperationResult({})
