"""A local Greengrass IPC server: speaks the nucleus's IPC protocol to the real awsiotsdk client.

Components that use ``GreengrassCoreIPCClientV2`` unchanged connect to it through the same two
environment variables the nucleus sets (:meth:`IpcServer.component_env`; with the older socket
variable and the TES token too)::

    server = IpcServer(tmp / "ipc.socket")
    server.register_component("com.custom.requester", access_control=..., configuration=...)
    with server:
        env = server.component_env("com.custom.requester")
        ...  # start the component with env

The server's asyncio loop runs on a background thread; every public method is thread-safe.
Logging goes to the ``ggic.local.ipc`` logger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

from .config_store import ConfigStore
from .control_api import ControlHandler
from .ipc_connection import IpcConnection
from .ipc_nucleus import IotCorePublishCallback, LocalNucleus, StateCallback
from .pubsub_broker import PubSubMessage, Subscription
from .topics import validate_publish_topic, validate_topic_filter

log = logging.getLogger("ggic.local.ipc")

SOCKET_ENV = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
SOCKET_ENV_OLD = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH"  # IPCEventStreamService sets both
TOKEN_ENV = "SVCUID"
TES_TOKEN_ENV = "AWS_CONTAINER_AUTHORIZATION_TOKEN"  # ShellRunner: the SVCUID again, for TES
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
_START_TIMEOUT = 10.0
_EVENT_OVERHEAD_BYTES = 1024


class IpcServer:
    def __init__(
        self,
        socket_path: str | Path,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        control_handler: ControlHandler | None = None,
        on_iot_core_publish: IotCorePublishCallback | None = None,
        on_state_change: StateCallback | None = None,
        max_write_buffer_bytes: int | None = None,
        config: ConfigStore | None = None,
        socket_mode: int = 0o600,
    ) -> None:
        self.socket_path = Path(socket_path).absolute()
        self.socket_mode = socket_mode
        """0600: only this user connects; 0666 when components run as other users (the
        nucleus's Permissions.setIpcSocketPermission: every user connects, each component's
        token decides what it may do)."""
        if len(os.fsencode(self.socket_path)) >= 104:
            # sun_path is 108 bytes on Linux and 104 on macOS
            raise ValueError(f"socket path is too long for a Unix socket: {self.socket_path}")
        if max_frame_bytes < 1024:
            raise ValueError("max_frame_bytes must be at least 1024")
        self.max_frame_bytes = max_frame_bytes
        self.max_write_buffer_bytes = max_write_buffer_bytes or 4 * max(
            max_frame_bytes, DEFAULT_MAX_FRAME_BYTES
        )
        self._nucleus = LocalNucleus(
            control_handler=control_handler,
            on_iot_core_publish=on_iot_core_publish,
            on_state_change=on_state_change,
            config=config,
        )
        self._lock = threading.Lock()
        self._connections: set[IpcConnection] = set()
        self._closed_stats: dict[str, tuple[int, int]] = {}  # component -> see traffic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        if self._loop is not None:
            raise RuntimeError("the IPC server is already running")
        loop = asyncio.new_event_loop()
        ready: Future = Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen(ready))
            except BaseException as exc:  # report start-up failures to start()
                if not ready.done():
                    ready.set_exception(exc)
                return
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="ggic-ipc-server", daemon=True)
        self._thread.start()
        try:
            ready.result(_START_TIMEOUT)
        except BaseException:
            self._thread.join(_START_TIMEOUT)
            loop.close()
            self._loop = self._thread = None
            raise
        log.info("Greengrass IPC server listening on %s", self.socket_path)

    async def _listen(self, ready: Future) -> None:
        _remove_stale_socket(self.socket_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.socket_path))
            os.chmod(self.socket_path, self.socket_mode)  # before listen()
            sock.listen(128)
            self._server = await asyncio.start_unix_server(
                self._on_client, sock=sock, limit=2 * 1024 * 1024
            )
        except BaseException:
            sock.close()
            raise
        ready.set_result(None)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_START_TIMEOUT)
        except Exception:
            log.exception("stopping the IPC server")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_START_TIMEOUT)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        log.info("Greengrass IPC server on %s stopped", self.socket_path)

    async def _shutdown(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()  # their serve() tasks see EOF and end
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=_START_TIMEOUT)
            for task in pending:
                task.cancel()
        if server is not None:
            await server.wait_closed()

    def close(self) -> None:
        """Stop (if running) and stop the callback thread; the server cannot be restarted."""
        self.stop()
        self._nucleus.close()

    def __enter__(self) -> IpcServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        connection = IpcConnection(
            self._nucleus,
            reader,
            writer,
            max_frame_bytes=self.max_frame_bytes,
            max_write_buffer_bytes=self.max_write_buffer_bytes,
            on_closed=self._connection_closed,
        )
        with self._lock:
            self._connections.add(connection)
        try:
            await connection.serve()
        finally:
            if task is not None:
                self._tasks.discard(task)

    def _connection_closed(self, connection: IpcConnection) -> None:
        with self._lock:
            self._connections.discard(connection)
            if connection.component is not None:
                written, peak = self._closed_stats.get(connection.component, (0, 0))
                self._closed_stats[connection.component] = (
                    written + connection.events_written,
                    max(peak, connection.peak_write_buffer_bytes))
        if connection.component is not None:
            log.debug("%s disconnected", connection.component)

    # --- components --------------------------------------------------------------------------

    def register_component(
        self,
        name: str,
        *,
        access_control: Mapping | str | None = None,
        configuration: Mapping | None = None,
        cli: bool = False,
    ) -> str:
        """Register a component; returns its fresh auth token (the SVCUID)."""
        return self._nucleus.register(
            name, access_control=access_control, configuration=configuration, cli=cli
        )

    def unregister_component(self, name: str) -> None:
        """Revoke the component's token and close its connections (ending its subscriptions)."""
        self._nucleus.unregister(name)
        with self._lock:
            connections = [c for c in self._connections if c.component == name]
        for connection in connections:
            connection.close_threadsafe()

    def component_env(self, name: str) -> dict[str, str]:
        token = self._nucleus.token(name)
        socket_path = str(self.socket_path)
        return {SOCKET_ENV: socket_path, SOCKET_ENV_OLD: socket_path, TOKEN_ENV: token,
                TES_TOKEN_ENV: token}

    def components(self) -> list[str]:
        return self._nucleus.component_names()

    def connection_count(self, name: str | None = None) -> int:
        with self._lock:
            return sum(1 for c in self._connections if name is None or c.component == name)

    def traffic(self, name: str) -> tuple[int, int]:
        """Stream events written to ``name``'s connections so far (handed to the socket, read
        or not), and the most bytes one of its connections held unsent."""
        with self._lock:
            written, peak = self._closed_stats.get(name, (0, 0))
            for connection in self._connections:
                if connection.component == name:
                    written += connection.events_written
                    peak = max(peak, connection.peak_write_buffer_bytes)
        return written, peak

    # --- configuration and access control ----------------------------------------------------

    def get_configuration(self, name: str) -> dict[str, Any]:
        return self._nucleus.config.snapshot(name)

    def set_configuration(self, name: str, configuration: Mapping[str, Any]) -> None:
        """Replace the configuration; SubscribeToConfigurationUpdate subscribers hear of each
        changed key path."""
        self._nucleus.config.replace(name, configuration)

    def set_access_control(self, name: str, access_control: Mapping | str | None) -> None:
        self._nucleus.set_access_control(name, access_control)

    @property
    def nucleus(self) -> LocalNucleus:
        """What the operations act on (component updates, validation, IoT Core, metrics)."""
        return self._nucleus

    @property
    def config(self) -> ConfigStore:
        """The configuration store the configuration operations are a view over."""
        return self._nucleus.config

    # --- lifecycle state ---------------------------------------------------------------------

    def component_state(self, name: str) -> str | None:
        """The last state the component reported with UpdateState (None before any)."""
        return self._nucleus.component_state(name)

    def wait_for_state(self, name: str, state: str, timeout: float) -> bool:
        return self._nucleus.wait_for_state(name, state, timeout)

    # --- pub/sub -----------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        message: Mapping | list | str | int | float | bool | bytes,
        *,
        source: str = "ggic.local",
    ) -> int:
        """Publish to local subscribers (binaryMessage for bytes, jsonMessage otherwise).

        ``source`` is the publisher identity RECEIVE_MESSAGES_FROM_OTHERS compares with.
        Returns the number of deliveries.
        """
        validate_publish_topic(topic)
        if isinstance(message, (bytes, bytearray, memoryview)):
            pubsub_message = PubSubMessage(topic, source, binary=bytes(message))
        else:
            pubsub_message = PubSubMessage(topic, source, json_value=message)
        size = len(pubsub_message.event_payload())  # refuses non-JSON values here, once
        if size > self.max_frame_bytes - _EVENT_OVERHEAD_BYTES:
            raise ValueError(
                f"a {size}-byte message does not fit in a {self.max_frame_bytes}-byte IPC frame"
            )
        return self._nucleus.broker.publish(pubsub_message)

    def subscribe(
        self, topic_filter: str, callback: Callable[[str, Any], None]
    ) -> Callable[[], None]:
        """Server-side subscription; ``callback(topic, message)`` runs on the callback thread
        (message: decoded JSON, or bytes for binary messages). Returns an unsubscribe function."""
        validate_topic_filter(topic_filter)
        runner = self._nucleus.callbacks

        def deliver(message: PubSubMessage) -> None:
            runner.submit(callback, message.topic, message.decoded())

        return self._nucleus.broker.add(Subscription(topic_filter, deliver))

    def subscription_count(self) -> int:
        """Open subscriptions: components' SubscribeToTopic streams plus server-side ones."""
        return self._nucleus.broker.subscription_count()

    # --- MQTT proxy ---------------------------------------------------------------------------

    @property
    def iot_core_messages(self) -> list[dict[str, Any]]:
        """Recorded PublishToIoTCore calls: topic, payload (bytes), qos, retain, component."""
        return self._nucleus.iot_core_messages


def _remove_stale_socket(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listens: left over from a process that died
    else:
        raise OSError(f"another server is listening on {path}")
    finally:
        probe.close()
