"""Real awsiotsdk IPC clients for the ``ggic.local`` IPC server tests (fixtures in conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

import awsiot.greengrasscoreipc
import pytest
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

from ggic.local.ipc_server import IpcServer

Connect = Callable[..., GreengrassCoreIPCClientV2]
"""``connect(name, **register)``: register ``name`` with the server (``register_component``'s
keyword arguments) and return a connected client."""


@contextmanager
def clients_of(server: IpcServer) -> Iterator[Connect]:
    """A ``connect`` function for ``server``; every client it made is closed on exit."""
    clients: list[GreengrassCoreIPCClientV2] = []

    def connect(name: str, **register: Any) -> GreengrassCoreIPCClientV2:
        token = server.register_component(name, **register)
        connection = awsiot.greengrasscoreipc.connect(
            ipc_socket=str(server.socket_path), authtoken=token
        )
        # executor=None: callbacks run in arrival order on the network thread (they only
        # put into a queue), which makes "nothing else arrived" checks deterministic
        client = GreengrassCoreIPCClientV2(client=connection, executor=None)
        clients.append(client)
        return client

    try:
        yield connect
    finally:
        for client in clients:
            client.close()


@contextmanager
def ipc_error(error_type: type, fragment: str) -> Iterator[None]:
    """Like pytest.raises(match=...) for the SDK's error shapes (their str() is empty)."""
    with pytest.raises(error_type) as caught:
        yield
    assert fragment in caught.value.message
