"""Component configuration: the store, change events, and the configuration IPC handlers.

Semantics follow the nucleus's ConfigStoreIPCEventStreamAgent:

* GetConfiguration reads any component's configuration (no policy needed). An empty keyPath
  returns the whole configuration, a subtree comes back as a map, a leaf as ``{leaf: value}``;
  a missing key is ``ResourceNotFoundError("Key not found")``.
* UpdateConfiguration merges ``valueToMerge`` into the caller's own configuration at
  ``keyPath`` (created if missing). ``timestamp`` and ``valueToMerge`` are required, the
  top-level ``accessControl`` cannot be changed, and an update older than the last update of
  that key fails with ``FailedUpdateConditionCheckError``.
* SubscribeToConfigurationUpdate (own component or another's) sends one
  ``{"configurationUpdateEvent": {"componentName", "keyPath"}}`` per changed leaf at or below
  the subscribed keyPath (a removed subtree is one event for its root).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .ipc_errors import (
    FailedUpdateConditionCheckError,
    InvalidArgumentsError,
    ResourceNotFoundError,
)

if TYPE_CHECKING:
    from .ipc_operations import OperationContext, OperationResult

log = logging.getLogger("ggic.local.ipc")

KeyPath = tuple[str, ...]
ChangeCallback = Callable[[str, KeyPath], None]
"""``callback(component, changed_key_path)``"""

KEY_NOT_FOUND = "Key not found"
RESTRICTED_TOP_LEVEL_KEYS = ("accessControl",)
CONFIGURATION_EVENT = "aws.greengrass#ConfigurationUpdateEvents"


class ConfigKeyError(KeyError):
    """A component or key path that does not exist."""


def _plain(value: Any) -> Any:
    """Deep copy with every Mapping turned into a dict (JSON-like data only)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return copy.deepcopy(value)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _leaves(value: Any, path: KeyPath) -> Iterator[KeyPath]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    else:
        yield path


def changed_key_paths(
    old: Mapping[str, Any], new: Mapping[str, Any], path: KeyPath = ()
) -> list[KeyPath]:
    """Key paths that differ: each changed or added leaf, and the root of each removed subtree."""
    changes: list[KeyPath] = []
    for key in list(old) + [k for k in new if k not in old]:
        here = path + (key,)
        if key not in new:
            changes.append(here)
        elif key not in old:
            changes.extend(_leaves(new[key], here))
        elif isinstance(old[key], dict) and isinstance(new[key], dict):
            changes.extend(changed_key_paths(old[key], new[key], here))
        elif not _same(old[key], new[key]):
            changes.extend(_leaves(new[key], here))
    return changes


def _deep_merge(target: dict[str, Any], value: Mapping[str, Any]) -> None:
    for key, item in value.items():
        key = str(key)
        if isinstance(item, Mapping) and isinstance(target.get(key), dict):
            _deep_merge(target[key], item)
        else:
            target[key] = _plain(item)


def _find(config: Mapping[str, Any], key_path: Sequence[str]) -> Any:
    node: Any = config
    for key in key_path:
        if not isinstance(node, dict) or key not in node:
            raise ConfigKeyError(KEY_NOT_FOUND)
        node = node[key]
    return node


@dataclass(eq=False)
class _Watcher:
    component: str
    key_path: KeyPath
    callback: ChangeCallback


