"""Local pub/sub through the real awsiotsdk client over a real Unix socket."""

from __future__ import annotations

import logging
import queue
from typing import Any, Callable

import pytest
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import (
    BinaryMessage,
    InvalidArgumentsError,
    JsonMessage,
    PublishMessage,
    ReceiveMode,
    ServiceError,
    SubscriptionResponseMessage,
    UnauthorizedError,
)

from ggic.local.ipc_server import IpcServer
from ipc_clients import Connect, ipc_error
from waiting import wait_until

PUBLISH = "aws.greengrass#PublishToTopic"
SUBSCRIBE = "aws.greengrass#SubscribeToTopic"
MiB = 1024 * 1024
WAIT = 5.0


def pubsub_acl(name: str, publish: tuple = (), subscribe: tuple = ()) -> dict:
    policies = {}
    if publish:
        policies[f"{name}:pubsub:1"] = {"operations": [PUBLISH], "resources": list(publish)}
    if subscribe:
        policies[f"{name}:pubsub:2"] = {"operations": [SUBSCRIBE], "resources": list(subscribe)}
    return {"aws.greengrass.ipc.pubsub": policies}


OPEN_ACL = {"aws.greengrass.ipc.pubsub": {"all": {"operations": ["*"], "resources": ["*"]}}}


@pytest.fixture
def connect(connect: Connect) -> Connect:
    """The shared ``connect``, with the pub/sub policy as its second argument (default: open)."""

    def _connect(name: str, access_control: Any = OPEN_ACL) -> GreengrassCoreIPCClientV2:
        return connect(name, access_control=access_control)

    return _connect


class Inbox:
    """Collects stream events; ``take`` returns (topic, json dict or bytes)."""

    def __init__(self) -> None:
        self.events: queue.Queue[SubscriptionResponseMessage] = queue.Queue()

    def __call__(self, event: SubscriptionResponseMessage) -> None:
        self.events.put(event)

    def take(self, timeout: float = WAIT) -> tuple[str, Any]:
        event = self.events.get(timeout=timeout)
        if event.json_message is not None:
            return event.json_message.context.topic, event.json_message.message
        return event.binary_message.context.topic, event.binary_message.message

    def assert_empty(self) -> None:
        assert self.events.empty(), self.take()


def subscribe(client: GreengrassCoreIPCClientV2, topic: str, **kwargs: Any) -> tuple[Inbox, Any]:
    inbox = Inbox()
    _response, operation = client.subscribe_to_topic(topic=topic, on_stream_event=inbox, **kwargs)
    return inbox, operation


def publish_json(client: GreengrassCoreIPCClientV2, topic: str, message: dict) -> None:
    client.publish_to_topic(
        topic=topic, publish_message=PublishMessage(json_message=JsonMessage(message=message))
    )


def publish_bytes(client: GreengrassCoreIPCClientV2, topic: str, data: bytes) -> None:
    client.publish_to_topic(
        topic=topic, publish_message=PublishMessage(binary_message=BinaryMessage(message=data))
    )


def test_json_message_reaches_the_subscriber(connect: Callable[..., Any]) -> None:
    classifier = connect("com.custom.ImageClassifier")
    requester = connect("com.custom.requester")
    inbox, _ = subscribe(classifier, "local/inference")
    request = {
        "request_id": "r1",
        "image_path": "/tmp/x.jpg",
        "top_k": 5,
        "nested": [1, {"a": None}],
    }
    publish_json(requester, "local/inference", request)
    assert inbox.take() == ("local/inference", request)


def test_binary_message_reaches_the_subscriber(connect: Callable[..., Any]) -> None:
    sub = connect("com.example.sub")
    pub = connect("com.example.pub")
    inbox, _ = subscribe(sub, "local/raw")
    data = bytes(range(256)) * 3
    publish_bytes(pub, "local/raw", data)
    assert inbox.take() == ("local/raw", data)
    publish_bytes(pub, "local/raw", b"")
    assert inbox.take() == ("local/raw", b"")


