"""The types every IPC operation handler shares: its context, its result, the table entry."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .authorization import NotAuthorized, authorize
from .ipc_errors import UnauthorizedError
from .ipc_nucleus import LocalNucleus

log = logging.getLogger("ggic.local.ipc")


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
