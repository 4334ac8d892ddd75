"""The nine IPC operations that answered "not implemented" (#9.3), through the real awsiotsdk
client over the real socket: SubscribeToIoTCore against the stand-in broker, PutComponentMetric,
ValidateAuthorizationToken, SubscribeToComponentUpdates/DeferComponentUpdate and configuration
validation with the nucleus's answers. (Pause/Resume need real processes:
test_local_runtime_nucleus_features.py.)"""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest
from awsiot.greengrasscoreipc.model import (
    ConfigurationValidityReport,
    InvalidArgumentsError,
    InvalidTokenError,
    Metric,
    ServiceError,
    UnauthorizedError,
)

from ipc_clients import ipc_error

SUBSCRIBER = "com.example.CloudListener"
PUBLISHER = "com.example.CloudTalker"
STREAM_MANAGER = "aws.greengrass.StreamManager"
TIMEOUT = 10.0


def mqtt_policy(name: str, operation: str, *resources: str) -> dict[str, Any]:
    return {"aws.greengrass.ipc.mqttproxy": {f"{name}:mqttproxy:1": {
        "operations": [f"aws.greengrass#{operation}"], "resources": list(resources)}}}


def test_subscribe_to_iot_core_receives_matching_messages_mqtt_style(connect: Any) -> None:
    listener = connect(SUBSCRIBER, access_control=mqtt_policy(
        SUBSCRIBER, "SubscribeToIoTCore", "devices/+/cmd", "alerts/#"))
    talker = connect(PUBLISHER, access_control=mqtt_policy(PUBLISHER, "PublishToIoTCore", "*"))
    received: queue.Queue[Any] = queue.Queue()
    for topic_filter in ("devices/+/cmd", "alerts/#"):
        listener.subscribe_to_iot_core(topic_name=topic_filter, qos="1",
                                       on_stream_event=received.put)
    for topic in ("devices/d1/cmd", "devices/d1/other", "alerts", "alerts/fire/now"):
        talker.publish_to_iot_core(topic_name=topic, qos="0", payload=topic.encode())
    got = sorted((e.message.topic_name, bytes(e.message.payload))
                 for e in (received.get(timeout=TIMEOUT) for _ in range(3)))
    assert got == [("alerts", b"alerts"), ("alerts/fire/now", b"alerts/fire/now"),
                   ("devices/d1/cmd", b"devices/d1/cmd")]
    assert received.empty()


def test_subscribe_to_iot_core_enforces_the_mqttproxy_policy_and_filter_rules(
        connect: Any) -> None:
    client = connect(SUBSCRIBER, access_control=mqtt_policy(
        SUBSCRIBER, "SubscribeToIoTCore", "devices/#"))
    with ipc_error(UnauthorizedError, "Not Authorized"):
        client.subscribe_to_iot_core(topic_name="other/topic", qos="0")
    with ipc_error(InvalidArgumentsError, "Invalid QoS value"):
        client.subscribe_to_iot_core(topic_name="devices/x", qos="2")
    with ipc_error(ServiceError, "failed with error TOPIC_FILTER_INVALID"):
        client.subscribe_to_iot_core(topic_name="devices/#/x", qos="0")


def test_put_component_metric_as_the_nucleus_answers_it(connect: Any, server: Any) -> None:
    metric = Metric(name="InferenceCount", unit="COUNT", value=3.0)
    custom = connect("com.custom.ImageClassifier", access_control={
        "aws.greengrass.ipc.componentmetric": {"p": {
            "operations": ["aws.greengrass#PutComponentMetric"], "resources": ["*"]}}})
    # only aws.* components may put metrics, whatever their policy says
    with ipc_error(UnauthorizedError, "Principal com.custom.ImageClassifier is not authorized"):
        custom.put_component_metric(metrics=[metric])
    stream_manager = connect(STREAM_MANAGER)
    stream_manager.put_component_metric(metrics=[metric])
    assert [(m["namespace"], m["name"], m["value"]) for m in server.nucleus.component_metrics] \
        == [(STREAM_MANAGER, "InferenceCount", 3.0)]
    with ipc_error(InvalidArgumentsError, "Invalid argument found in PutComponentMetricRequest"):
        stream_manager.put_component_metric(metrics=[Metric(name="x", unit="COUNT", value=-1.0)])
    other_aws = connect("aws.greengrass.Example")
    with ipc_error(UnauthorizedError, "with metric name InferenceCount"):
        other_aws.put_component_metric(metrics=[metric])


def test_validate_authorization_token_only_for_the_stream_manager(connect: Any,
                                                                  server: Any) -> None:
    custom = connect("com.example.Custom")
    token = server.nucleus.token("com.example.Custom")
    with ipc_error(UnauthorizedError, "is not authorized to perform "
                   "aws.greengrass#ValidateAuthorizationToken"):
        custom.validate_authorization_token(token=token)
    stream_manager = connect(STREAM_MANAGER)
    assert stream_manager.validate_authorization_token(token=token).is_valid is True
    with ipc_error(InvalidTokenError, "Authentication token not found"):
        stream_manager.validate_authorization_token(token="not-a-token")