class ConfigStore:
    """Per-component configuration trees, thread-safe; watchers are called outside the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._configs: dict[str, dict[str, Any]] = {}
        self._modtimes: dict[str, dict[KeyPath, float]] = {}
        self._watchers: list[_Watcher] = []

    def has(self, component: str) -> bool:
        with self._lock:
            return component in self._configs

    def create(self, component: str, configuration: Mapping[str, Any] | None) -> None:
        """Set a component's configuration without change events (registration)."""
        with self._lock:
            self._configs[component] = _plain(configuration or {})
            self._modtimes[component] = {}

    def remove(self, component: str) -> None:
        with self._lock:
            self._configs.pop(component, None)
            self._modtimes.pop(component, None)

    def snapshot(self, component: str) -> dict[str, Any]:
        with self._lock:
            if component not in self._configs:
                raise ConfigKeyError(f"no component named {component!r}")
            return copy.deepcopy(self._configs[component])

    def get(self, component: str, key_path: Sequence[str] = ()) -> Any:
        with self._lock:
            if component not in self._configs:
                raise ConfigKeyError(KEY_NOT_FOUND)
            return copy.deepcopy(_find(self._configs[component], key_path))

    def replace(self, component: str, configuration: Mapping[str, Any]) -> list[KeyPath]:
        """Replace the whole configuration; watchers hear about every changed key path."""
        new = _plain(configuration)
        with self._lock:
            if component not in self._configs:
                raise ConfigKeyError(f"no component named {component!r}")
            old = self._configs[component]
            self._configs[component] = new
            changes = changed_key_paths(old, new)
            watchers = list(self._watchers)
        self._notify(component, changes, watchers)
        return changes

    def merge(
        self,
        component: str,
        key_path: Sequence[str],
        value: Mapping[str, Any],
        timestamp: float | None = None,
    ) -> list[KeyPath]:
        """Merge ``value`` into the map at ``key_path`` (created if missing)."""
        path = tuple(key_path)
        with self._lock:
            if component not in self._configs:
                raise ConfigKeyError(f"no component named {component!r}")
            modtimes = self._modtimes[component]
            if timestamp is not None:
                newest = max(
                    (t for p, t in modtimes.items() if p[: len(path)] == path), default=None
                )
                if newest is not None and timestamp < newest:
                    raise FailedUpdateConditionCheckError(
                        "Proposed timestamp is older than the config's latest modified timestamp"
                    )
            old = self._configs[component]
            new = copy.deepcopy(old)
            parent: dict[str, Any] = new
            for depth, key in enumerate(path):
                child = parent.get(key)
                if not isinstance(child, dict):
                    if depth == len(path) - 1 or child is None:
                        child = {}
                        parent[key] = child
                    else:
                        raise InvalidArgumentsError(
                            f"keyPath {list(path)} runs through the leaf {list(path[: depth + 1])}"
                        )
                parent = child
            _deep_merge(parent, value)
            self._configs[component] = new
            changes = changed_key_paths(old, new)
            if timestamp is not None:
                for changed in changes + [path]:
                    modtimes[changed] = timestamp
            watchers = list(self._watchers)
        self._notify(component, changes, watchers)
        return changes

    def watch(
        self, component: str, key_path: Sequence[str], callback: ChangeCallback
    ) -> Callable[[], None]:
        watcher = _Watcher(component, tuple(key_path), callback)
        with self._lock:
            self._watchers.append(watcher)

        def unwatch() -> None:
            with self._lock:
                if watcher in self._watchers:
                    self._watchers.remove(watcher)

        return unwatch

    @staticmethod
    def _notify(component: str, changes: list[KeyPath], watchers: list[_Watcher]) -> None:
        for watcher in watchers:
            if watcher.component != component:
                continue
            watched = watcher.key_path
            for changed in changes:
                if changed[: len(watched)] == watched:
                    event_path = changed
                elif watched[: len(changed)] == changed:
                    event_path = watched  # an ancestor of the watched key was replaced/removed
                else:
                    continue
                try:
                    watcher.callback(component, event_path)
                except Exception:
                    log.exception("configuration watcher for %s failed", component)


# --- operation handlers -------------------------------------------------------------------------


def _key_path(request: Mapping[str, Any]) -> list[str]:
    key_path = request.get("keyPath") or []
    if not isinstance(key_path, list) or not all(isinstance(key, str) for key in key_path):
        raise InvalidArgumentsError("keyPath must be a list of strings")
    return key_path


def handle_get_configuration(ctx: OperationContext, request: Mapping[str, Any]) -> OperationResult:
    from .ipc_operations import OperationResult

    component = request.get("componentName") or ctx.component
    key_path = _key_path(request)
    try:
        value = ctx.nucleus.config.get(component, key_path)
    except ConfigKeyError:
        raise ResourceNotFoundError(KEY_NOT_FOUND) from None
    if key_path and not isinstance(value, dict):
        value = {key_path[-1]: value}
    return OperationResult({"componentName": component, "value": value})


def handle_update_configuration(
    ctx: OperationContext, request: Mapping[str, Any]
) -> OperationResult:
    from .ipc_operations import OperationResult

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
    if (not key_path and any(key in RESTRICTED_TOP_LEVEL_KEYS for key in value)) or (
        key_path and key_path[0] in RESTRICTED_TOP_LEVEL_KEYS
    ):
        raise InvalidArgumentsError(
            f"Config update is not allowed for following fields {list(RESTRICTED_TOP_LEVEL_KEYS)}"
        )
    try:
        ctx.nucleus.config.merge(ctx.component, key_path, value, float(timestamp))
    except ConfigKeyError:
        raise InvalidArgumentsError(
            f"Component config not found for component {ctx.component}"
        ) from None
    return OperationResult({})


def handle_subscribe_to_configuration_update(
    ctx: OperationContext, request: Mapping[str, Any]
) -> OperationResult:
    from .ipc_operations import OperationResult

    component = request.get("componentName") or ctx.component
    key_path = _key_path(request)
    try:
        ctx.nucleus.config.get(component, key_path)
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
