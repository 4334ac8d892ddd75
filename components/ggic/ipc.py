"""A thin facade over Greengrass IPC (``GreengrassCoreIPCClientV2``) in JSON terms.

The components talk to IPC only through :class:`IpcClient`, so unit tests can hand them a
double and integration tests the real client over a real socket.

Each connection (``awsiot.greengrasscoreipc.connect``) has its own awscrt event loop: one
network thread that reads and writes its socket. The SDK client runs with ``executor=None``,
so stream callbacks are called on that thread, and :class:`IpcClient` decides where they run:

* by default (``IpcClient()``) on one callback thread (:class:`~ggic.ipc_callbacks.
  CallbackRunner`), in arrival order. They must not block for long and must not make IPC calls
  (a synchronous IPC call from a callback can deadlock the client): hand the work to a queue.
  The network thread never waits for them, because it also carries this connection's
  outgoing publishes and their acknowledgements.
* with ``IpcClient(network_thread_callbacks=True)`` on the network thread itself, for a
  connection that carries nothing but a subscription (the classifier's requests). There a
  callback MAY block: while it does, the SDK reads nothing more from that socket, so what is
  not read yet stays in the kernel's and the server's buffers, undelivered. That is the
  backpressure a flood needs; answers leave on the other connection, whose thread never waits.
* ``subscribe(..., on_network_thread=True)``: that one subscription's callback on the network
  thread, whatever the client's default, for a callback that never blocks and never makes an
  IPC call (the stream requester's results): it saves the hand-off to the callback thread, a
  thread wake per message, on the path of every round trip. It must not block: while it runs,
  that connection's publishes and their acknowledgements wait.

Failures are :class:`IpcError` with a :class:`IpcErrorKind` and ``is_retryable()``, as the
SDK's own errors have: server errors (``ServiceError``) and timeouts may succeed if tried
again, client errors (``UnauthorizedError``, ``InvalidArgumentsError``...) never will, and
``CONNECTION_LOST`` means this process has no IPC any more (on that connection).
"""

from __future__ import annotations

import enum
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

from .ipc_callbacks import CallbackRunner

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, Any], None]
"""``handler(topic, payload)``: payload is the decoded JSON value, or bytes for a binary message."""


class IpcErrorKind(enum.Enum):
    UNAUTHORIZED = "UnauthorizedError"
    INVALID_ARGUMENTS = "InvalidArgumentsError"
    RESOURCE_NOT_FOUND = "ResourceNotFoundError"
    CONFLICT = "ConflictError"
    SERVICE = "ServiceError"
    OTHER_CLIENT_ERROR = "other client error"
    OTHER_SERVER_ERROR = "other server error"
    TIMEOUT = "timeout"
    STREAM_CLOSED = "stream closed"
    CONNECTION_LOST = "connection lost"
    MALFORMED = "malformed message"
    UNKNOWN = "unknown"


_RETRYABLE = frozenset({IpcErrorKind.SERVICE, IpcErrorKind.OTHER_SERVER_ERROR,
                        IpcErrorKind.TIMEOUT})


class IpcError(RuntimeError):
    """An IPC call failed: ``kind`` says how (the Greengrass error shape, or what went wrong
    around it); :meth:`is_retryable` whether the same call may succeed later."""

    def __init__(self, kind: IpcErrorKind, message: str) -> None:
        super().__init__(f"{kind.value}: {message}")
        self.kind = kind
        self.message = message

    def is_retryable(self) -> bool:
        return self.kind in _RETRYABLE

    @property
    def connection_lost(self) -> bool:
        return self.kind is IpcErrorKind.CONNECTION_LOST


_SHAPE_KINDS = {kind.value: kind for kind in IpcErrorKind}
_MALFORMED_ERRORS = ("DeserializeError", "SerializeError", "UnmappedDataError")


