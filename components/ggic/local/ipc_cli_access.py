"""Who may call the greengrass-cli IPC operations, as the CLI's CLIEventStreamAgent decides.

The CLI itself (``aws.greengrass.Cli``, and here every client registered with ``cli=True``)
may call them all. Any other component needs an ``aws.greengrass.Cli`` accessControl policy for
the operation, on the resource the CLI names: the component's name for GetComponentDetails,
RestartComponent and StopComponent, the deployment ID for GetLocalDeploymentStatus, and ``*``
for the rest (so the policy's resources must include ``*``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .control_api import PREFIX
from .ipc_types import OperationContext

log = logging.getLogger("ggic.local.ipc")

CLI_SERVICE = "aws.greengrass.Cli"
ANY_RESOURCE = "*"
#: operation -> the request field the CLI authorizes on (others: ANY_RESOURCE)
RESOURCE_FIELDS: Mapping[str, str] = {
    PREFIX + "GetComponentDetails": "componentName",
    PREFIX + "RestartComponent": "componentName",
    PREFIX + "StopComponent": "componentName",
    PREFIX + "GetLocalDeploymentStatus": "deploymentId",
}


def check_control_access(ctx: OperationContext, operation: str,
                         request: Mapping[str, Any] | None = None) -> None:
    """Raise UnauthorizedError unless the caller may call this greengrass-cli operation."""
    if ctx.nucleus.is_cli(ctx.component) or ctx.component == CLI_SERVICE:
        return
    field = RESOURCE_FIELDS.get(operation)
    resource = ANY_RESOURCE
    if field is not None:
        value = (request or {}).get(field)
        resource = value if isinstance(value, str) and value else ANY_RESOURCE
    ctx.authorize(CLI_SERVICE, operation, resource)
