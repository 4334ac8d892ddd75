"""The stand-in for AWS IoT Core's broker matches as MQTT (and AWS IoT Core) do, not as the
nucleus's local pub/sub trie: unit tests of our own matching rules."""

from __future__ import annotations

import pytest

from ggic.local.iotcore_broker import TopicFilterError, check_mqtt_filter, mqtt_matches


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), [
    ("a/#", "a", True),  # MQTT 4.7.1.2: '#' also matches the parent level
    ("a/#", "a/b/c", True),
    ("a/+", "a/b", True),
    ("a/+", "a/b/c", False),
    ("+/b", "/b", True),  # an empty first level is a level
    ("#", "$aws/things/x/shadow", False),  # wildcards don't match $-topics at the first level
    ("$aws/things/+/shadow", "$aws/things/x/shadow", True),
    ("a/b", "a/b/", False),  # a trailing '/' is another (empty) level
    ("a/b/", "a/b/", True),
])
def test_mqtt_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert mqtt_matches(topic_filter, topic) is expected


@pytest.mark.parametrize("topic_filter", ["a/#/c", "a/b#", "a+/b", ""])
def test_filters_the_broker_refuses(topic_filter: str) -> None:
    with pytest.raises(TopicFilterError):
        check_mqtt_filter(topic_filter)