def test_single_level_wildcard(connect: Callable[..., Any]) -> None:
    sub = connect("com.example.sub")
    pub = connect("com.example.pub")
    inbox, _ = subscribe(sub, "local/+/result")
    for topic in ("local/a/result", "local/a/b/result", "local/result", "local/b/result/x"):
        publish_json(pub, topic, {"topic": topic})
    publish_json(pub, "local/z/result", {"last": True})
    assert inbox.take() == ("local/a/result", {"topic": "local/a/result"})
    assert inbox.take() == ("local/z/result", {"last": True})
    inbox.assert_empty()


def test_multi_level_wildcard(connect: Callable[..., Any]) -> None:
    sub = connect("com.example.sub")
    pub = connect("com.example.pub")
    inbox, _ = subscribe(sub, "local/#")
    for topic in ("local/a", "other/a", "local/a/b/c", "local", "localx/a"):
        publish_json(pub, topic, {"t": topic})
    assert [inbox.take()[0], inbox.take()[0]] == ["local/a", "local/a/b/c"]
    publish_json(pub, "local/end", {})
    assert inbox.take()[0] == "local/end"
    inbox.assert_empty()


def test_receive_mode(server: IpcServer, connect: Callable[..., Any]) -> None:
    me = connect("com.example.me")
    other = connect("com.example.other")
    others_only, _ = subscribe(me, "local/t", receive_mode=ReceiveMode.RECEIVE_MESSAGES_FROM_OTHERS)
    everything, _ = subscribe(me, "local/t", receive_mode=ReceiveMode.RECEIVE_ALL_MESSAGES)
    wildcard_default, _ = subscribe(me, "local/+")  # the nucleus's default for wildcards
    plain_default, _ = subscribe(me, "local/t")  # ... and for plain topics: all messages

    publish_json(me, "local/t", {"from": "me"})
    publish_json(other, "local/t", {"from": "other"})

    assert others_only.take()[1] == {"from": "other"}
    assert wildcard_default.take()[1] == {"from": "other"}
    assert everything.take()[1] == {"from": "me"}
    assert everything.take()[1] == {"from": "other"}
    assert plain_default.take()[1] == {"from": "me"}
    assert plain_default.take()[1] == {"from": "other"}
    # the publisher identity of a server-side publish is "ggic.local" unless told otherwise
    assert server.publish("local/t", {"from": "server"}) == 4
    assert server.publish("local/t", {"from": "as me"}, source="com.example.me") == 2
    assert others_only.take()[1] == {"from": "server"}
    assert everything.take()[1] == {"from": "server"}
    assert everything.take()[1] == {"from": "as me"}
    others_only.assert_empty()


def test_two_subscribers_each_get_each_message(
    server: IpcServer, connect: Callable[..., Any]
) -> None:
    first = connect("com.example.first")
    second = connect("com.example.second")
    pub = connect("com.example.pub")
    inbox1, _ = subscribe(first, "local/result")
    inbox2, _ = subscribe(second, "local/result")
    inbox3, _ = subscribe(second, "local/result")  # a second stream of the same component
    for index in range(5):
        publish_json(pub, "local/result", {"n": index})
    for inbox in (inbox1, inbox2, inbox3):
        assert [inbox.take()[1]["n"] for _ in range(5)] == list(range(5))
    assert server.publish("local/result", {"n": 5}) == 3


def test_closing_the_stream_stops_deliveries(
    server: IpcServer, connect: Callable[..., Any]
) -> None:
    sub = connect("com.example.sub")
    pub = connect("com.example.pub")
    closing, operation = subscribe(sub, "local/result")
    staying, _ = subscribe(sub, "local/result")
    publish_json(pub, "local/result", {"n": 1})
    assert closing.take()[1] == {"n": 1}
    assert staying.take()[1] == {"n": 1}

    operation.close().result(WAIT)
    wait_until(lambda: server.subscription_count() == 1)
    publish_json(pub, "local/result", {"n": 2})
    assert staying.take()[1] == {"n": 2}
    closing.assert_empty()
    assert server.publish("local/result", {"n": 3}) == 1


