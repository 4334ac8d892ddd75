from __future__ import annotations

import pytest

from ggic.classifier.topic_policy import publish_resources, topic_allowed

ACCESS = {
    "aws.greengrass.ipc.pubsub": {
        "c:pubsub:1": {"operations": ["aws.greengrass#SubscribeToTopic"],
                       "resources": ["local/inference"]},
        "c:pubsub:2": {"operations": ["aws.greengrass#PublishToTopic"],
                       "resources": ["local/result", "replies/*", "literal/#"]},
    },
    "aws.greengrass.ipc.mqttproxy": {
        "c:mqttproxy:1": {"operations": ["aws.greengrass#PublishToIoTCore"],
                          "resources": ["anything"]}},
}


def test_only_publish_policies_count():
    assert publish_resources(ACCESS) == ("local/result", "replies/*", "literal/#")
    assert publish_resources(None) == ()


@pytest.mark.parametrize("topic, allowed", [
    ("local/result", True), ("replies/a", True), ("replies/a/b", True),
    ("local/inference", False), ("literal/#", True), ("literal/x", False), ("anything", False),
])
def test_topic_allowed(topic, allowed):
    assert topic_allowed(topic, publish_resources(ACCESS)) is allowed
