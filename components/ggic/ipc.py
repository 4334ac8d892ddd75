"""A thin facade over Greengrass IPC (``GreengrassCoreIPCClientV2``) in JSON terms.

The components talk to IPC only through :class:`IpcClient`, so unit tests can hand them a
double and integration tests the real client over a real socket.

Callbacks given to :meth:`IpcClient.subscribe` and :meth:`IpcClient.subscribe_configuration`
run on the SDK's executor threads. They must not block and must not make IPC calls (a
synchronous IPC call from a callback can deadlock the client): hand the work to a queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Callable

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, Any], None]
"""``handler(topic, payload)``: payload is the decoded JSON value, or bytes for a binary message."""


class IpcError(RuntimeError):
    """An IPC call failed; ``kind`` is the Greengrass error shape (e.g. UnauthorizedError)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def _wrap_ipc_error(exc: BaseException) -> IpcError:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return IpcError(type(exc).__name__, str(message))


class Subscription:
    """An open IPC stream; :meth:`close` ends it (the server stops sending)."""

    def __init__(self, operation: Any, description: str) -> None:
        self._operation = operation
        self.description = description

    def close(self) -> None:
        operation, self._operation = self._operation, None
        if operation is None:
            return
        try:
            operation.close().result(5)
        except Exception as exc:  # the connection may already be gone
            log.debug("closing %s: %s", self.description, exc)


class IpcClient:
    """JSON publish/subscribe, configuration and state over Greengrass IPC."""

    def __init__(self, client: Any = None) -> None:
        if client is None:
            from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

            client = GreengrassCoreIPCClientV2()
        self._client = client

    # --- pub/sub -----------------------------------------------------------------------------

    def publish(self, topic: str, message: Any) -> None:
        """Publish a JSON value (``jsonMessage``) on a local topic."""
        from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

        try:
            message_shape = PublishMessage(json_message=JsonMessage(message=message))
            self._client.publish_to_topic(topic=topic, publish_message=message_shape)
        except Exception as exc:
            raise _wrap_ipc_error(exc) from exc

    def subscribe(
        self,
        topic: str,
        handler: MessageHandler,
        on_error: Callable[[Exception], None] | None = None,
    ) -> Subscription:
        """Subscribe to a local topic (MQTT wildcards allowed); JSON and binary messages."""

        def on_event(event: Any) -> None:
            if event.json_message is not None:
                context = event.json_message.context
                handler(context.topic if context else topic, event.json_message.message)
            elif event.binary_message is not None:
                context = event.binary_message.context
                handler(context.topic if context else topic, bytes(event.binary_message.message))

        def on_stream_error(exc: Exception) -> bool:
            log.error("subscription to %s failed: %s", topic, exc)
            if on_error is not None:
                on_error(exc)
            return True  # close the stream

        try:
            _response, operation = self._client.subscribe_to_topic(
                topic=topic, on_stream_event=on_event, on_stream_error=on_stream_error
            )
        except Exception as exc:
            raise _wrap_ipc_error(exc) from exc
        return Subscription(operation, f"subscription to {topic}")

    def publish_to_iot_core(self, topic: str, message: Any, qos: str = "1") -> None:
        try:
            self._client.publish_to_iot_core(
                topic_name=topic, qos=qos, payload=json.dumps(message).encode("utf-8")
            )
        except Exception as exc:
            raise _wrap_ipc_error(exc) from exc

    # --- configuration -----------------------------------------------------------------------

    def get_configuration(self, key_path: Sequence[str] = (),
                          component: str | None = None) -> Any:
        try:
            response = self._client.get_configuration(
                component_name=component, key_path=list(key_path)
            )
        except Exception as exc:
            raise _wrap_ipc_error(exc) from exc
        value = response.value
        return dict(value) if isinstance(value, Mapping) else value

    def subscribe_configuration(
        self, on_update: Callable[[Sequence[str]], None], key_path: Sequence[str] = ()
    ) -> Subscription:
        """``on_update(key_path)`` for each change of this component's configuration."""

        def on_event(event: Any) -> None:
            update = event.configuration_update_event
            if update is not None:
                on_update(list(update.key_path or []))

        try:
            _response, operation = self._client.subscribe_to_configuration_update(
                key_path=list(key_path), on_stream_event=on_event,
                on_stream_error=lambda exc: log.error("configuration stream: %s", exc) or True,
            )
        except Exception as exc:
            raise _wrap_ipc_error(exc) from exc
        return Subscription(operation, "configuration updates")

    # --- lifecycle ---------------------------------------------------------------------------

    def update_state(self, state: str) -> None:
        """Report RUNNING or ERRORED to the nucleus."""
        try:
            self._client.update_state(state=state)
        except Exception as exc:
            raise _wrap_ipc_error(exc) from exc

    def close(self) -> None:
        try:
            self._client.close()
        except Exception as exc:
            log.debug("closing the IPC client: %s", exc)


def connect_error_hint() -> str:
    """Why connecting may have failed, for the error message."""
    import os

    missing = [name for name in ("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", "SVCUID")
               if not os.environ.get(name)]
    if missing:
        return (f"{' and '.join(missing)} not set: this command runs as a Greengrass component "
                "(deploy it, or run it under `ggic local`); `ggic classify` works without IPC")
    return "is the nucleus (or `ggic local`) running, and is this component's token valid?"