def test_closing_the_connection_removes_its_subscriptions(
    server: IpcServer, connect: Callable[..., Any]
) -> None:
    sub = connect("com.example.sub")
    subscribe(sub, "local/a")
    subscribe(sub, "local/#")
    assert server.subscription_count() == 2
    sub.close()
    wait_until(lambda: server.subscription_count() == 0)
    assert server.publish("local/a", {"x": 1}) == 0


def test_server_side_publish_and_subscribe(server: IpcServer, connect: Callable[..., Any]) -> None:
    client = connect("com.example.client")
    inbox, _ = subscribe(client, "local/+")
    received: queue.Queue[tuple[str, Any]] = queue.Queue()
    unsubscribe = server.subscribe("local/#", lambda topic, message: received.put((topic, message)))

    assert server.publish("local/json", {"k": [1, 2]}) == 2
    assert inbox.take() == ("local/json", {"k": [1, 2]})
    assert received.get(timeout=WAIT) == ("local/json", {"k": [1, 2]})

    publish_bytes(client, "local/bin", b"\x00\x01")
    assert received.get(timeout=WAIT) == ("local/bin", b"\x00\x01")
    publish_json(client, "local/deep/x", {"n": 1})
    assert received.get(timeout=WAIT) == ("local/deep/x", {"n": 1})

    # scalars and lists go out as jsonMessage too (the server-side API is not limited to maps)
    server.publish("local/list", [1, "two"])
    assert inbox.take() == ("local/list", [1, "two"])

    # RECEIVE_MESSAGES_FROM_OTHERS compares the publisher identity with the subscriber
    assert server.publish("local/x", {"n": 2}, source="com.example.client") == 1

    unsubscribe()
    assert server.publish("local/json", {"k": 3}) == 1
    with pytest.raises(ValueError):
        server.publish("local/+", {})
    with pytest.raises(ValueError):
        server.publish("/", {})  # no topic level


