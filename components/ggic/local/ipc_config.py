"""The configuration IPC operations, a view over the one :class:`~config_store.ConfigStore`.

Semantics follow the nucleus's ``ConfigStoreIPCEventStreamAgent``:

* GetConfiguration reads any component's configuration (no policy needed). An empty keyPath
  returns the whole configuration, a subtree comes back as a map, a leaf as ``{leaf: value}``
  (under the key's stored spelling); a missing key is ``ResourceNotFoundError("Key not found")``.
  Keys match case-insensitively, as the nucleus's ``Topics`` do.
* UpdateConfiguration merges ``valueToMerge`` into the caller's own configuration at
  ``keyPath`` (created if missing) leaf by leaf at the request's ``timestamp``: a leaf written
  later (by a deployment or an earlier update) keeps its value, and the call then fails with
  ``FailedUpdateConditionCheckError``. ``timestamp`` and ``valueToMerge`` are required and the
  top-level ``accessControl`` cannot be changed.
* SubscribeToConfigurationUpdate (own component or another's) sends one
  ``{"configurationUpdateEvent": {"componentName", "keyPath"}}`` per changed leaf at or below
  the subscribed keyPath (a removed subtree is one event for its root), whoever changed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config_store import ConfigKeyError, KeyPath, PathThroughLeafError, StaleUpdateError
from .ipc_errors import (
    FailedUpdateConditionCheckError,
    InvalidArgumentsError,
    ResourceNotFoundError,
)
from .ipc_types import OperationContext, OperationResult

KEY_NOT_FOUND = "Key not found"
RESTRICTED_TOP_LEVEL_KEYS = ("accessControl",)
CONFIGURATION_EVENT = "aws.greengrass#ConfigurationUpdateEvents"


def _key_path(request: Mapping[str, Any]) -> list[str]:
    key_path = request.get("keyPath") or []
    if not isinstance(key_path, list) or not all(isinstance(key, str) for key in key_path):
        raise InvalidArgumentsError("keyPath must be a list of strings")
    return key_path


def handle_get_configuration(ctx: OperationContext, request: Mapping[str, Any]) -> OperationResult:
    component = request.get("componentName") or ctx.component
    key_path = _key_path(request)
    try:
        stored_path, value = ctx.nucleus.config.find(component, key_path)
    except ConfigKeyError:
        raise ResourceNotFoundError(KEY_NOT_FOUND) from None
    if stored_path and not isinstance(value, dict):
        value = {stored_path[-1]: value}
    return OperationResult({"componentName": component, "value": value})


def handle_update_configuration(
    ctx: OperationContext, request: Mapping[str, Any]
) -> OperationResult:
    key_path = _key_path(request)
    timestamp = request.get("timestamp")
    if timestamp is None:
        raise InvalidArgumentsError("Timestamp is required")
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        raise InvalidArgumentsError("timestamp must be a number (epoch seconds)")
    value = request.get("valueToMerge")
    if value is None:
        raise InvalidArgumentsError("ValueToMerge is required")
    if not isinstance(value, Mapping):
        raise InvalidArgumentsError("valueToMerge must be a map")
    restricted = {key.lower() for key in RESTRICTED_TOP_LEVEL_KEYS}
    if (not key_path and any(str(key).lower() in restricted for key in value)) or (
        key_path and key_path[0].lower() in restricted
    ):
        raise InvalidArgumentsError(
            f"Config update is not allowed for following fields {list(RESTRICTED_TOP_LEVEL_KEYS)}"
        )
    try:
        # the SDK sends epoch seconds; the nucleus compares epoch milliseconds
        ctx.nucleus.config.merge_update(
            ctx.component, key_path, value, int(round(float(timestamp) * 1000))
        )
    except ConfigKeyError:
        raise InvalidArgumentsError(
            f"Component config not found for component {ctx.component}"
        ) from None
    except PathThroughLeafError as exc:
        raise InvalidArgumentsError(str(exc)) from None
    except StaleUpdateError as exc:
        raise FailedUpdateConditionCheckError(str(exc)) from None
    return OperationResult({})


def handle_subscribe_to_configuration_update(
    ctx: OperationContext, request: Mapping[str, Any]
) -> OperationResult:
    component = request.get("componentName") or ctx.component
    key_path = _key_path(request)
    try:
        ctx.nucleus.config.find(component, key_path)
    except ConfigKeyError:
        raise ResourceNotFoundError(KEY_NOT_FOUND) from None
    stream = ctx.stream

    def on_change(changed_component: str, changed_path: KeyPath) -> None:
        event = {
            "configurationUpdateEvent": {
                "componentName": changed_component,
                "keyPath": list(changed_path),
            }
        }
        stream.send_json_event(event)

    def open_subscription() -> None:
        stream.on_close(ctx.nucleus.config.watch(component, key_path, on_change))

    return OperationResult({}, on_stream_open=open_subscription)
