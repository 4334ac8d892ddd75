"""Which topics the component may publish to, from its own ``accessControl`` configuration.

A request's ``reply_to`` is only honoured when the component's pub/sub policy lets it
publish there; otherwise the request gets an INVALID_REQUEST error on the result topic,
instead of a result published into an UnauthorizedError and lost.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

PUBSUB_SERVICE = "aws.greengrass.ipc.pubsub"
PUBLISH_OPERATION = "aws.greengrass#PublishToTopic"


def publish_resources(access_control: Any) -> tuple[str, ...]:
    """Resources of every pub/sub policy that allows PublishToTopic."""
    if not isinstance(access_control, Mapping):
        return ()
    policies = access_control.get(PUBSUB_SERVICE)
    if not isinstance(policies, Mapping):
        return ()
    resources: list[str] = []
    for policy in policies.values():
        if not isinstance(policy, Mapping):
            continue
        operations = policy.get("operations") or []
        if PUBLISH_OPERATION in operations or "*" in operations:
            resources.extend(str(r) for r in policy.get("resources") or [])
    return tuple(resources)


def topic_allowed(topic: str, resources: Sequence[str]) -> bool:
    """True if a policy resource matches the topic (``*`` matches anything, as in Greengrass;
    MQTT wildcards in a resource match only themselves)."""
    for resource in resources:
        if resource == topic:
            return True
        if "*" in resource:
            pattern = "".join("[" + c + "]" if c in "?[]" else c for c in resource)
            if fnmatch.fnmatchcase(topic, pattern):
                return True
    return False
