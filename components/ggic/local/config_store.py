"""The one configuration store of ``ggic local``: every component's configuration, as the
nucleus keeps it in its ``Topics`` tree.

* Keys are case-insensitive and keep the spelling they were first written with (the nucleus's
  ``Topics.children`` is keyed by ``CaseInsensitiveString``; a later write in another case
  updates the same node).
* Every leaf carries the time it was written (epoch milliseconds). A write older than a leaf's
  time leaves that leaf alone (``Topic.withNewerValue``), so merges go leaf by leaf. Recipe
  defaults are written at time 1, deployments at their own time, IPC updates at the caller's.
* Watchers hear of every changed key path, whoever wrote it (a deployment, UpdateConfiguration,
  :meth:`ConfigStore.replace`), outside the lock.
* With a ``path``, every write is saved there (``config/configuration.json``, mode 0600).

The IPC operations (``ipc_config``) and local deployments (``deployment``) both read and write
this one store; neither keeps a copy.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

from .private_files import read_json, write_private_json

log = logging.getLogger("ggic.local.config")

KeyPath = tuple[str, ...]
ChangeCallback = Callable[[str, KeyPath], None]
"""``callback(component, changed_key_path)``"""

DEFAULTS_TIMESTAMP = 1
"""The nucleus merges recipe defaults with timestamp 1, so anything written later wins."""


class ConfigKeyError(KeyError):
    """A component or key path that does not exist."""


class StaleUpdateError(ValueError):
    """An update older than the newest write under its key path (the nucleus answers
    FailedUpdateConditionCheckError)."""


class PathThroughLeafError(ValueError):
    """A key path that runs through a leaf value."""


def now_ms() -> int:
    return int(time.time() * 1000)


# --- one component's tree -----------------------------------------------------------------------


class _Leaf:
    __slots__ = ("value", "timestamp")

    def __init__(self, value: Any, timestamp: int) -> None:
        self.value = value
        self.timestamp = timestamp


_Child = Union[_Leaf, dict]  # an interior node is a dict of children


def find_key(node: Mapping[str, Any], key: str) -> str | None:
    """The stored spelling of ``key`` in ``node`` (keys are case-insensitive), or None."""
    if key in node:
        return key
    lowered = key.lower()
    return next((k for k in node if k.lower() == lowered), None)


def _newest(child: _Child) -> int:
    if isinstance(child, _Leaf):
        return child.timestamp
    return max((_newest(c) for c in child.values()), default=0)


def _plain(child: _Child) -> Any:
    if isinstance(child, _Leaf):
        return copy.deepcopy(child.value)
    return {k: _plain(v) for k, v in child.items()}


def _pointer_tokens(pointer: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


class ConfigTree:
    """One component's configuration, each leaf stamped with when it was written: an older
    write never replaces a newer one. Not thread-safe: :class:`ConfigStore` guards it."""

    def __init__(self) -> None:
        self.root: dict = {}

    @classmethod
    def of(cls, values: Mapping[str, Any], timestamp: int) -> ConfigTree:
        tree = cls()
        tree.merge(values, timestamp)
        return tree

    def merge(self, values: Mapping[str, Any], timestamp: int) -> None:
        self._merge(self.root, values, timestamp)

    def _merge(self, node: dict, values: Mapping[str, Any], timestamp: int) -> None:
        for key, value in values.items():
            key = str(key)
            stored = find_key(node, key) or key
            current = node.get(stored)
            if isinstance(value, Mapping):
                if not isinstance(current, dict):
                    if current is not None and timestamp < _newest(current):
                        continue
                    current = node[stored] = {}
                self._merge(current, value, timestamp)
            elif current is None or timestamp >= _newest(current):
                node[stored] = _Leaf(copy.deepcopy(value), timestamp)

    def node(self, key_path: Sequence[str]) -> tuple[KeyPath, _Child] | None:
        """The stored spelling of ``key_path`` and its node, or None if it does not exist."""
        node: _Child = self.root
        stored_path: list[str] = []
        for key in key_path:
            if not isinstance(node, dict):
                return None
            stored = find_key(node, key)
            if stored is None:
                return None
            stored_path.append(stored)
            node = node[stored]
        return tuple(stored_path), node

    def interior(self, key_path: Sequence[str]) -> dict:
        """The map at ``key_path``, created if missing; a leaf at its end becomes a map (as the
        nucleus's UpdateConfiguration does); a leaf in its middle is an error."""
        node = self.root
        for depth, key in enumerate(key_path):
            stored = find_key(node, key) or key
            child = node.get(stored)
            if isinstance(child, _Leaf) and depth < len(key_path) - 1:
                raise PathThroughLeafError(
                    f"keyPath {list(key_path)} runs through the leaf {list(key_path[: depth + 1])}")
            if not isinstance(child, dict):
                child = node[stored] = {}
            node = child
        return node

    def update(self, key_path: Sequence[str], value: Any, timestamp: int) -> None:
        """Set ``value`` at ``key_path``: a mapping is merged leaf by leaf."""
        if not key_path:
            if not isinstance(value, Mapping):
                raise ValueError("only an object can replace the whole configuration")
            self.merge(value, timestamp)
            return
        parent = self.interior(key_path[:-1])
        self._merge(parent, {key_path[-1]: value}, timestamp)

    def reset(self, pointer: str) -> None:
        """Remove the value at a JSON pointer, so the defaults fill it again."""
        if pointer == "":
            self.root = {}
            return
        tokens = _pointer_tokens(pointer)
        if any(t.isdigit() for t in tokens):
            log.error("can't RESET %r: resetting an element of a list is not supported "
                      "(as in the nucleus)", pointer)
            return
        found = self.node(tokens[:-1])
        if found is None or not isinstance(found[1], dict):
            return
        stored = find_key(found[1], tokens[-1])
        if stored is not None:
            del found[1][stored]

    def to_dict(self) -> dict[str, Any]:
        return _plain(self.root)

    def newest_timestamp(self) -> int:
        return _newest(self.root)

    def copy(self) -> ConfigTree:
        clone = ConfigTree()
        clone.root = _copy_node(self.root)
        return clone

    def to_json(self) -> dict:
        def encode(child: _Child) -> dict:
            if isinstance(child, _Leaf):
                return {"v": child.value, "t": child.timestamp}
            return {"m": {k: encode(v) for k, v in child.items()}}
        return encode(self.root)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConfigTree:
        def decode(item: Mapping[str, Any]) -> _Child:
            if "m" in item:
                return {k: decode(v) for k, v in item["m"].items()}
            return _Leaf(item.get("v"), int(item.get("t", DEFAULTS_TIMESTAMP)))
        tree = cls()
        root = decode(data)
        tree.root = root if isinstance(root, dict) else {}
        return tree


def _copy_node(node: dict) -> dict:
    return {k: _Leaf(copy.deepcopy(v.value), v.timestamp) if isinstance(v, _Leaf)
            else _copy_node(v) for k, v in node.items()}


# --- what changed -------------------------------------------------------------------------------


def _leaves(value: Any, path: KeyPath) -> Iterator[KeyPath]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    else:
        yield path


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


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


def _starts_with(path: KeyPath, prefix: KeyPath) -> bool:
    return len(path) >= len(prefix) and all(
        a.lower() == b.lower() for a, b in zip(path, prefix))


# --- a deployment's writes ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigurationChange:
    """What a deployment does to one component's configuration, in the nucleus's order: start
    from what it has, RESET the pointers, the recipe's defaults fill what is missing (at time 1),
    then MERGE (at the deployment's time)."""

    component: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    reset: tuple[str, ...] = ()
    merge: Mapping[str, Any] = field(default_factory=dict)
    timestamp: int = DEFAULTS_TIMESTAMP

    def apply_to(self, tree: ConfigTree) -> ConfigTree:
        tree = tree.copy()
        for pointer in self.reset:
            tree.reset(pointer)
        tree.merge(self.defaults, DEFAULTS_TIMESTAMP)
        if self.merge:
            tree.merge(self.merge, self.timestamp)
        return tree


@dataclass(eq=False)
class _Watcher:
    component: str
    key_path: KeyPath
    callback: ChangeCallback


# --- the store ----------------------------------------------------------------------------------


class ConfigStore:
    """Every component's configuration tree; thread-safe. See the module docstring."""

    def __init__(self, path: Path | None = None,
                 trees: Mapping[str, ConfigTree] | None = None) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._trees: dict[str, ConfigTree] = dict(trees or {})
        self._watchers: list[_Watcher] = []

    @classmethod
    def load(cls, path: Path) -> ConfigStore:
        """The store saved at ``path`` (empty if there is none); later writes are saved there."""
        data = read_json(path) if path.exists() else {}
        return cls(path, {n: ConfigTree.from_json(t) for n, t in data.items()})

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            data = {n: t.to_json() for n, t in sorted(self._trees.items())}
            write_private_json(self.path, data, indent=2)

    # reading

    def names(self) -> list[str]:
        with self._lock:
            return list(self._trees)

    def has(self, component: str) -> bool:
        with self._lock:
            return component in self._trees

    def to_dict(self, component: str) -> dict[str, Any]:
        """The component's configuration as plain data ({} if it has none)."""
        with self._lock:
            tree = self._trees.get(component)
            return tree.to_dict() if tree is not None else {}

    def snapshot(self, component: str) -> dict[str, Any]:
        with self._lock:
            if component not in self._trees:
                raise ConfigKeyError(f"no component named {component!r}")
            return self._trees[component].to_dict()

    def get(self, component: str, key_path: Sequence[str] = ()) -> tuple[bool, Any]:
        """``(True, value)`` at ``key_path``, or ``(False, None)``."""
        try:
            return True, self.find(component, key_path)[1]
        except ConfigKeyError:
            return False, None

    def find(self, component: str, key_path: Sequence[str] = ()) -> tuple[KeyPath, Any]:
        """The stored spelling of ``key_path`` and its value; ConfigKeyError if missing."""
        with self._lock:
            tree = self._trees.get(component)
            found = tree.node(key_path) if tree is not None else None
            if found is None:
                raise ConfigKeyError("Key not found")
            return found[0], _plain(found[1])

    def newest_timestamp(self) -> int:
        with self._lock:
            return max((t.newest_timestamp() for t in self._trees.values()), default=0)

    def trees(self) -> dict[str, ConfigTree]:
        """Copies of every tree (for planning a deployment without touching the store)."""
        with self._lock:
            return {n: t.copy() for n, t in self._trees.items()}

    # writing

    def create(self, component: str, configuration: Mapping[str, Any] | None,
               timestamp: int | None = None) -> None:
        """Set a component's configuration without change events (registration)."""
        tree = ConfigTree.of(configuration or {}, timestamp or now_ms())
        with self._lock:
            self._trees[component] = tree
            self.save()

    def remove(self, component: str) -> None:
        with self._lock:
            if self._trees.pop(component, None) is not None:
                self.save()

    def replace(self, component: str, configuration: Mapping[str, Any],
                timestamp: int | None = None) -> list[KeyPath]:
        """Replace the whole configuration; watchers hear about every changed key path."""
        tree = ConfigTree.of(configuration, timestamp or now_ms())
        return self._write(component, lambda _old: tree, must_exist=True)

    def update(self, component: str, key_path: Sequence[str], value: Any,
               timestamp: int | None = None) -> list[KeyPath]:
        """Set ``value`` at ``key_path`` (a mapping merges leaf by leaf), written at
        ``timestamp`` (default: now, after every earlier write)."""
        def change(old: ConfigTree) -> ConfigTree:
            new = old.copy()
            stamp = timestamp if timestamp is not None else max(
                now_ms(), self.newest_timestamp() + 1)
            new.update(list(key_path), value, stamp)
            return new
        return self._write(component, change, must_exist=False)

    def merge_update(self, component: str, key_path: Sequence[str], value: Mapping[str, Any],
                     timestamp: int) -> list[KeyPath]:
        """UpdateConfiguration, as ``ConfigStoreIPCEventStreamAgent`` does it: merge ``value``
        into the map at ``key_path`` leaf by leaf at ``timestamp`` (a path that does not exist
        yet is created and written now); leaves written later keep their values. If something
        under ``key_path`` is then newer than ``timestamp``, StaleUpdateError (after the merge,
        as the nucleus checks ``updatedNode.getModtime()`` after ``updateFromMap``)."""
        stale: list[bool] = []

        def change(old: ConfigTree) -> ConfigTree:
            new = old.copy()
            stamp = timestamp if new.node(key_path) is not None else now_ms()
            new.interior(key_path)  # PathThroughLeafError before anything changes
            new.update(list(key_path), dict(value), stamp)
            found = new.node(key_path)
            stale.append(found is not None and stamp < _newest(found[1]))
            return new

        changes = self._write(component, change, must_exist=True)
        if stale and stale[0]:
            raise StaleUpdateError(
                "Proposed timestamp is older than the config's latest modified timestamp")
        return changes

    def apply_deployment(self, changes: Sequence[ConfigurationChange],
                         removed: Sequence[str] = ()) -> None:
        """A deployment's configuration writes, applied to what each component has now (so an
        UpdateConfiguration made while the deployment was planned is kept); the removed
        components' configurations are dropped. Watchers hear of each changed key."""
        for change in changes:
            self._write(change.component, change.apply_to, must_exist=False, save=False)
        with self._lock:
            for name in removed:
                self._trees.pop(name, None)
            self.save()

    def _write(self, component: str, change: Callable[[ConfigTree], ConfigTree], *,
               must_exist: bool, save: bool = True) -> list[KeyPath]:
        with self._lock:
            old = self._trees.get(component)
            if old is None and must_exist:
                raise ConfigKeyError(f"no component named {component!r}")
            old = old or ConfigTree()
            new = change(old)
            self._trees[component] = new
            changes = changed_key_paths(old.to_dict(), new.to_dict())
            if save and changes:
                self.save()
            watchers = [w for w in self._watchers if w.component == component]
        _notify(component, changes, watchers)
        return changes

    def watch(self, component: str, key_path: Sequence[str], callback: ChangeCallback
              ) -> Callable[[], None]:
        """``callback(component, key_path)`` for each changed key at or below ``key_path``
        (matched case-insensitively). Returns a function that stops watching."""
        watcher = _Watcher(component, tuple(key_path), callback)
        with self._lock:
            self._watchers.append(watcher)

        def unwatch() -> None:
            with self._lock:
                if watcher in self._watchers:
                    self._watchers.remove(watcher)

        return unwatch


def _notify(component: str, changes: list[KeyPath], watchers: list[_Watcher]) -> None:
    for watcher in watchers:
        watched = watcher.key_path
        for changed in changes:
            if _starts_with(changed, watched):
                event_path = changed
            elif _starts_with(watched, changed):
                event_path = watched  # an ancestor of the watched key was replaced/removed
            else:
                continue
            try:
                watcher.callback(component, event_path)
            except Exception:
                log.exception("configuration watcher for %s failed", component)