def test_unauthorized_publish_and_subscribe(
    connect: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ggic.local.ipc")
    name = "com.custom.requester"
    acl = pubsub_acl(name, publish=["local/inference"], subscribe=["local/result"])
    requester = connect(name, access_control=acl)
    subscribe(requester, "local/result")
    publish_json(requester, "local/inference", {"ok": True})

    with pytest.raises(UnauthorizedError) as caught:
        publish_json(requester, "local/foo", {})
    assert caught.value.message == (
        f"Principal {name} is not authorized to perform "
        "aws.greengrass.ipc.pubsub:aws.greengrass#PublishToTopic on resource local/foo"
    )
    assert (
        f"{name} is not authorized to perform aws.greengrass#PublishToTopic on local/foo: add an "
        "aws.greengrass.ipc.pubsub policy with operation aws.greengrass#PublishToTopic and "
        "resource local/foo to its accessControl"
    ) in caplog.messages

    with ipc_error(UnauthorizedError, "SubscribeToTopic on resource local/#"):
        subscribe(requester, "local/#")  # wildcards in policies are literal
    assert any("resource local/# to its accessControl" in m for m in caplog.messages)
    with pytest.raises(UnauthorizedError):
        subscribe(requester, "local/inference")  # publish-only topic


def test_access_control_can_change_at_runtime(
    server: IpcServer, connect: Callable[..., Any]
) -> None:
    client = connect("com.example.c", access_control=None)
    with pytest.raises(UnauthorizedError):
        publish_json(client, "local/t", {})
    server.set_access_control("com.example.c", pubsub_acl("com.example.c", publish=["local/*"]))
    publish_json(client, "local/t", {})


def test_invalid_publish_requests(connect: Callable[..., Any]) -> None:
    client = connect("com.example.c")
    with ipc_error(InvalidArgumentsError, "wildcard"):
        publish_json(client, "local/+", {})
    with ipc_error(InvalidArgumentsError, "exactly one"):
        client.publish_to_topic(topic="local/t", publish_message=PublishMessage())
    with ipc_error(InvalidArgumentsError, "JSON object"):
        client.publish_to_topic(
            topic="local/t",
            publish_message=PublishMessage(json_message=JsonMessage(message=[1, 2])),
        )
    with ipc_error(ServiceError, "no topic level"):
        publish_json(client, "/", {})
    with ipc_error(InvalidArgumentsError, "receiveMode"):
        subscribe(client, "local/x", receive_mode="SOMETIMES")


def test_oversize_message_is_refused_and_the_connection_stays_usable(
    server: IpcServer, connect: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ggic.local.ipc")
    sub = connect("com.example.sub")
    pub = connect("com.example.pub")
    inbox, _ = subscribe(sub, "local/images")
    # 13 MiB of bytes is a ~17.3 MiB frame after base64: over the server's 16 MiB limit,
    # under the client's own 24 MiB cap, so the real client sends it
    with ipc_error(InvalidArgumentsError, "exceeds the 16777216-byte frame limit"):
        publish_bytes(pub, "local/images", b"\xff" * (13 * MiB))
    assert any("frame; the limit is 16777216 bytes" in m for m in caplog.messages)
    publish_json(pub, "local/images", {"small": True})
    assert inbox.take() == ("local/images", {"small": True})
    inbox.assert_empty()
    # a large message under the limit goes through intact
    big = bytes(range(256)) * (40 * 1024)  # 10 MiB
    publish_bytes(pub, "local/images", big)
    assert inbox.take() == ("local/images", big)


def test_the_client_refuses_frames_over_its_own_cap(connect: Callable[..., Any]) -> None:
    """awscrt 0.36: frames above 24 MiB never leave the client (a fact, not our code)."""
    client = connect("com.example.c")
    with pytest.raises(RuntimeError, match="AWS_ERROR_EVENT_STREAM_MESSAGE_FIELD_SIZE_EXCEEDED"):
        publish_bytes(client, "local/t", b"x" * (19 * MiB))
    publish_json(client, "local/t", {"still": "connected"})


def test_topic_edge_cases_through_the_sdk(connect: Callable[..., Any]) -> None:
    """#9.11, as the nucleus's SubscriptionTrie: a trailing '/' is dropped (filter and topic),
    a '#' before the end matches one level, a filter of only '/' receives nothing."""
    listener = connect("com.example.listener")
    talker = connect("com.example.talker")
    trailing, _ = subscribe(listener, "sensors/t/")
    middle, _ = subscribe(listener, "a/#/c")
    slash, _ = subscribe(listener, "/")
    publish_json(talker, "sensors/t", {"n": 1})
    publish_json(talker, "a/x/y/c", {"n": 2})  # two levels where '#' takes one: not delivered
    publish_json(talker, "a/x/c", {"n": 3})
    publish_json(talker, "sensors/t/", {"n": 4})
    assert trailing.take() == ("sensors/t", {"n": 1})
    assert trailing.take() == ("sensors/t/", {"n": 4})
    assert middle.take() == ("a/x/c", {"n": 3})
    for inbox in (trailing, middle, slash):
        inbox.assert_empty()


def test_components_get_a_message_before_server_side_subscribers() -> None:
    """A server-side observer subscribed first (a test's, ggic local's own records) must not
    sit on a component's delivery path: components' subscriptions are served first."""
    from ggic.local.pubsub_broker import PubSubBroker, PubSubMessage, Subscription

    broker = PubSubBroker()
    order: list[str] = []
    broker.add(Subscription("local/#", lambda _m: order.append("server")))
    broker.add(Subscription("local/result", lambda _m: order.append("a"), owner="A"))
    broker.add(Subscription("local/+", lambda _m: order.append("b"), owner="B"))
    assert broker.publish(PubSubMessage("local/result", "C", json_value={"x": 1})) == 3
    assert order == ["a", "b", "server"]
