"""ValidateAuthorizationToken, as the nucleus's AuthorizationIPCAgent answers it.

Only the stream manager (``aws.greengrass.StreamManager``) may call it; anyone else gets
``UnauthorizedError("<caller> is not authorized to perform
aws.greengrass#ValidateAuthorizationToken")`` (one line).
A token the runtime issued answers ``isValid: true``; any other is ``InvalidTokenError``
(``Authentication token not found``, or ``Invalid authentication token`` when missing), as the
nucleus's AuthenticationHandler.doAuthentication says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .ipc_errors import InvalidTokenError, UnauthorizedError
from .ipc_types import OperationContext, OperationResult

VALIDATE_AUTHORIZATION_TOKEN = "aws.greengrass#ValidateAuthorizationToken"
STREAM_MANAGER = "aws.greengrass.StreamManager"


def handle_validate_authorization_token(
    ctx: OperationContext, request: Mapping[str, Any]
) -> OperationResult:
    if ctx.component != STREAM_MANAGER:
        raise UnauthorizedError(
            f"{ctx.component} is not authorized to perform {VALIDATE_AUTHORIZATION_TOKEN}"
        )
    token = request.get("token")
    if not isinstance(token, str):
        raise InvalidTokenError("Invalid authentication token")
    if ctx.nucleus.authenticate(token) is None:
        raise InvalidTokenError("Authentication token not found")
    return OperationResult({"isValid": True})
