"""Typed IPC errors: each becomes an APPLICATION_ERROR whose ``service-model-type`` names the
Greengrass error shape, so the real client raises the class of the same name."""

from __future__ import annotations

from typing import Any


class IpcError(Exception):
    """Base: raise a subclass from an operation handler (or a control handler)."""

    model_type = "aws.greengrass#ServiceError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def payload(self) -> dict[str, Any]:
        return {"message": self.message}


class ServiceError(IpcError):
    model_type = "aws.greengrass#ServiceError"


class UnauthorizedError(IpcError):
    model_type = "aws.greengrass#UnauthorizedError"


class InvalidArgumentsError(IpcError):
    model_type = "aws.greengrass#InvalidArgumentsError"


class ResourceNotFoundError(IpcError):
    model_type = "aws.greengrass#ResourceNotFoundError"

    def __init__(
        self, message: str, *, resource_type: str | None = None, resource_name: str | None = None
    ) -> None:
        super().__init__(message)
        self.resource_type = resource_type
        self.resource_name = resource_name

    def payload(self) -> dict[str, Any]:
        body = super().payload()
        if self.resource_type is not None:
            body["resourceType"] = self.resource_type
        if self.resource_name is not None:
            body["resourceName"] = self.resource_name
        return body


class ComponentNotFoundError(IpcError):
    model_type = "aws.greengrass#ComponentNotFoundError"


class ConflictError(IpcError):
    model_type = "aws.greengrass#ConflictError"


class FailedUpdateConditionCheckError(IpcError):
    model_type = "aws.greengrass#FailedUpdateConditionCheckError"


class InvalidRecipeDirectoryPathError(IpcError):
    model_type = "aws.greengrass#InvalidRecipeDirectoryPathError"


class InvalidArtifactsDirectoryPathError(IpcError):
    model_type = "aws.greengrass#InvalidArtifactsDirectoryPathError"


class InvalidTokenError(IpcError):
    model_type = "aws.greengrass#InvalidTokenError"