def test_component_updates_are_announced_and_deferral_is_honoured(connect: Any,
                                                                  server: Any) -> None:
    client = connect("com.example.Deferrer")
    with ipc_error(InvalidArgumentsError, "not subscribed to component update events"):
        client.defer_component_update(deployment_id="d-1", recheck_after_ms=100)
    events: queue.Queue[Any] = queue.Queue()
    client.subscribe_to_component_updates(on_stream_event=events.put)
    updates = server.nucleus.component_updates
    closing = threading.Event()
    waiter = threading.Thread(target=updates.wait_until_disruptable,
                              args=("d-1", TIMEOUT, closing))
    waiter.start()
    first = events.get(timeout=TIMEOUT)
    assert first.pre_update_event.deployment_id == "d-1"
    assert first.pre_update_event.is_ggc_restarting is False
    client.defer_component_update(deployment_id="d-1", recheck_after_ms=200, message="busy")
    second = events.get(timeout=TIMEOUT)  # asked again after the deferral
    assert second.pre_update_event.deployment_id == "d-1"
    assert waiter.is_alive()
    client.defer_component_update(deployment_id="d-1", recheck_after_ms=0)
    waiter.join(TIMEOUT)
    assert not waiter.is_alive()
    with ipc_error(ServiceError, "Time limit to respond to PreComponentUpdateEvent exceeded"):
        client.defer_component_update(deployment_id="d-1", recheck_after_ms=0)
    updates.send_post_update("d-1")
    assert events.get(timeout=TIMEOUT).post_update_event.deployment_id == "d-1"


def test_configuration_validation_reports_reach_the_deployment(connect: Any,
                                                               server: Any) -> None:
    name = "com.example.Validator"
    client = connect(name)
    with ipc_error(InvalidArgumentsError, "Validation request either timed out or was never"):
        client.send_configuration_validity_report(configuration_validity_report=(
            ConfigurationValidityReport(status="ACCEPTED", deployment_id="d-0")))

    def validate(event: Any) -> None:
        update = event.validate_configuration_update_event
        ok = update.configuration.get("TopK") != "0"
        threading.Thread(target=client.send_configuration_validity_report, kwargs={
            "configuration_validity_report": ConfigurationValidityReport(
                status="ACCEPTED" if ok else "REJECTED", deployment_id=update.deployment_id,
                message=None if ok else "TopK must be at least 1")}).start()

    client.subscribe_to_validate_configuration_updates(on_stream_event=validate)
    validation = server.nucleus.validation
    assert validation.validate("d-1", {name: {"TopK": "3"}}, TIMEOUT) is None
    failure = validation.validate("d-2", {name: {"TopK": "0"}}, TIMEOUT)
    assert failure == ("Components reported that their to-be-deployed configuration is invalid"
                       f" {{ name = {name}, message = TopK must be at least 1 }}")
    # a component that did not subscribe is not asked
    assert validation.validate("d-3", {"com.example.Other": {"TopK": "0"}}, TIMEOUT) is None


@pytest.mark.parametrize("operation", ["PauseComponent", "ResumeComponent"])
def test_pause_and_resume_need_the_lifecycle_policy(connect: Any, operation: str) -> None:
    client = connect("com.example.Pauser")
    call = client.pause_component if operation == "PauseComponent" else client.resume_component
    with ipc_error(InvalidArgumentsError, "Component name is required."):
        call(component_name="")
    with ipc_error(UnauthorizedError, f"aws.greengrass.ipc.lifecycle:aws.greengrass#{operation}"
                                      " on resource com.example.Other"):
        call(component_name="com.example.Other")


def test_a_validator_that_does_not_answer_fails_the_validation(connect: Any,
                                                                server: Any) -> None:
    name = "com.example.SilentValidator"
    client = connect(name)
    events: queue.Queue[Any] = queue.Queue()
    client.subscribe_to_validate_configuration_updates(on_stream_event=events.put)
    failure = server.nucleus.validation.validate("d-9", {name: {"TopK": "3"}}, 0.5)
    assert failure is not None and failure.startswith(
        "Error while waiting for validation report for one or more components")
    assert events.get(timeout=TIMEOUT).validate_configuration_update_event.deployment_id == "d-9"
    # the late report is refused: the request timed out
    with ipc_error(InvalidArgumentsError, "Validation request either timed out or was never"):
        client.send_configuration_validity_report(configuration_validity_report=(
            ConfigurationValidityReport(status="ACCEPTED", deployment_id="d-9")))


def test_a_silent_update_subscriber_only_delays_the_update(connect: Any, server: Any) -> None:
    client = connect("com.example.Silent")
    events: queue.Queue[Any] = queue.Queue()
    client.subscribe_to_component_updates(on_stream_event=events.put)
    # returns once the round's timeout has passed, without a deferral to honour
    server.nucleus.component_updates.wait_until_disruptable("d-5", 0.3, threading.Event())
    assert events.get(timeout=TIMEOUT).pre_update_event.deployment_id == "d-5"
    assert events.empty()
