"""IPC authorization from each component's ``accessControl``, following the nucleus's rules.

``accessControl`` maps an IPC service to policies, each with ``operations`` and ``resources``::

    {"aws.greengrass.ipc.pubsub": {
        "com.custom.requester:pubsub:1": {
            "policyDescription": "…",
            "operations": ["aws.greengrass#PublishToTopic"],
            "resources": ["local/inference"]}}}

Rules (from the nucleus's AuthorizationPolicyParser, AuthorizationHandler, AuthorizationModule
and WildcardTrie):

* The component that declares a policy is its principal; policies grant, nothing denies.
* Policy keys are case-insensitive; a policy without operations is skipped (logged).
  ``accessControl`` may also be a JSON string.
* ``"*"`` as an operation allows every operation of that service.
* In a resource, ``*`` matches any characters (including ``/`` and none). ``?`` is not a
  wildcard and must be written ``${?}``; ``${*}``, ``${$}`` and ``${?}`` stand for the literal
  characters. A resource with an unescaped ``?`` or an unknown ``${…}`` is skipped (logged).
* Local pub/sub (``aws.greengrass.ipc.pubsub``) matches resources STANDARD-style: MQTT
  wildcards in a policy resource are literal, so ``local/#`` allows subscribing to the filter
  ``local/#`` but not publishing on ``local/x`` (the documented behaviour; some newer nucleus
  builds match pub/sub resources MQTT-style, which only ever allows more).
* MQTT proxy (``aws.greengrass.ipc.mqttproxy``) matches MQTT-style: a ``+`` level matches one
  level, a last ``/#`` level matches the parent and everything below it.
* Configuration and lifecycle operations on the caller's own component need no policy.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

log = logging.getLogger("ggic.local.ipc")

PUBSUB_SERVICE = "aws.greengrass.ipc.pubsub"
MQTT_PROXY_SERVICE = "aws.greengrass.ipc.mqttproxy"
ANY = "*"

SERVICE_OPERATIONS: Mapping[str, frozenset[str]] = {
    PUBSUB_SERVICE: frozenset({"aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"}),
    MQTT_PROXY_SERVICE: frozenset(
        {"aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"}
    ),
}


class ResourceLookup(Enum):
    STANDARD = "standard"
    """Only ``*`` is a wildcard."""
    MQTT = "mqtt"
    """``*`` plus MQTT ``+``/``#`` levels."""


SERVICE_RESOURCE_LOOKUP: Mapping[str, ResourceLookup] = {
    PUBSUB_SERVICE: ResourceLookup.STANDARD,
    MQTT_PROXY_SERVICE: ResourceLookup.MQTT,
}


class PolicyError(ValueError):
    """An unusable policy resource."""


_ESCAPES = {"${*}": "*", "${$}": "$", "${?}": "?"}
_GLOB = object()


def _tokens(resource: str) -> list[object]:
    """Literal characters (str) and glob markers; escapes resolved, bad escapes refused."""
    if not resource:
        raise PolicyError("Resource cannot be empty")
    tokens: list[object] = []
    pos = 0
    while pos < len(resource):
        char = resource[pos]
        if resource.startswith("${", pos):
            escape = resource[pos : pos + 4]
            if escape not in _ESCAPES:
                raise PolicyError(
                    f"Resource {resource!r} contains an invalid escape sequence. "
                    "You can use ${*}, ${$}, or ${?}"
                )
            tokens.append(_ESCAPES[escape])
            pos += 4
            continue
        if char == "?":
            raise PolicyError(
                f"Resource {resource!r} contains invalid character: '?'. Use an escape sequence: "
                "${?}. The '?' character isn't supported as a wildcard"
            )
        tokens.append(_GLOB if char == "*" else char)
        pos += 1
    return tokens


def _regex(tokens: list[object], lookup: ResourceLookup) -> re.Pattern[str]:
    parts: list[str] = []
    count = len(tokens)
    for index, token in enumerate(tokens):
        if token is _GLOB:
            parts.append(".*")
            continue
        assert isinstance(token, str)
        if lookup is ResourceLookup.MQTT and token in "+#":
            level_start = index == 0 or tokens[index - 1] == "/"
            level_end = index == count - 1 or tokens[index + 1] == "/"
            if token == "+" and level_start and level_end:
                parts.append("[^/]*")
                continue
            if token == "#" and level_start and index == count - 1:
                if index == 0:
                    parts.append(".*")
                else:  # "a/#" also matches "a": make the separator part of the tail
                    parts[-1] = ""
                    parts.append("(?:/.*)?")
                continue
        parts.append(re.escape(token))
    return re.compile("".join(parts), re.DOTALL)


