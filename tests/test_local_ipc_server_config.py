"""Component configuration IPC through the real awsiotsdk client."""

from __future__ import annotations

import datetime
import queue
import time
from typing import Any, Callable

import pytest
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import (
    ConfigurationUpdateEvents,
    FailedUpdateConditionCheckError,
    InvalidArgumentsError,
    ResourceNotFoundError,
)

from ggic.local.ipc_server import IpcServer
from ipc_clients import Connect, ipc_error

WAIT = 5.0
CLASSIFIER = "com.custom.ImageClassifier"
REQUESTER = "com.custom.requester"
CLASSIFIER_CONFIG = {
    "ModelProfile": "resnet50",
    "Tuning": {"TopK": "5", "Threshold": "0.3", "Workers": {"Count": 2}},
    "Topics": {"Requests": "local/inference", "Results": "local/result"},
    "accessControl": {"aws.greengrass.ipc.pubsub": {}},
}


@pytest.fixture
def connect(connect: Connect) -> Connect:
    """The shared ``connect``, with the configuration as its second argument."""

    def _connect(name: str, configuration: dict | None = None) -> GreengrassCoreIPCClientV2:
        return connect(name, configuration=configuration)

    return _connect


class ChangeLog:
    def __init__(self) -> None:
        self.events: queue.Queue[ConfigurationUpdateEvents] = queue.Queue()

    def __call__(self, event: ConfigurationUpdateEvents) -> None:
        self.events.put(event)

    def take(self) -> tuple[str, list[str]]:
        event = self.events.get(timeout=WAIT).configuration_update_event
        return event.component_name, event.key_path

    def take_all(self, count: int) -> list[tuple[str, list[str]]]:
        return sorted(self.take() for _ in range(count))

    def assert_empty(self, settle: float = 0.1) -> None:
        time.sleep(settle)
        assert self.events.empty(), self.take()


def watch(client: GreengrassCoreIPCClientV2, **kwargs: Any) -> tuple[ChangeLog, Any]:
    changes = ChangeLog()
    _response, operation = client.subscribe_to_configuration_update(
        on_stream_event=changes, **kwargs
    )
    return changes, operation


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def test_get_configuration(connect: Callable[..., Any]) -> None:
    classifier = connect(CLASSIFIER, CLASSIFIER_CONFIG)
    whole = classifier.get_configuration()
    assert whole.component_name == CLASSIFIER
    assert whole.value == CLASSIFIER_CONFIG
    assert classifier.get_configuration(key_path=["Tuning"]).value == CLASSIFIER_CONFIG["Tuning"]
    # a leaf comes back as {leaf: value}, as the nucleus returns it
    assert classifier.get_configuration(key_path=["Tuning", "TopK"]).value == {"TopK": "5"}
    assert classifier.get_configuration(key_path=["Tuning", "Workers", "Count"]).value == {
        "Count": 2
    }
    for missing in (["Nope"], ["Tuning", "Nope"], ["ModelProfile", "deeper"]):
        with ipc_error(ResourceNotFoundError, "Key not found"):
            classifier.get_configuration(key_path=missing)


def test_get_another_components_configuration(connect: Callable[..., Any]) -> None:
    connect(CLASSIFIER, CLASSIFIER_CONFIG)
    requester = connect(REQUESTER, {"Interval": "10"})
    response = requester.get_configuration(component_name=CLASSIFIER, key_path=["Topics"])
    assert response.component_name == CLASSIFIER
    assert response.value == CLASSIFIER_CONFIG["Topics"]
    with ipc_error(ResourceNotFoundError, "Key not found"):
        requester.get_configuration(component_name="com.example.unknown")


def test_update_configuration_merges_into_own_configuration(
    server: IpcServer, connect: Callable[..., Any]
) -> None:
    classifier = connect(CLASSIFIER, CLASSIFIER_CONFIG)
    classifier.update_configuration(
        key_path=["Tuning"], timestamp=now(), value_to_merge={"TopK": "3", "Workers": {"Max": 4}}
    )
    tuning = server.get_configuration(CLASSIFIER)["Tuning"]
    assert tuning == {"TopK": "3", "Threshold": "0.3", "Workers": {"Count": 2, "Max": 4}}
    classifier.update_configuration(
        key_path=["New", "Branch"], timestamp=now(), value_to_merge={"x": 1}
    )
    classifier.update_configuration(timestamp=now(), value_to_merge={"Top": True})
    config = server.get_configuration(CLASSIFIER)
    assert config["New"] == {"Branch": {"x": 1}}
    assert config["Top"] is True
    # get_configuration hands out a copy
    config["Tuning"]["TopK"] = "changed"
    assert server.get_configuration(CLASSIFIER)["Tuning"]["TopK"] == "3"


