"""accessControl parsing and resource matching, table-driven against the nucleus's rules."""

from __future__ import annotations

import json
import logging

import pytest

from ggic.local.authorization import (
    MQTT_PROXY_SERVICE,
    PUBSUB_SERVICE,
    AccessControl,
    NotAuthorized,
    PolicyError,
    ResourceLookup,
    ResourcePattern,
    authorize,
)

PUBLISH = "aws.greengrass#PublishToTopic"
SUBSCRIBE = "aws.greengrass#SubscribeToTopic"
IOT_PUBLISH = "aws.greengrass#PublishToIoTCore"

STANDARD = ResourceLookup.STANDARD
MQTT = ResourceLookup.MQTT


@pytest.mark.parametrize(
    ("pattern", "resource", "lookup", "expected"),
    [
        # literal resources
        ("local/inference", "local/inference", STANDARD, True),
        ("local/inference", "local/inference2", STANDARD, False),
        ("local/inference", "local", STANDARD, False),
        ("local/inference", "LOCAL/inference", STANDARD, False),
        # '*' matches any characters, '/' included, and none
        ("*", "anything/at/all", STANDARD, True),
        ("*", "x", MQTT, True),
        ("local/*", "local/a/b/c", STANDARD, True),
        ("local/*", "local/", STANDARD, True),
        ("local/*", "local", STANDARD, False),
        ("local/*/result", "local/a/result", STANDARD, True),
        ("local/*/result", "local/a/b/result", STANDARD, True),
        ("local/*/result", "local/a/results", STANDARD, False),
        ("*inference", "local/inference", STANDARD, True),
        ("a*b*c", "aXXbYYc", STANDARD, True),
        ("a*b*c", "aXXcYYb", STANDARD, False),
        # MQTT wildcards are literal for STANDARD lookups (local pub/sub)
        ("local/#", "local/#", STANDARD, True),
        ("local/#", "local/x", STANDARD, False),
        ("local/+/result", "local/+/result", STANDARD, True),
        ("local/+/result", "local/a/result", STANDARD, False),
        # ... and wildcards for MQTT lookups (MQTT proxy)
        ("local/#", "local/x", MQTT, True),
        ("local/#", "local/x/y/z", MQTT, True),
        ("local/#", "local", MQTT, True),
        ("local/#", "localx", MQTT, False),
        ("#", "a/b", MQTT, True),
        ("local/+/result", "local/a/result", MQTT, True),
        ("local/+/result", "local/a/b/result", MQTT, False),
        ("local/+", "local/a", MQTT, True),
        ("local/+", "local/a/b", MQTT, False),
        ("+/result", "x/result", MQTT, True),
        ("+", "x", MQTT, True),
        ("+", "x/y", MQTT, False),
        # '+' or '#' inside a level are ordinary characters even for MQTT lookups
        ("local/a+/x", "local/ab/x", MQTT, False),
        ("local/a+/x", "local/a+/x", MQTT, True),
        ("local/b#", "local/bz", MQTT, False),
        ("local/#/x", "local/a/x", MQTT, False),
        # escapes stand for the literal characters
        ("local/${*}", "local/*", STANDARD, True),
        ("local/${*}", "local/x", STANDARD, False),
        ("price${$}", "price$", STANDARD, True),
        ("what${?}", "what?", STANDARD, True),
        ("what${?}", "whatX", STANDARD, False),
    ],
)
def test_resource_matching(
    pattern: str, resource: str, lookup: ResourceLookup, expected: bool
) -> None:
    assert ResourcePattern(pattern).matches(resource, lookup) is expected


@pytest.mark.parametrize("pattern", ["", "what?", "a${x}", "a${*", "${"])
def test_invalid_resources_are_refused(pattern: str) -> None:
    with pytest.raises(PolicyError):
        ResourcePattern(pattern)


REQUESTER_ACL = {
    PUBSUB_SERVICE: {
        "com.custom.requester:pubsub:1": {
            "policyDescription": "requests out, results in",
            "operations": [PUBLISH],
            "resources": ["local/inference"],
        },
        "com.custom.requester:pubsub:2": {
            "policyDescription": "results",
            "operations": [SUBSCRIBE],
            "resources": ["local/result", "local/result/*"],
        },
    },
    MQTT_PROXY_SERVICE: {
        "com.custom.requester:mqttproxy:1": {
            "operations": [IOT_PUBLISH],
            "resources": ["ggic/+/results/#"],
        }
    },
}