def ipc_error_of(exc: BaseException) -> IpcError:
    """The :class:`IpcError` for an exception the SDK raised (or set on a future)."""
    if isinstance(exc, IpcError):
        return exc
    name = type(exc).__name__
    message = str(getattr(exc, "message", None) or exc or name)
    if name in _SHAPE_KINDS:
        return IpcError(_SHAPE_KINDS[name], message)
    if callable(getattr(exc, "is_server_error", None)):  # another GreengrassCoreIPCError
        kind = (IpcErrorKind.OTHER_SERVER_ERROR if exc.is_server_error()  # type: ignore[attr-defined]
                else IpcErrorKind.OTHER_CLIENT_ERROR)
        return IpcError(kind, f"{name}: {message}")
    if isinstance(exc, (FutureTimeout, TimeoutError)):
        return IpcError(IpcErrorKind.TIMEOUT, message)
    if name == "StreamClosedError":
        return IpcError(IpcErrorKind.STREAM_CLOSED, message)
    crt_name = str(getattr(exc, "name", ""))
    if name in ("ConnectionClosedError", "AccessDeniedError") or "CLOSED" in crt_name \
            or "SOCKET" in crt_name or "CONNECT" in crt_name:
        return IpcError(IpcErrorKind.CONNECTION_LOST, f"{name}: {message}")
    if name in _MALFORMED_ERRORS:
        return IpcError(IpcErrorKind.MALFORMED, f"{name}: {message}")
    return IpcError(IpcErrorKind.UNKNOWN, f"{name}: {message}")


def _failed(error: IpcError) -> Future:
    future: Future = Future()
    future.set_exception(error)
    return future