def test_update_configuration_refusals(server: IpcServer, connect: Callable[..., Any]) -> None:
    classifier = connect(CLASSIFIER, CLASSIFIER_CONFIG)
    with ipc_error(InvalidArgumentsError, "accessControl"):
        classifier.update_configuration(
            timestamp=now(), value_to_merge={"accessControl": {"x": {}}}
        )
    with ipc_error(InvalidArgumentsError, "accessControl"):
        classifier.update_configuration(
            key_path=["accessControl"], timestamp=now(), value_to_merge={"x": {}}
        )
    with ipc_error(InvalidArgumentsError, "Timestamp is required"):
        classifier.update_configuration(key_path=["Tuning"], value_to_merge={"TopK": "1"})
    with ipc_error(InvalidArgumentsError, "ValueToMerge is required"):
        classifier.update_configuration(key_path=["Tuning"], timestamp=now())
    later = now()
    classifier.update_configuration(
        key_path=["Tuning"], timestamp=later, value_to_merge={"TopK": "7"}
    )
    with ipc_error(FailedUpdateConditionCheckError, "older"):
        classifier.update_configuration(
            key_path=["Tuning"],
            timestamp=later - datetime.timedelta(seconds=5),
            value_to_merge={"TopK": "1"},
        )
    assert server.get_configuration(CLASSIFIER)["Tuning"]["TopK"] == "7"


def test_configuration_update_events(server: IpcServer, connect: Callable[..., Any]) -> None:
    classifier = connect(CLASSIFIER, CLASSIFIER_CONFIG)
    tuning_changes, _ = watch(classifier, key_path=["Tuning"])
    all_changes, _ = watch(classifier)
    leaf_changes, _ = watch(classifier, key_path=["Tuning", "TopK"])

    # the runtime replaces the configuration (a deployment): one event per changed leaf
    new_config = {
        **CLASSIFIER_CONFIG,
        "ModelProfile": "vgg16",
        "Tuning": {"TopK": "3", "Threshold": "0.3", "Workers": {"Count": 4}},
    }
    server.set_configuration(CLASSIFIER, new_config)
    assert tuning_changes.take_all(2) == [
        (CLASSIFIER, ["Tuning", "TopK"]),
        (CLASSIFIER, ["Tuning", "Workers", "Count"]),
    ]
    assert all_changes.take_all(3) == [
        (CLASSIFIER, ["ModelProfile"]),
        (CLASSIFIER, ["Tuning", "TopK"]),
        (CLASSIFIER, ["Tuning", "Workers", "Count"]),
    ]
    assert leaf_changes.take() == (CLASSIFIER, ["Tuning", "TopK"])

    # the component's own update is announced too; unchanged values are not
    classifier.update_configuration(
        key_path=["Tuning"], timestamp=now(), value_to_merge={"TopK": "3", "Threshold": "0.5"}
    )
    assert tuning_changes.take() == (CLASSIFIER, ["Tuning", "Threshold"])
    assert all_changes.take() == (CLASSIFIER, ["Tuning", "Threshold"])

    # removing a subtree is one event for its root
    server.set_configuration(CLASSIFIER, {"ModelProfile": "vgg16", "Topics": {}})
    assert all_changes.take_all(4) == [
        (CLASSIFIER, ["Topics", "Requests"]),
        (CLASSIFIER, ["Topics", "Results"]),
        (CLASSIFIER, ["Tuning"]),
        (CLASSIFIER, ["accessControl"]),
    ]
    assert tuning_changes.take() == (CLASSIFIER, ["Tuning"])
    assert leaf_changes.take() == (CLASSIFIER, ["Tuning", "TopK"])
    for changes in (tuning_changes, leaf_changes, all_changes):
        changes.assert_empty()