@pytest.mark.parametrize(
    ("service", "operation", "resource", "expected"),
    [
        (PUBSUB_SERVICE, PUBLISH, "local/inference", True),
        (PUBSUB_SERVICE, PUBLISH, "local/result", False),  # subscribe-only topic
        (PUBSUB_SERVICE, SUBSCRIBE, "local/result", True),
        (PUBSUB_SERVICE, SUBSCRIBE, "local/result/abc", True),
        (PUBSUB_SERVICE, SUBSCRIBE, "local/inference", False),
        (PUBSUB_SERVICE, SUBSCRIBE, "local/result/#", True),  # via local/result/*
        (PUBSUB_SERVICE, SUBSCRIBE, "local/#", False),
        (MQTT_PROXY_SERVICE, IOT_PUBLISH, "ggic/dev1/results/a/b", True),  # MQTT-style lookup
        (MQTT_PROXY_SERVICE, IOT_PUBLISH, "ggic/dev1/other", False),
        (MQTT_PROXY_SERVICE, PUBLISH, "ggic/dev1/results/a", False),  # wrong service's operation
        ("aws.greengrass.SecretManager", "aws.greengrass#GetSecretValue", "s", False),
    ],
)
def test_access_control_allows(service: str, operation: str, resource: str, expected: bool) -> None:
    acl = AccessControl.parse("com.custom.requester", REQUESTER_ACL)
    assert acl.allows(service, operation, resource) is expected
    assert acl.problems == ()


def test_star_operation_allows_every_operation_of_that_service_only() -> None:
    acl = AccessControl.parse(
        "c", {PUBSUB_SERVICE: {"p": {"operations": ["*"], "resources": ["local/*"]}}}
    )
    assert acl.allows(PUBSUB_SERVICE, PUBLISH, "local/a")
    assert acl.allows(PUBSUB_SERVICE, SUBSCRIBE, "local/a")
    assert not acl.allows(PUBSUB_SERVICE, PUBLISH, "remote/a")
    assert not acl.allows(MQTT_PROXY_SERVICE, IOT_PUBLISH, "local/a")


def test_policy_keys_are_case_insensitive_and_json_strings_are_parsed() -> None:
    acl = AccessControl.parse(
        "c",
        json.dumps({PUBSUB_SERVICE: {"p": {"Operations": [PUBLISH], "RESOURCES": ["t"]}}}),
    )
    assert acl.allows(PUBSUB_SERVICE, PUBLISH, "t")
    assert acl.policies[PUBSUB_SERVICE][0].policy_id == "p"


def test_no_access_control_allows_nothing() -> None:
    for acl in (AccessControl.parse("c", None), AccessControl.parse("c", {})):
        assert not acl.allows(PUBSUB_SERVICE, PUBLISH, "t")


def test_broken_policies_are_skipped_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="ggic.local.ipc")
    acl = AccessControl.parse(
        "c",
        {
            PUBSUB_SERVICE: {
                "no-operations": {"resources": ["t"]},
                "not-a-map": "nope",
                "bad-resource": {"operations": [PUBLISH], "resources": ["what?", "ok"]},
                "typo": {"operations": ["aws.greengrass#PublishToTopics"], "resources": ["x"]},
            }
        },
    )
    assert acl.allows(PUBSUB_SERVICE, PUBLISH, "ok")  # the valid resource of the policy remains
    assert not acl.allows(PUBSUB_SERVICE, PUBLISH, "what?")
    text = "\n".join(acl.problems)
    assert "no-operations" in text and "Policy operations are missing" in text
    assert "not-a-map" in text
    assert "'?'" in text
    assert "aws.greengrass#PublishToTopics" in text
    assert len(caplog.records) == len(acl.problems) == 4
    unparsable = AccessControl.parse("c", "{not json")
    assert unparsable.policies == {} and unparsable.problems


def test_policy_without_resources_grants_no_resource() -> None:
    acl = AccessControl.parse("c", {PUBSUB_SERVICE: {"p": {"operations": [PUBLISH]}}})
    assert not acl.allows(PUBSUB_SERVICE, PUBLISH, "t")


def test_not_authorized_names_component_operation_resource_and_the_missing_policy() -> None:
    acl = AccessControl.parse("com.custom.requester", REQUESTER_ACL)
    authorize(acl, PUBSUB_SERVICE, PUBLISH, "local/inference")
    with pytest.raises(NotAuthorized) as caught:
        authorize(acl, PUBSUB_SERVICE, PUBLISH, "local/foo")
    error = caught.value
    assert error.message == (
        "Principal com.custom.requester is not authorized to perform "
        "aws.greengrass.ipc.pubsub:aws.greengrass#PublishToTopic on resource local/foo"
    )
    assert error.hint == (
        "com.custom.requester is not authorized to perform aws.greengrass#PublishToTopic on "
        "local/foo: add an aws.greengrass.ipc.pubsub policy with operation "
        "aws.greengrass#PublishToTopic and resource local/foo to its accessControl"
    )


def test_lookup_can_be_forced() -> None:
    acl = AccessControl.parse(
        "c", {PUBSUB_SERVICE: {"p": {"operations": [SUBSCRIBE], "resources": ["a/#"]}}}
    )
    assert not acl.allows(PUBSUB_SERVICE, SUBSCRIBE, "a/b")
    assert acl.allows(PUBSUB_SERVICE, SUBSCRIBE, "a/b", ResourceLookup.MQTT)