@dataclass(frozen=True)
class ResourcePattern:
    text: str
    _regexes: dict[ResourceLookup, re.Pattern[str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        tokens = _tokens(self.text)
        for lookup in ResourceLookup:
            self._regexes[lookup] = _regex(tokens, lookup)

    def matches(self, resource: str, lookup: ResourceLookup = ResourceLookup.STANDARD) -> bool:
        return self._regexes[lookup].fullmatch(resource) is not None


@dataclass(frozen=True)
class AuthorizationPolicy:
    policy_id: str
    operations: frozenset[str]
    resources: tuple[ResourcePattern, ...] | None
    description: str = ""

    def allows(self, operation: str, resource: str | None, lookup: ResourceLookup) -> bool:
        if operation not in self.operations and ANY not in self.operations:
            return False
        if resource is None:
            return True
        return any(pattern.matches(resource, lookup) for pattern in self.resources or ())


def _lower_keys(mapping: Mapping) -> dict[str, object]:
    return {str(key).lower(): value for key, value in mapping.items()}


def _string_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    raise PolicyError(f"expected a list of strings, got {type(value).__name__}")


@dataclass(frozen=True)
class AccessControl:
    """One component's parsed ``accessControl``: IPC service -> its policies."""

    component: str
    policies: Mapping[str, tuple[AuthorizationPolicy, ...]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    """What was skipped while parsing, in the nucleus's words where it has them."""

    @classmethod
    def parse(cls, component: str, access_control: Mapping | str | None) -> AccessControl:
        if access_control is None:
            return cls(component)
        problems: list[str] = []
        if isinstance(access_control, str):
            try:
                access_control = json.loads(access_control)
            except ValueError as exc:
                message = f"Unable to deserialize access control map for {component}: {exc}"
                log.error(message)
                return cls(component, {}, (message,))
        if not isinstance(access_control, Mapping):
            message = f"accessControl of {component} must be a map, got {type(access_control)}"
            log.error(message)
            return cls(component, {}, (message,))
        services: dict[str, tuple[AuthorizationPolicy, ...]] = {}
        for service, policies in access_control.items():
            if not isinstance(policies, Mapping):
                problems.append(f"{component}: policies for {service} must be a map")
                continue
            parsed = []
            for policy_id, body in policies.items():
                policy = _parse_policy(component, str(service), str(policy_id), body, problems)
                if policy is not None:
                    parsed.append(policy)
            services[str(service)] = tuple(parsed)
        for problem in problems:
            log.error("accessControl: %s", problem)
        return cls(component, services, tuple(problems))

    def allows(
        self,
        service: str,
        operation: str,
        resource: str | None,
        lookup: ResourceLookup | None = None,
    ) -> bool:
        if lookup is None:
            lookup = SERVICE_RESOURCE_LOOKUP.get(service, ResourceLookup.STANDARD)
        return any(
            policy.allows(operation, resource, lookup) for policy in self.policies.get(service, ())
        )


def _parse_policy(
    component: str, service: str, policy_id: str, body: object, problems: list[str]
) -> AuthorizationPolicy | None:
    if not isinstance(body, Mapping):
        problems.append(f"{component}: policy {policy_id} for {service} must be a map")
        return None
    fields = _lower_keys(body)
    try:
        operations = frozenset(_string_list(fields.get("operations")))
        resource_texts = _string_list(fields.get("resources"))
    except PolicyError as exc:
        problems.append(f"{component}: policy {policy_id} for {service}: {exc}")
        return None
    if not operations:
        problems.append(
            f"{component}: policy {policy_id} for {service}: "
            "Policy operations are missing or invalid"
        )
        return None
    known = SERVICE_OPERATIONS.get(service)
    if known is not None:
        unknown = sorted(op for op in operations if op != ANY and op not in known)
        if unknown:
            problems.append(
                f"{component}: policy {policy_id} names operations {unknown} that {service} "
                f"does not have (it has {sorted(known)})"
            )
    resources: list[ResourcePattern] = []
    for text in resource_texts:
        try:
            resources.append(ResourcePattern(text))
        except PolicyError as exc:
            problems.append(f"{component}: policy {policy_id} for {service}: {exc}")
    return AuthorizationPolicy(
        policy_id=policy_id,
        operations=operations,
        resources=tuple(resources) if resource_texts else None,
        description=str(fields.get("policydescription") or ""),
    )


class NotAuthorized(Exception):
    """``message`` is what the caller gets (the nucleus's wording); ``hint`` says what to add."""

    def __init__(self, component: str, service: str, operation: str, resource: str) -> None:
        self.component = component
        self.service = service
        self.operation = operation
        self.resource = resource
        self.message = (
            f"Principal {component} is not authorized to perform {service}:{operation} "
            f"on resource {resource}"
        )
        self.hint = (
            f"{component} is not authorized to perform {operation} on {resource}: add an "
            f"{service} policy with operation {operation} and resource {resource} "
            "to its accessControl"
        )
        super().__init__(self.message)


def authorize(
    access_control: AccessControl,
    service: str,
    operation: str,
    resource: str,
    lookup: ResourceLookup | None = None,
) -> None:
    """Raise :class:`NotAuthorized` unless one of the component's policies allows the call."""
    if not access_control.allows(service, operation, resource, lookup):
        raise NotAuthorized(access_control.component, service, operation, resource)
