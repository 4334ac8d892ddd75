"""One client connection: CONNECT handshake, frames, operation streams (runs on the event loop).

* The first message must be CONNECT with ``:version`` 0.1.0 and ``{"authToken": …}``; an
  unknown token gets CONNECT_ACK without the accepted flag and the connection is closed.
* The client opens streams with increasing ids; the first message of a stream names the
  operation. Replies end with TERMINATE_STREAM; streaming operations send their response and
  then events until either side terminates the stream.
* A frame larger than ``max_frame_bytes`` is read and thrown away (its checksum still
  verified) and answered with InvalidArgumentsError on its stream; the connection stays up.
* Framing errors (bad checksums, malformed headers, messages out of protocol) end the
  connection with a PROTOCOL_ERROR, as the event-stream RPC servers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import zlib
from collections.abc import Mapping
from typing import Any, Callable

from .control_api import run_control_operation
from .eventstream import (
    CLIENT_MAX_MESSAGE_LENGTH,
    MAX_HEADERS_LENGTH,
    PRELUDE_LENGTH,
    RPC_VERSION,
    VERSION_HEADER,
    EventStreamError,
    Message,
    MessageFlag,
    MessageType,
    Prelude,
    RpcMessage,
    decode_headers,
    decode_message,
    decode_prelude,
    encode_rpc_message,
    json_headers,
    rpc_view,
)
from .ipc_errors import InvalidArgumentsError, IpcError, ServiceError
from .ipc_nucleus import LocalNucleus
from .ipc_operations import OPERATIONS, check_control_access, not_implemented
from .ipc_types import Operation, OperationContext, OperationResult

log = logging.getLogger("ggic.local.ipc")

_DISCARD_CHUNK = 256 * 1024
_REFUSED_GRACE = 2.0
"""Seconds a refused client gets to close the connection itself."""
_ACCEPTED = MessageFlag.CONNECTION_ACCEPTED
_TERMINATE = MessageFlag.TERMINATE_STREAM


class ServerStream:
    """One operation stream; ``send_event``/``send_json_event`` may be called from any thread."""

    def __init__(self, connection: IpcConnection, stream_id: int, operation: str) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.operation = operation
        self.event_type: str | None = None
        self.closed = False
        self._close_callbacks: list[Callable[[], None]] = []

    # handler-facing ---------------------------------------------------------------------------

    def send_event(self, payload: bytes) -> None:
        if self.closed or self.event_type is None:
            return
        frame = encode_rpc_message(
            MessageType.APPLICATION_MESSAGE,
            stream_id=self.stream_id,
            headers=json_headers(self.event_type),
            payload=payload,
        )
        limit = self.connection.max_event_frame_bytes
        if len(frame) > limit:
            log.error(
                "not sending a %d-byte %s event to %s: larger than the %d-byte frame limit",
                len(frame),
                self.operation,
                self.connection.component,
                limit,
            )
            return
        self.connection.send_threadsafe(frame, self)

    def send_json_event(self, event: Mapping[str, Any]) -> None:
        self.send_event(json.dumps(event).encode("utf-8"))

    def on_close(self, callback: Callable[[], None]) -> None:
        if self.closed:
            callback()
        else:
            self._close_callbacks.append(callback)

    # connection-facing (event loop only) ------------------------------------------------------

    def respond(self, operation: Operation, result: OperationResult) -> None:
        if self.closed:
            return
        streaming = operation.event_type is not None
        frame = encode_rpc_message(
            MessageType.APPLICATION_MESSAGE,
            stream_id=self.stream_id,
            flags=MessageFlag.NONE if streaming else _TERMINATE,
            headers=json_headers(operation.response_type),
            payload=json.dumps(dict(result.response)).encode("utf-8"),
        )
        if not streaming:
            self.connection.send_frame(frame)
            self.close()
            return
        # Subscribe before the response leaves: a client that publishes as soon as its
        # subscribe call returns must not race the registration. Events from other threads
        # are queued onto this loop, so they still go out after the response.
        self.event_type = operation.event_type
        if result.on_stream_open is not None:
            result.on_stream_open()
        self.connection.send_frame(frame)

    def fail(self, error: IpcError) -> None:
        if self.closed:
            return
        frame = encode_rpc_message(
            MessageType.APPLICATION_ERROR,
            stream_id=self.stream_id,
            flags=_TERMINATE,
            headers=json_headers(error.model_type),
            payload=json.dumps(error.payload()).encode("utf-8"),
        )
        self.connection.send_frame(frame)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.connection.forget_stream(self)
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("closing stream %d (%s) failed", self.stream_id, self.operation)


class IpcConnection:
    def __init__(
        self,
        nucleus: LocalNucleus,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_frame_bytes: int,
        max_write_buffer_bytes: int,
        on_closed: Callable[[IpcConnection], None],
        connect_timeout: float = 10.0,
    ) -> None:
        self.nucleus = nucleus
        self.reader = reader
        self.writer = writer
        self.max_frame_bytes = max_frame_bytes
        # events carry what a publisher sent within max_frame_bytes, with slightly different
        # headers; never more than the client accepts (it drops the connection otherwise)
        self.max_event_frame_bytes = min(max_frame_bytes + 64 * 1024, CLIENT_MAX_MESSAGE_LENGTH)
        self.max_write_buffer_bytes = max_write_buffer_bytes
        #: stream events handed to the transport, and the most bytes it ever held unsent
        self.events_written = 0
        self.peak_write_buffer_bytes = 0
        self.component: str | None = None
        self.refused = False
        self.closed = False
        self.streams: dict[int, ServerStream] = {}
        self.last_stream_id = 0
        self._on_closed = on_closed
        self._connect_timeout = connect_timeout
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def __repr__(self) -> str:
        return f"<IpcConnection {self.component or 'unauthenticated'}>"

    # --- reading -----------------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            while not self.closed:
                if self.component is None:  # the handshake must come promptly
                    timeout = _REFUSED_GRACE if self.refused else self._connect_timeout
                    prelude_bytes = await asyncio.wait_for(
                        self.reader.readexactly(PRELUDE_LENGTH), timeout
                    )
                else:
                    prelude_bytes = await self.reader.readexactly(PRELUDE_LENGTH)
                prelude = decode_prelude(prelude_bytes)
                if prelude.total_length > self.max_frame_bytes:
                    if self.component is None:
                        raise EventStreamError(
                            f"{prelude.total_length}-byte frame before a successful CONNECT"
                        )
                    await self._discard_oversize_frame(prelude_bytes, prelude)
                    continue
                rest = await self.reader.readexactly(prelude.total_length - PRELUDE_LENGTH)
                self._dispatch(rpc_view(decode_message(prelude_bytes + rest)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.TimeoutError:
            if not self.refused:
                log.warning("an IPC client connected but sent no CONNECT; closing")
        except EventStreamError as exc:
            self.protocol_error(str(exc))
        finally:
            self.close()

    async def _discard_oversize_frame(self, prelude_bytes: bytes, prelude: Prelude) -> None:
        """Read past a too-large frame (verifying its CRC) and refuse it on its stream."""
        crc = zlib.crc32(prelude_bytes)
        headers = None
        if prelude.headers_length <= MAX_HEADERS_LENGTH:
            header_bytes = await self.reader.readexactly(prelude.headers_length)
            crc = zlib.crc32(header_bytes, crc)
            headers = decode_headers(header_bytes)
            remaining = prelude.payload_length
        else:
            remaining = prelude.headers_length + prelude.payload_length
        while remaining:
            chunk = await self.reader.readexactly(min(remaining, _DISCARD_CHUNK))
            crc = zlib.crc32(chunk, crc)
            remaining -= len(chunk)
        if int.from_bytes(await self.reader.readexactly(4), "big") != crc:
            raise EventStreamError("message CRC32 mismatch in an oversize frame")
        log.warning(
            "%s sent a %d-byte frame; the limit is %d bytes: discarded",
            self.component or "an unauthenticated client",
            prelude.total_length,
            self.max_frame_bytes,
        )
        if headers is None:
            return  # no way to tell which stream it was on
        rpc = rpc_view(Message(headers))
        if rpc.stream_id == 0:
            raise EventStreamError("oversize frame outside an operation stream")
        error = InvalidArgumentsError(
            f"message of {prelude.total_length} bytes exceeds the {self.max_frame_bytes}-byte "
            "frame limit of Greengrass IPC"
        )
        stream = self._stream_for(rpc)
        if stream is not None:
            stream.fail(error)

    # --- dispatch ----------------------------------------------------------------------------

    def _dispatch(self, rpc: RpcMessage) -> None:
        kind = rpc.message_type
        if self.refused:
            return  # waiting for the refused client to hang up
        if self.component is None:
            if kind is not MessageType.CONNECT:
                raise EventStreamError(f"expected CONNECT, got {kind.name}")
            self._connect(rpc)
            return
        if kind in (MessageType.APPLICATION_MESSAGE, MessageType.APPLICATION_ERROR):
            if rpc.stream_id == 0:
                raise EventStreamError(f"{kind.name} on stream 0")
            self._stream_message(rpc)
        elif rpc.stream_id != 0:
            raise EventStreamError(f"{kind.name} on stream {rpc.stream_id}")
        elif kind is MessageType.PING:
            headers = [h for h in rpc.message.headers if not h.name.startswith(":")]
            self.send_frame(
                encode_rpc_message(MessageType.PING_RESPONSE, headers=headers, payload=rpc.payload)
            )
        elif kind is MessageType.PING_RESPONSE:
            pass
        elif kind is MessageType.CONNECT:
            raise EventStreamError("CONNECT on an established connection")
        else:
            log.warning("%s sent %s: %r; closing", self.component, kind.name, rpc.payload[:200])
            self.close()

    def _connect(self, rpc: RpcMessage) -> None:
        version = rpc.message.value(VERSION_HEADER)
        try:
            token = json.loads(rpc.payload or b"{}").get("authToken")
        except (ValueError, AttributeError):
            token = None
        component = self.nucleus.authenticate(token)
        if version != RPC_VERSION or component is None:
            reason = (
                f"unsupported {VERSION_HEADER} {version!r}"
                if version != RPC_VERSION
                else ("unknown auth token")
            )
            log.warning("refused an IPC connection: %s", reason)
            # The client closes on this CONNECT_ACK and raises AccessDeniedError; closing first
            # would make it report a closed socket instead.
            self.send_frame(encode_rpc_message(MessageType.CONNECT_ACK))
            self.refused = True
            return
        self.component = component
        self.send_frame(encode_rpc_message(MessageType.CONNECT_ACK, flags=_ACCEPTED))
        log.debug("%s connected", component)

    def _stream_for(self, rpc: RpcMessage) -> ServerStream | None:
        """The open stream of a message, a new one for a new stream id, None for closed ones."""
        stream = self.streams.get(rpc.stream_id)
        if stream is not None or rpc.stream_id <= self.last_stream_id:
            return stream
        self.last_stream_id = rpc.stream_id
        stream = ServerStream(self, rpc.stream_id, rpc.operation or "")
        self.streams[rpc.stream_id] = stream
        return stream

    def _stream_message(self, rpc: RpcMessage) -> None:
        is_new = rpc.stream_id not in self.streams and rpc.stream_id > self.last_stream_id
        stream = self._stream_for(rpc)
        if stream is None:
            return  # a late message on a stream that is already closed
        if is_new:
            if not rpc.operation:
                raise EventStreamError(f"stream {rpc.stream_id} opened without an operation header")
            self._start_operation(stream, rpc)
        elif rpc.flags & _TERMINATE or rpc.message_type is MessageType.APPLICATION_ERROR:
            log.debug(
                "%s closed stream %d (%s)", self.component, stream.stream_id, stream.operation
            )
            stream.close()
        else:
            log.debug(
                "ignoring a client event on stream %d (%s)", stream.stream_id, stream.operation
            )

    def _start_operation(self, stream: ServerStream, rpc: RpcMessage) -> None:
        assert self.component is not None
        name = stream.operation
        try:
            operation = OPERATIONS.get(name)
            if operation is None:
                raise not_implemented(name)
            request = _request_json(rpc.payload)
            ctx = OperationContext(self.component, self.nucleus, stream)
            if operation.delegated:
                check_control_access(ctx, name, request)
                self._delegate(stream, operation, request)
                return
            assert operation.handler is not None
            stream.respond(operation, operation.handler(ctx, request))
        except IpcError as error:
            log.debug("%s %s failed: %s", self.component, name, error.message)
            stream.fail(error)
        except Exception as exc:
            log.exception("%s %s failed", self.component, name)
            stream.fail(ServiceError(f"{name} failed in the ggic local runtime: {exc}"))

    def _delegate(
        self, stream: ServerStream, operation: Operation, request: dict[str, Any]
    ) -> None:
        future = self._loop.run_in_executor(
            None, run_control_operation, self.nucleus.control_handler, operation.name, request
        )

        def done(fut: asyncio.Future) -> None:
            if fut.cancelled():
                stream.fail(ServiceError(f"{operation.name} was cancelled"))
                return
            error = fut.exception()
            if error is None:
                stream.respond(operation, OperationResult(fut.result()))
            elif isinstance(error, IpcError):
                stream.fail(error)
            else:
                log.error("control handler %s failed: %r", operation.name, error)
                stream.fail(ServiceError(f"{operation.name} failed: {error}"))

        future.add_done_callback(done)

    # --- writing -----------------------------------------------------------------------------

    def send_frame(self, frame: bytes) -> None:
        """Write a frame (event loop thread only)."""
        if self.closed:
            return
        self.writer.write(frame)
        buffered = self.writer.transport.get_write_buffer_size()
        self.peak_write_buffer_bytes = max(self.peak_write_buffer_bytes, buffered)
        if buffered > self.max_write_buffer_bytes:
            log.error("%s is not reading its IPC messages; closing the connection", self.component)
            self.close()

    def send_threadsafe(self, frame: bytes, stream: ServerStream) -> None:
        if threading.get_ident() == self._loop_thread:
            self._send_on_stream(frame, stream)
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server stopped
            self._loop.call_soon_threadsafe(self._send_on_stream, frame, stream)

    def _send_on_stream(self, frame: bytes, stream: ServerStream) -> None:
        if not stream.closed and not self.closed:
            self.events_written += 1
            self.send_frame(frame)

    def protocol_error(self, message: str) -> None:
        log.warning("IPC protocol error from %s: %s", self.component or "a client", message)
        self.send_frame(
            encode_rpc_message(
                MessageType.PROTOCOL_ERROR, payload=json.dumps({"message": message}).encode("utf-8")
            )
        )
        self.close()

    # --- closing -----------------------------------------------------------------------------

    def forget_stream(self, stream: ServerStream) -> None:
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]

    def close(self) -> None:
        """Close the connection and all its streams (event loop thread only)."""
        if self.closed:
            return
        self.closed = True
        for stream in list(self.streams.values()):
            stream.close()
        with contextlib.suppress(Exception):  # already broken
            self.writer.close()
        self._on_closed(self)

    def close_threadsafe(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self.close()
            return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self.close)


def _request_json(payload: bytes) -> dict[str, Any]:
    try:
        request = json.loads(payload) if payload else {}
    except ValueError:
        raise InvalidArgumentsError("request payload is not valid JSON") from None
    if not isinstance(request, dict):
        raise InvalidArgumentsError("request payload must be a JSON object")
    return request
