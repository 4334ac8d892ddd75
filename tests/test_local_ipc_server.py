"""The IPC server itself: handshake, lifecycle, state, IoT Core, delegated CLI operations, and
the wire protocol seen from a raw socket."""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import stat
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awsiot.greengrasscoreipc
import pytest
from awsiot.eventstreamrpc import AccessDeniedError
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import (
    QOS,
    ComponentDetails,
    InvalidArgumentsError,
    LifecycleState,
    ReportedLifecycleState,
    RequestStatus,
    ResourceNotFoundError,
    ServiceError,
    UnauthorizedError,
)

from ggic.local import ipc_errors
from ggic.local.control_api import ControlHandler
from ggic.local.eventstream import (
    PRELUDE_LENGTH,
    Header,
    MessageFlag,
    MessageType,
    RpcMessage,
    decode_message,
    decode_prelude,
    encode_rpc_message,
    json_headers,
    rpc_view,
)
from ggic.local.ipc_server import IpcServer
from ipc_clients import Connect, clients_of, ipc_error
from waiting import wait_until

WAIT = 5.0
COMPONENT = "com.custom.requester"
OPEN_PUBSUB = {"aws.greengrass.ipc.pubsub": {"all": {"operations": ["*"], "resources": ["*"]}}}


# --- handshake and lifecycle ----------------------------------------------------------------