class Subscription:
    """An open IPC stream; :meth:`close` ends it (the server stops sending). ``on_closed``
    (given to the subscribe call) runs only when the stream ends without :meth:`close`."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._operation: Any = None
        self._closed_by_us = False

    @property
    def closed_by_us(self) -> bool:
        return self._closed_by_us

    def close(self, timeout: float = 5.0) -> None:
        try:
            self.begin_close().result(timeout)
        except Exception as exc:  # the connection may already be gone
            log.debug("closing %s: %s", self.description, exc)

    def begin_close(self) -> Future:
        """Ask the server to end the stream without waiting; the future ends when the SDK has
        closed it (events that arrive for it after that are never handed to the callback)."""
        self._closed_by_us = True
        operation, self._operation = self._operation, None
        if operation is None:
            done: Future = Future()
            done.set_result(None)
            return done
        try:
            return operation.close()
        except Exception as exc:  # the connection may already be gone
            return _failed(ipc_error_of(exc))


class _Lifecycle:
    """The SDK's connection lifecycle handler: tells :class:`IpcClient` when the connection
    ends (runs on the network thread)."""

    def __init__(self) -> None:
        self.on_lost: Callable[[str], None] = lambda _reason: None

    def on_connect(self) -> None:
        pass

    def on_disconnect(self, reason: BaseException | None) -> None:
        if reason is not None:
            self.on_lost(str(reason))

    def on_error(self, error: Exception) -> bool:
        log.error("IPC connection error: %s", error)
        return True

    def on_ping(self, headers: Any, payload: bytes) -> None:
        pass


class IpcClient:
    """JSON publish/subscribe, configuration and state over Greengrass IPC."""

    def __init__(self, client: Any = None, callbacks: CallbackRunner | None = None, *,
                 network_thread_callbacks: bool = False) -> None:
        """``client``: an SDK client made with ``executor=None`` (default: a new connection to
        the nucleus); ``callbacks``: the runner its subscription callbacks are handed to
        (default with the default client: a new one, unless ``network_thread_callbacks``; with
        a given client: none, they run on the SDK's network thread)."""
        self._runner: CallbackRunner | None = callbacks
        self._lifecycle = _Lifecycle()
        self._lost_lock = threading.Lock()
        self._lost_callbacks: list[Callable[[str], None]] = []
        self.lost_reason: str | None = None
        self._closing = False
        self._lifecycle.on_lost = self._connection_lost
        if client is None:
            import awsiot.greengrasscoreipc
            from awsiot.eventstreamrpc import LifecycleHandler
            from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

            handler = type("GgicLifecycle", (LifecycleHandler,), {
                "on_disconnect": lambda _s, reason: self._lifecycle.on_disconnect(reason),
                "on_error": lambda _s, error: self._lifecycle.on_error(error),
            })()
            connection = awsiot.greengrasscoreipc.connect(lifecycle_handler=handler)
            if not network_thread_callbacks:
                self._runner = callbacks or CallbackRunner()
            # executor=None: the SDK calls our stream callbacks on its network thread and
            # _subscribe_stream hands them to the runner (if any) itself
            client = GreengrassCoreIPCClientV2(client=connection, executor=None)
        self._client = client

    # --- connection --------------------------------------------------------------------------

    def on_connection_lost(self, callback: Callable[[str], None]) -> None:
        """``callback(reason)`` once, if the connection to the nucleus ends other than by
        :meth:`close` (on the network thread: be quick, no IPC)."""
        with self._lost_lock:
            reason = self.lost_reason
            if reason is None:
                self._lost_callbacks.append(callback)
        if reason is not None:
            callback(reason)

    def _connection_lost(self, reason: str) -> None:
        if self._closing:
            return
        with self._lost_lock:
            if self.lost_reason is not None:
                return
            self.lost_reason = reason
            callbacks = list(self._lost_callbacks)
        log.error("the IPC connection to the nucleus is gone: %s", reason)
        for callback in callbacks:
            callback(reason)

    def callback_backlog_peak(self) -> int:
        return self._runner.peak_backlog if self._runner is not None else 0

    # --- pub/sub -----------------------------------------------------------------------------

    def publish(self, topic: str, message: Any) -> None:
        """Publish a JSON value (``jsonMessage``) on a local topic."""
        from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

        try:
            message_shape = PublishMessage(json_message=JsonMessage(message=message))
            self._client.publish_to_topic(topic=topic, publish_message=message_shape)
        except Exception as exc:
            raise ipc_error_of(exc) from exc

    def publish_async(self, topic: str, message: Any) -> Future:
        """Start publishing a JSON value; the future ends with None or an :class:`IpcError`.
        Its callbacks may run on the SDK's network thread: quick, and no IPC calls there."""
        from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

        try:
            message_shape = PublishMessage(json_message=JsonMessage(message=message))
            sdk_future = self._client.publish_to_topic_async(
                topic=topic, publish_message=message_shape)
        except Exception as exc:
            return _failed(ipc_error_of(exc))
        return _converted(sdk_future)

    def publish_to_iot_core_async(self, topic: str, message: Any, qos: str = "1") -> Future:
        try:
            sdk_future = self._client.publish_to_iot_core_async(
                topic_name=topic, qos=qos, payload=json.dumps(message).encode("utf-8"))
        except Exception as exc:
            return _failed(ipc_error_of(exc))
        return _converted(sdk_future)

    def subscribe(
        self,
        topic: str,
        handler: MessageHandler,
        on_error: Callable[[IpcError], None] | None = None,
        on_closed: Callable[[], None] | None = None,
        *,
        on_network_thread: bool = False,
    ) -> Subscription:
        """Subscribe to a local topic (MQTT wildcards allowed); JSON and binary messages.

        An event the SDK cannot read (say, JSON nested deeper than Python's recursion limit)
        is logged and skipped: the stream stays open. Any other stream error closes the stream;
        ``on_closed`` runs when the stream ends without :meth:`Subscription.close`.
        ``on_network_thread``: ``handler`` runs on the SDK's network thread, not the callback
        thread (see the module docstring: it must never block nor make an IPC call); an
        exception it raises is logged and the stream stays open, as on the callback thread.
        """
        subscription = Subscription(f"subscription to {topic}")

        def on_event(event: Any) -> None:
            if event.json_message is not None:
                context = event.json_message.context
                handler(context.topic if context else topic, event.json_message.message)
            elif event.binary_message is not None:
                context = event.binary_message.context
                handler(context.topic if context else topic, bytes(event.binary_message.message))

        operation = self._subscribe_stream(
            subscription, lambda stream: self._client.subscribe_to_topic(topic=topic, **stream),
            on_event, on_error, on_closed, on_network_thread=on_network_thread)
        subscription._operation = operation
        return subscription

    def _subscribe_stream(self, subscription: Subscription, call: Callable[..., Any],
                          on_event: Callable[[Any], None],
                          on_error: Callable[[IpcError], None] | None,
                          on_closed: Callable[[], None] | None, *,
                          on_network_thread: bool = False) -> Any:
        def on_stream_error(exc: Exception) -> bool:
            error = ipc_error_of(exc)
            keep_open = error.kind is IpcErrorKind.MALFORMED
            log.error("%s: %s%s", subscription.description, _short(str(error)),
                      "; skipped that event" if keep_open else "; the stream is closed")
            if on_error is not None:
                on_error(error)
            return not keep_open

        def on_stream_closed() -> None:
            if not subscription.closed_by_us and on_closed is not None:
                on_closed()

        runner = None if on_network_thread else self._runner
        stream_event, stream_closed = on_event, on_stream_closed
        if on_network_thread:  # as on the callback thread: a callback's bug is logged and the
            def stream_event(event: Any) -> None:  # stream stays open (the SDK would close it)
                try:
                    on_event(event)
                except Exception:
                    log.exception("an IPC callback failed")
        if runner is not None:  # run on the callback thread, in arrival order
            def stream_event(event: Any) -> None:
                runner.submit(on_event, event)

            def stream_closed() -> None:
                runner.submit(on_stream_closed)

        try:
            _response, operation = call({"on_stream_event": stream_event,
                                         "on_stream_error": on_stream_error,
                                         "on_stream_closed": stream_closed})
        except Exception as exc:
            raise ipc_error_of(exc) from exc
        return operation

    def publish_to_iot_core(self, topic: str, message: Any, qos: str = "1") -> None:
        try:
            self._client.publish_to_iot_core(
                topic_name=topic, qos=qos, payload=json.dumps(message).encode("utf-8")
            )
        except Exception as exc:
            raise ipc_error_of(exc) from exc

    # --- configuration -----------------------------------------------------------------------

    def get_configuration(self, key_path: Sequence[str] = (),
                          component: str | None = None) -> Any:
        try:
            response = self._client.get_configuration(
                component_name=component, key_path=list(key_path)
            )
        except Exception as exc:
            raise ipc_error_of(exc) from exc
        value = response.value
        return dict(value) if isinstance(value, Mapping) else value

    def subscribe_configuration(
        self, on_update: Callable[[Sequence[str]], None], key_path: Sequence[str] = (),
        on_closed: Callable[[], None] | None = None,
    ) -> Subscription:
        """``on_update(key_path)`` for each change of this component's configuration;
        ``on_closed`` as for :meth:`subscribe`."""
        subscription = Subscription("subscription to configuration updates")

        def on_event(event: Any) -> None:
            update = event.configuration_update_event
            if update is not None:
                on_update(list(update.key_path or []))

        subscription._operation = self._subscribe_stream(
            subscription, lambda stream: self._client.subscribe_to_configuration_update(
                key_path=list(key_path), **stream),
            on_event, None, on_closed)
        return subscription

    # --- deployment-time conversations ---------------------------------------------------------

    def subscribe_validate_configuration(
        self, on_validate: Callable[[Mapping[str, Any], str], None],
        on_closed: Callable[[], None] | None = None,
    ) -> Subscription:
        """``on_validate(configuration, deployment_id)`` when a deployment proposes a new
        configuration for this component; answer with :meth:`send_configuration_validity_report`
        (not from the callback: hand it to a queue). ``on_closed`` as for :meth:`subscribe`."""
        subscription = Subscription("subscription to configuration validation")

        def on_event(event: Any) -> None:
            update = event.validate_configuration_update_event
            if update is not None:
                configuration = update.configuration
                on_validate(dict(configuration) if isinstance(configuration, Mapping) else {},
                            str(update.deployment_id))

        subscription._operation = self._subscribe_stream(
            subscription, lambda stream: self._client.subscribe_to_validate_configuration_updates(
                **stream), on_event, None, on_closed)
        return subscription

    def send_configuration_validity_report(self, deployment_id: str, accepted: bool,
                                           message: str | None = None) -> None:
        """Answer a validation request: ACCEPTED, or REJECTED with ``message`` (the reason the
        deployment fails with)."""
        from awsiot.greengrasscoreipc.model import ConfigurationValidityReport

        try:
            self._client.send_configuration_validity_report(
                configuration_validity_report=ConfigurationValidityReport(
                    status="ACCEPTED" if accepted else "REJECTED",
                    deployment_id=deployment_id, message=message))
        except Exception as exc:
            raise ipc_error_of(exc) from exc

    def subscribe_component_updates(
        self, on_pre_update: Callable[[str], None],
        on_post_update: Callable[[str], None] | None = None,
        on_closed: Callable[[], None] | None = None,
    ) -> Subscription:
        """``on_pre_update(deployment_id)`` before a deployment disrupts components (answer it
        with :meth:`defer_component_update`, not from the callback), ``on_post_update`` after."""
        subscription = Subscription("subscription to component updates")

        def on_event(event: Any) -> None:
            if event.pre_update_event is not None:
                on_pre_update(str(event.pre_update_event.deployment_id))
            elif event.post_update_event is not None and on_post_update is not None:
                on_post_update(str(event.post_update_event.deployment_id))

        subscription._operation = self._subscribe_stream(
            subscription, lambda stream: self._client.subscribe_to_component_updates(**stream),
            on_event, None, on_closed)
        return subscription

    def defer_component_update(self, deployment_id: str, recheck_after_ms: int,
                               message: str | None = None) -> None:
        """Ask the nucleus to wait ``recheck_after_ms`` and ask again; 0 lets the update go."""
        try:
            self._client.defer_component_update(
                deployment_id=deployment_id, recheck_after_ms=int(recheck_after_ms),
                message=message)
        except Exception as exc:
            raise ipc_error_of(exc) from exc

    # --- lifecycle ---------------------------------------------------------------------------

    def update_state(self, state: str) -> None:
        """Report RUNNING or ERRORED to the nucleus."""
        try:
            self._client.update_state(state=state)
        except Exception as exc:
            raise ipc_error_of(exc) from exc

    def close(self) -> None:
        self.begin_close()

    def begin_close(self) -> Future:
        """Close the connection (not reported lost); the future ends once the SDK has shut it
        down, after which no callback of it runs any more."""
        self._closing = True
        finished: Any = None
        try:
            finished = self._client.close()
        except Exception as exc:
            log.debug("closing the IPC client: %s", exc)
        if self._runner is not None:  # what the SDK's own executor shutdown did
            self._runner.shutdown(wait=True)
        if isinstance(finished, Future):
            return finished
        done: Future = Future()
        done.set_result(None)
        return done


def _converted(sdk_future: Future) -> Future:
    future: Future = Future()

    def done(finished: Future) -> None:
        exc = finished.exception()
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(ipc_error_of(exc))

    sdk_future.add_done_callback(done)
    return future


def _short(text: str, limit: int = 300) -> str:
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def connect_error_hint() -> str:
    """Why connecting may have failed, for the error message."""
    missing = [name for name in ("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", "SVCUID")
               if not os.environ.get(name)]
    if missing:
        return (f"{' and '.join(missing)} not set: this command runs as a Greengrass component "
                "(deploy it, or run it under `ggic local`); `ggic classify` works without IPC")
    return "is the nucleus (or `ggic local`) running, and is this component's token valid?"