def test_watching_another_component_and_closing_the_stream(
    server: IpcServer, connect: Callable[..., Any]
) -> None:
    connect(CLASSIFIER, CLASSIFIER_CONFIG)
    requester = connect(REQUESTER, {"Interval": "10"})
    changes, operation = watch(requester, component_name=CLASSIFIER, key_path=["Topics"])
    own, _ = watch(requester)
    server.set_configuration(
        CLASSIFIER, {**CLASSIFIER_CONFIG, "Topics": {"Requests": "x", "Results": "local/result"}}
    )
    assert changes.take() == (CLASSIFIER, ["Topics", "Requests"])
    operation.close().result(WAIT)
    server.set_configuration(CLASSIFIER, CLASSIFIER_CONFIG)
    server.set_configuration(REQUESTER, {"Interval": "20"})
    assert own.take() == (REQUESTER, ["Interval"])
    changes.assert_empty()


def test_watching_a_missing_key_is_refused(connect: Callable[..., Any]) -> None:
    classifier = connect(CLASSIFIER, CLASSIFIER_CONFIG)
    with ipc_error(ResourceNotFoundError, "Key not found"):
        watch(classifier, key_path=["Nope"])
    with ipc_error(ResourceNotFoundError, "Key not found"):
        watch(classifier, component_name="com.example.unknown")


def test_configuration_keys_are_case_insensitive_like_the_nucleus(
    server: IpcServer, connect: Callable[..., Any]
) -> None:
    """The nucleus's Topics key children by CaseInsensitiveString: any case finds a key, and a
    write in another case updates it, keeping the first spelling."""
    classifier = connect(CLASSIFIER, CLASSIFIER_CONFIG)
    assert classifier.get_configuration(key_path=["tuning", "topk"]).value == {"TopK": "5"}
    assert classifier.get_configuration(key_path=["TUNING"]).value == CLASSIFIER_CONFIG["Tuning"]
    changes, _ = watch(classifier, key_path=["tuning"])
    classifier.update_configuration(
        key_path=["TUNING"], timestamp=now(), value_to_merge={"topk": "3"}
    )
    assert changes.take() == (CLASSIFIER, ["Tuning", "TopK"])
    assert server.get_configuration(CLASSIFIER)["Tuning"] == {
        **CLASSIFIER_CONFIG["Tuning"],
        "TopK": "3",
    }
    with ipc_error(InvalidArgumentsError, "accessControl"):
        classifier.update_configuration(
            timestamp=now(), value_to_merge={"AccessControl": {"x": {}}}
        )


def test_update_configuration_merges_leaf_by_leaf_by_write_time(
    server: IpcServer, connect: Callable[..., Any]
) -> None:
    """ConfigStoreIPCEventStreamAgent: each leaf takes the value only if the update is not older
    than the leaf's last write (Topic.withNewerValue); the call then fails if anything under
    keyPath is newer than the update."""
    classifier = connect(CLASSIFIER, CLASSIFIER_CONFIG)
    earlier = now()
    later = earlier + datetime.timedelta(seconds=5)
    classifier.update_configuration(
        key_path=["Tuning"], timestamp=later, value_to_merge={"TopK": "7"}
    )
    with ipc_error(FailedUpdateConditionCheckError, "older"):
        classifier.update_configuration(
            key_path=["Tuning"],
            timestamp=earlier,
            value_to_merge={"TopK": "1", "Threshold": "0.9", "New": "x"},
        )
    tuning = server.get_configuration(CLASSIFIER)["Tuning"]
    assert (tuning["TopK"], tuning["Threshold"], tuning["New"]) == ("7", "0.9", "x")


def test_writes_by_the_runtime_count_for_update_configuration(
    server: IpcServer, connect: Callable[..., Any]
) -> None:
    """A deployment's write (here the runtime replacing the configuration) is stamped too, so a
    component's update older than it does not overwrite it."""
    classifier = connect(CLASSIFIER, CLASSIFIER_CONFIG)
    before = now() - datetime.timedelta(seconds=5)
    server.set_configuration(CLASSIFIER, {**CLASSIFIER_CONFIG, "ModelProfile": "vgg16"})
    with ipc_error(FailedUpdateConditionCheckError, "older"):
        classifier.update_configuration(
            timestamp=before, value_to_merge={"ModelProfile": "stale"}
        )
    assert server.get_configuration(CLASSIFIER)["ModelProfile"] == "vgg16"