def test_unknown_token_is_refused(server: IpcServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ggic.local.ipc")
    server.register_component(COMPONENT)
    with pytest.raises(AccessDeniedError):
        awsiot.greengrasscoreipc.connect(ipc_socket=str(server.socket_path), authtoken="forged")
    assert "refused an IPC connection: unknown auth token" in caplog.messages


def test_connects_through_the_component_environment(
    server: IpcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.register_component(COMPONENT, configuration={"Interval": "10"})
    env = server.component_env(COMPONENT)
    token = server.component_env(COMPONENT)["SVCUID"]
    assert env == {
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": str(server.socket_path),
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH": str(server.socket_path),
        "SVCUID": token,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": token,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    client = GreengrassCoreIPCClientV2()  # exactly how the components connect
    try:
        assert client.get_configuration().value == {"Interval": "10"}
    finally:
        client.close()


def test_reregistering_revokes_the_old_token(server: IpcServer) -> None:
    old = server.register_component(COMPONENT)
    new = server.register_component(COMPONENT)
    assert old != new and server.component_env(COMPONENT)["SVCUID"] == new
    with pytest.raises(AccessDeniedError):
        awsiot.greengrasscoreipc.connect(ipc_socket=str(server.socket_path), authtoken=old)


def test_unregistering_closes_the_components_connections(
    server: IpcServer, connect: Connect
) -> None:
    client = connect(COMPONENT, access_control=OPEN_PUBSUB)
    other = connect("com.example.other", access_control=OPEN_PUBSUB)
    client.subscribe_to_topic(topic="local/x", on_stream_event=lambda event: None)
    token = server.component_env(COMPONENT)["SVCUID"]
    server.unregister_component(COMPONENT)
    wait_until(lambda: server.connection_count(COMPONENT) == 0)
    assert server.subscription_count() == 0
    with pytest.raises(Exception):  # noqa: B017 - ConnectionClosedError from the SDK
        client.update_state(state=ReportedLifecycleState.RUNNING)
    with pytest.raises(AccessDeniedError):
        awsiot.greengrasscoreipc.connect(ipc_socket=str(server.socket_path), authtoken=token)
    other.update_state(state=ReportedLifecycleState.RUNNING)  # others are untouched
    assert COMPONENT not in server.components()


def test_socket_is_private_and_removed_on_stop(socket_dir: Path) -> None:
    path = socket_dir / "ipc.sock"
    with IpcServer(path) as ipc:
        mode = path.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert ipc.running
    assert not path.exists()


def test_a_stale_socket_is_replaced_but_a_live_one_or_a_file_is_not(socket_dir: Path) -> None:
    path = socket_dir / "ipc.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays behind, nobody listens
    with IpcServer(path), pytest.raises(OSError, match="another server"):
        IpcServer(path).start()
    (socket_dir / "file").write_text("not a socket")
    with pytest.raises(FileExistsError):
        IpcServer(socket_dir / "file").start()


def test_server_can_restart(socket_dir: Path) -> None:
    ipc = IpcServer(socket_dir / "ipc.sock")
    ipc.register_component(COMPONENT, configuration={"a": 1})
    for _ in range(2):
        with ipc, clients_of(ipc) as connect:
            assert connect(COMPONENT).get_configuration().value == {"a": 1}
    ipc.close()


def test_many_connections(server: IpcServer, connect: Connect) -> None:
    inboxes = []
    for index in range(25):
        client = connect(f"com.example.c{index}", access_control=OPEN_PUBSUB)
        inbox: queue.Queue = queue.Queue()
        client.subscribe_to_topic(topic="local/broadcast", on_stream_event=inbox.put)
        inboxes.append(inbox)
    assert server.connection_count() == 25
    publishers = [
        threading.Thread(target=server.publish, args=("local/broadcast", {"n": i}))
        for i in range(4)
    ]
    for thread in publishers:
        thread.start()
    for thread in publishers:
        thread.join(WAIT)
        assert not thread.is_alive()
    for inbox in inboxes:
        got = sorted(inbox.get(timeout=WAIT).json_message.message["n"] for _ in range(4))
        assert got == [0, 1, 2, 3]


# --- lifecycle state, IoT Core, unimplemented operations -------------------------------------


def test_update_state_is_recorded_and_observable(socket_dir: Path) -> None:
    changes: queue.Queue = queue.Queue()
    with (
        IpcServer(socket_dir / "ipc.sock", on_state_change=lambda *a: changes.put(a)) as ipc,
        clients_of(ipc) as connect,
    ):
        client = connect(COMPONENT)
        assert ipc.component_state(COMPONENT) is None
        assert not ipc.wait_for_state(COMPONENT, "RUNNING", 0.05)
        waiter = threading.Thread(
            target=lambda: changes.put(("waited", ipc.wait_for_state(COMPONENT, "ERRORED", WAIT)))
        )
        waiter.start()
        client.update_state(state=ReportedLifecycleState.RUNNING)
        assert ipc.wait_for_state(COMPONENT, "RUNNING", WAIT)
        assert ipc.component_state(COMPONENT) == "RUNNING"
        client.update_state(state=ReportedLifecycleState.ERRORED)
        waiter.join(WAIT)
        with ipc_error(InvalidArgumentsError, "RUNNING, ERRORED"):
            client.update_state(state="BROKEN")
        assert ipc.component_state(COMPONENT) == "ERRORED"
    seen = [changes.get(timeout=WAIT) for _ in range(3)]
    assert (COMPONENT, "RUNNING") in seen and (COMPONENT, "ERRORED") in seen
    assert ("waited", True) in seen


def test_publish_to_iot_core_is_recorded_not_sent(socket_dir: Path) -> None:
    calls: queue.Queue = queue.Queue()
    acl = {
        "aws.greengrass.ipc.mqttproxy": {
            f"{COMPONENT}:mqttproxy:1": {
                "operations": ["aws.greengrass#PublishToIoTCore"],
                "resources": ["ggic/+/results/#"],
            }
        }
    }
    with (
        IpcServer(socket_dir / "ipc.sock", on_iot_core_publish=calls.put) as ipc,
        clients_of(ipc) as connect,
    ):
        client = connect(COMPONENT, access_control=acl)
        client.publish_to_iot_core(
            topic_name="ggic/dev1/results/a", qos=QOS.AT_LEAST_ONCE, payload=b'{"ok": 1}'
        )
        with ipc_error(UnauthorizedError, "PublishToIoTCore on resource ggic/dev1/other"):
            client.publish_to_iot_core(
                topic_name="ggic/dev1/other", qos=QOS.AT_MOST_ONCE, payload=b"x"
            )
        with ipc_error(InvalidArgumentsError, "wildcards"):
            client.publish_to_iot_core(
                topic_name="ggic/dev1/results/#", qos=QOS.AT_MOST_ONCE, payload=b"x"
            )
        record = calls.get(timeout=WAIT)
    expected = {
        "topic": "ggic/dev1/results/a",
        "payload": b'{"ok": 1}',
        "qos": 1,
        "retain": False,
        "component": COMPONENT,
    }
    assert record == expected
    assert ipc.iot_core_messages == [expected]
    assert calls.empty()


def test_unimplemented_operations_answer_service_error(connect: Connect) -> None:
    client = connect(COMPONENT)
    with ipc_error(
        ServiceError,
        "operation aws.greengrass#GetSecretValue is not implemented by the ggic local runtime",
    ):
        client.get_secret_value(secret_id="db-password")
    with ipc_error(ServiceError, "aws.greengrass#GetThingShadow is not implemented"):
        client.get_thing_shadow(thing_name="t")
    client.update_state(state=ReportedLifecycleState.RUNNING)  # still connected


# --- delegated greengrass-cli operations ------------------------------------------------------


class FakeRuntime(ControlHandler):
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def list_components(self, request: dict) -> dict:
        self.calls.append(("list_components", request))
        return {
            "components": [
                {
                    "componentName": COMPONENT,
                    "version": "1.0.0",
                    "state": "RUNNING",
                    "configuration": {"Interval": "10"},
                },
            ]
        }

    def get_component_details(self, request: dict) -> dict:
        self.calls.append(("get_component_details", request))
        if request["componentName"] != COMPONENT:
            raise ipc_errors.ResourceNotFoundError(
                f"Component with name {request['componentName']} not found in Greengrass",
                resource_type="component",
                resource_name=request["componentName"],
            )
        return {
            "componentDetails": {"componentName": COMPONENT, "version": "1.0.0", "state": "RUNNING"}
        }

    def create_local_deployment(self, request: dict) -> dict:
        self.calls.append(("create_local_deployment", request))
        time.sleep(0.05)  # control handlers may block: they run on a worker thread
        return {"deploymentId": "d-1"}

    def get_local_deployment_status(self, request: dict) -> dict:
        self.calls.append(("get_local_deployment_status", request))
        return {"deployment": {"deploymentId": request["deploymentId"], "status": "SUCCEEDED"}}

    def list_local_deployments(self, request: dict) -> dict:
        return {"localDeployments": [{"deploymentId": "d-1", "status": "SUCCEEDED"}]}

    def restart_component(self, request: dict) -> dict:
        self.calls.append(("restart_component", request))
        return {"restartStatus": "SUCCEEDED"}

    def stop_component(self, request: dict) -> dict:
        raise RuntimeError("the runtime broke")


def test_control_operations_are_delegated(socket_dir: Path) -> None:
    runtime = FakeRuntime()
    with (
        IpcServer(socket_dir / "ipc.sock", control_handler=runtime) as ipc,
        clients_of(ipc) as connect,
    ):
        cli = connect("ggic.cli", cli=True)
        components = cli.list_components().components
        assert components == [
            ComponentDetails(
                component_name=COMPONENT,
                version="1.0.0",
                state=LifecycleState.RUNNING,
                configuration={"Interval": "10"},
            )
        ]
        details = cli.get_component_details(component_name=COMPONENT).component_details
        assert details.state == LifecycleState.RUNNING
        with ipc_error(ResourceNotFoundError, "com.example.nope not found"):
            cli.get_component_details(component_name="com.example.nope")
        deployment = cli.create_local_deployment(
            root_component_versions_to_add={COMPONENT: "1.0.0"},
            recipe_directory_path="/recipes",
            component_to_configuration={COMPONENT: {"MERGE": {"Interval": "5"}}},
        )
        assert deployment.deployment_id == "d-1"
        status = cli.get_local_deployment_status(deployment_id="d-1").deployment
        assert status.status == "SUCCEEDED"
        assert [d.deployment_id for d in cli.list_local_deployments().local_deployments] == ["d-1"]
        assert cli.restart_component(component_name=COMPONENT).restart_status == (
            RequestStatus.SUCCEEDED
        )
        with ipc_error(ServiceError, "the runtime broke"):
            cli.stop_component(component_name=COMPONENT)

        plain = connect(COMPONENT)
        with ipc_error(UnauthorizedError, "aws.greengrass.Cli:aws.greengrass#RestartComponent"):
            plain.restart_component(component_name=COMPONENT)
    assert (
        "create_local_deployment",
        {
            "rootComponentVersionsToAdd": {COMPONENT: "1.0.0"},
            "recipeDirectoryPath": "/recipes",
            "componentToConfiguration": {COMPONENT: {"MERGE": {"Interval": "5"}}},
        },
    ) in runtime.calls
    # the refused (non-cli) restart never reached the runtime
    assert [call for call in runtime.calls if call[0] == "restart_component"] == [
        ("restart_component", {"componentName": COMPONENT})
    ]


def test_a_component_with_a_cli_policy_may_call_the_cli_operations(socket_dir: Path) -> None:
    """#9.4, as the greengrass-cli's CLIEventStreamAgent.authorizeRequest: an
    aws.greengrass.Cli policy allows its operations on the component name, the deployment id or
    "*" (list and create operations)."""
    runtime = FakeRuntime()
    policy = {
        "aws.greengrass.Cli": {
            "com.example.Ops:cli:1": {
                "operations": ["aws.greengrass#ListComponents",
                               "aws.greengrass#RestartComponent",
                               "aws.greengrass#GetLocalDeploymentStatus"],
                "resources": ["*"],
            },
            "com.example.Ops:cli:2": {
                "operations": ["aws.greengrass#GetComponentDetails"],
                "resources": [COMPONENT],
            },
        }
    }
    with (
        IpcServer(socket_dir / "ipc.sock", control_handler=runtime) as ipc,
        clients_of(ipc) as connect,
    ):
        ops = connect("com.example.Ops", access_control=policy)
        assert [c.component_name for c in ops.list_components().components] == [COMPONENT]
        assert ops.restart_component(component_name=COMPONENT).restart_status == (
            RequestStatus.SUCCEEDED
        )
        assert ops.get_local_deployment_status(deployment_id="d-7").deployment.status == (
            "SUCCEEDED"
        )
        assert ops.get_component_details(component_name=COMPONENT).component_details.state == (
            LifecycleState.RUNNING
        )
        with ipc_error(UnauthorizedError, "GetComponentDetails on resource com.example.other"):
            ops.get_component_details(component_name="com.example.other")
        with ipc_error(UnauthorizedError, "CreateLocalDeployment on resource *"):
            ops.create_local_deployment(root_component_versions_to_add={COMPONENT: "1.0.0"})
    assert [name for name, _ in runtime.calls] == [
        "list_components", "restart_component", "get_local_deployment_status",
        "get_component_details",
    ]


def test_control_operations_without_a_handler(connect: Connect) -> None:
    cli = connect("ggic.cli", cli=True)
    with ipc_error(ServiceError, "needs a control handler"):
        cli.list_components()


# --- the wire protocol from a raw socket ------------------------------------------------------


class RawClient:
    """A minimal event-stream RPC client built on the codec, to reach what the SDK never sends."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT)
        self.sock.connect(str(path))
        self.next_stream = 1

    def send(self, frame: bytes) -> None:
        self.sock.sendall(frame)

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("closed by the server")
            data += chunk
        return data

    def receive(self) -> RpcMessage:
        prelude = self._read(PRELUDE_LENGTH)
        total = decode_prelude(prelude).total_length
        return rpc_view(decode_message(prelude + self._read(total - PRELUDE_LENGTH)))

    def is_closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionError:
            return True

    def connect(self, token: str, version: str = "0.1.0") -> RpcMessage:
        self.send(
            encode_rpc_message(
                MessageType.CONNECT,
                headers=[Header.string(":version", version)],
                payload=json.dumps({"authToken": token}).encode(),
            )
        )
        return self.receive()

    def request(self, operation: str, body: dict, payload: bytes | None = None) -> RpcMessage:
        stream_id, self.next_stream = self.next_stream, self.next_stream + 1
        self.send(
            encode_rpc_message(
                MessageType.APPLICATION_MESSAGE,
                stream_id=stream_id,
                headers=[
                    *json_headers(operation + "Request"),
                    Header.string("operation", operation),
                ],
                payload=json.dumps(body).encode() if payload is None else payload,
            )
        )
        return self.receive()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(server: IpcServer) -> Iterator[RawClient]:
    client = RawClient(server.socket_path)
    yield client
    client.close()


PUBLISH = "aws.greengrass#PublishToTopic"


def prelude_only(total_length: int) -> bytes:
    raw = struct.pack(">II", total_length, 0)
    return raw + struct.pack(">I", zlib.crc32(raw))


def test_raw_handshake_ping_and_request(server: IpcServer, raw: RawClient) -> None:
    token = server.register_component(COMPONENT, access_control=OPEN_PUBSUB)
    ack = raw.connect(token)
    assert ack.message_type is MessageType.CONNECT_ACK
    assert ack.flags & MessageFlag.CONNECTION_ACCEPTED

    raw.send(encode_rpc_message(MessageType.PING, headers=[Header.string("x", "y")], payload=b"hi"))
    pong = raw.receive()
    assert (pong.message_type, pong.stream_id, pong.payload) == (
        MessageType.PING_RESPONSE,
        0,
        b"hi",
    )
    assert pong.message.value("x") == "y"

    reply = raw.request(
        PUBLISH, {"topic": "local/t", "publishMessage": {"jsonMessage": {"message": {"a": 1}}}}
    )
    assert reply.message_type is MessageType.APPLICATION_MESSAGE
    assert reply.stream_id == 1
    assert reply.flags & MessageFlag.TERMINATE_STREAM
    assert reply.message.value("service-model-type") == "aws.greengrass#PublishToTopicResponse"
    assert reply.message.value(":content-type") == "application/json"
    assert json.loads(reply.payload) == {}

    error = raw.request(PUBLISH, {}, payload=b"not json")
    assert error.message_type is MessageType.APPLICATION_ERROR
    assert error.flags & MessageFlag.TERMINATE_STREAM
    assert error.message.value("service-model-type") == "aws.greengrass#InvalidArgumentsError"
    assert json.loads(error.payload) == {"message": "request payload is not valid JSON"}


def test_raw_oversize_frame_is_refused_on_its_stream(socket_dir: Path) -> None:
    with IpcServer(socket_dir / "ipc.sock", max_frame_bytes=4096) as ipc:
        token = ipc.register_component(COMPONENT, access_control=OPEN_PUBSUB)
        received: queue.Queue = queue.Queue()
        ipc.subscribe("local/#", lambda topic, message: received.put(message))
        raw = RawClient(ipc.socket_path)
        try:
            raw.connect(token)
            big = {"topic": "local/t", "publishMessage": {"binaryMessage": {"message": "A" * 8000}}}
            refused = raw.request(PUBLISH, big)
            assert refused.stream_id == 1
            assert refused.message_type is MessageType.APPLICATION_ERROR
            assert refused.message.value("service-model-type") == (
                "aws.greengrass#InvalidArgumentsError"
            )
            assert "exceeds the 4096-byte frame limit" in json.loads(refused.payload)["message"]
            small = {"topic": "local/t", "publishMessage": {"jsonMessage": {"message": {"n": 2}}}}
            accepted = raw.request(PUBLISH, small)
            assert (accepted.stream_id, accepted.message_type) == (
                2,
                MessageType.APPLICATION_MESSAGE,
            )
            assert received.get(timeout=WAIT) == {"n": 2}
            assert received.empty()
            with pytest.raises(ValueError, match="4096-byte IPC frame"):
                ipc.publish("local/t", b"x" * 5000)
        finally:
            raw.close()


@pytest.mark.parametrize(
    "first_frame",
    [
        b"\x00" * 16,  # bad prelude CRC
        encode_rpc_message(MessageType.PING),  # anything before CONNECT
        encode_rpc_message(MessageType.CONNECT)[:-1] + b"\x00",  # bad message CRC
        prelude_only(20 * 1024 * 1024),  # an oversize frame before CONNECT is not read
    ],
)
def test_protocol_errors_close_the_connection(raw: RawClient, first_frame: bytes) -> None:
    raw.send(first_frame)
    error = raw.receive()
    assert error.message_type is MessageType.PROTOCOL_ERROR
    assert raw.is_closed()


def test_protocol_errors_after_connect(server: IpcServer, raw: RawClient) -> None:
    raw.connect(server.register_component(COMPONENT))
    raw.send(encode_rpc_message(MessageType.APPLICATION_MESSAGE, stream_id=0))
    assert raw.receive().message_type is MessageType.PROTOCOL_ERROR
    assert raw.is_closed()


def test_wrong_version_is_refused(server: IpcServer, raw: RawClient) -> None:
    ack = raw.connect(server.register_component(COMPONENT), version="9.9.9")
    assert ack.message_type is MessageType.CONNECT_ACK
    assert not ack.flags & MessageFlag.CONNECTION_ACCEPTED


def test_client_stream_close_and_late_messages(server: IpcServer, raw: RawClient) -> None:
    raw.connect(server.register_component(COMPONENT, access_control=OPEN_PUBSUB))
    subscribe = "aws.greengrass#SubscribeToTopic"
    response = raw.request(subscribe, {"topic": "local/t"})
    assert response.message.value("service-model-type") == (
        "aws.greengrass#SubscribeToTopicResponse"
    )
    assert not response.flags & MessageFlag.TERMINATE_STREAM
    assert server.publish("local/t", {"n": 1}) == 1
    event = raw.receive()
    assert event.stream_id == 1
    assert event.message.value("service-model-type") == "aws.greengrass#SubscriptionResponseMessage"
    assert json.loads(event.payload) == {
        "jsonMessage": {"message": {"n": 1}, "context": {"topic": "local/t"}}
    }
    raw.send(
        encode_rpc_message(
            MessageType.APPLICATION_MESSAGE, stream_id=1, flags=MessageFlag.TERMINATE_STREAM
        )
    )
    wait_until(lambda: server.subscription_count() == 0)
    # a late message on the closed stream is ignored; the connection keeps working
    raw.send(encode_rpc_message(MessageType.APPLICATION_MESSAGE, stream_id=1, payload=b"{}"))
    assert (
        raw.request(
            PUBLISH, {"topic": "local/t", "publishMessage": {"jsonMessage": {"message": {}}}}
        ).stream_id
        == 2
    )


def test_handshake_timeout(socket_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ggic.local import ipc_connection

    original = ipc_connection.IpcConnection.__init__

    def short_timeout(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **{**kwargs, "connect_timeout": 0.2})

    monkeypatch.setattr(ipc_connection.IpcConnection, "__init__", short_timeout)
    with IpcServer(socket_dir / "ipc.sock") as ipc:
        raw = RawClient(ipc.socket_path)
        try:
            assert raw.is_closed()
            wait_until(lambda: ipc.connection_count() == 0)
        finally:
            raw.close()


def test_server_rejects_unusable_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too long"):
        IpcServer(tmp_path / ("x" * 120))
    assert os.path.exists(tmp_path)
