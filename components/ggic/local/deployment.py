"""A local deployment, as ``greengrass-cli deployment create`` makes one.

Inputs mirror the CLI: a recipe folder (any file names), an artifact folder laid out
``<artifactDir>/<ComponentName>/<ComponentVersion>/<file>``, ``--merge NAME=VERSION``,
``--remove NAME`` and ``--update-config`` (``{"name": {"MERGE": {...}, "RESET": [...]}}``).
Root components persist across deployments (previous roots - removed + merged), as do their
configurations: a component's configuration starts from what it had, loses the RESET paths,
gets the recipe's defaults for anything missing (defaults never override a value set by a
deployment or at runtime, but a new default replaces an old default), then the MERGE.

Public components that can't exist locally (``variant.DLR.ImageClassification.ModelStore``)
come from *stand-ins*: a folder holding a recipe (``recipe.yaml``/``.json``, or any recipe
files) and its artifacts beside it, in ``artifacts/``, or in ``artifacts/<name>/<version>/``;
or a folder with ``recipes/`` and ``artifacts/<name>/<version>/`` (GDK's build output). A ZIP
artifact may be given already unpacked, as a folder named like the ZIP without ``.zip``.

Planning resolves the dependency closure (versions checked against every requirement;
the version already deployed is kept when it fits, otherwise the highest that does), selects
each recipe's manifest for this platform, orders components (dependencies first), computes
configurations and interpolates lifecycles. Applying lays files out as the nucleus does::

    <root>/packages/recipes/<name>-<version>.yaml
    <root>/packages/artifacts/<name>/<version>/<file>
    <root>/packages/artifacts-unarchived/<name>/<version>/<zip name without .zip>/...
    <root>/work/<name>/
    <root>/config/deployment.json, configuration.json   (what the next deployment starts from)

No processes and no IPC here: :meth:`DeploymentPlan.component_specs` feeds the Supervisor.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import stat
import time
import uuid
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .interpolation import (
    ComponentPaths,
    ComponentVariables,
    InterpolationContext,
    InterpolationError,
    interpolate,
)
from .lifecycle import ComponentSpec, DependencyCycleError, start_order
from .platform import NoMatchingManifestError, detect_platform, select_manifest
from .recipe import (
    RECIPE_SUFFIXES,
    Artifact,
    ComponentLifecycle,
    Manifest,
    Recipe,
    RecipeError,
    Version,
    VersionRange,
    effective_lifecycle,
    load_recipe,
    parse_lifecycle,
)

logger = logging.getLogger(__name__)

DEFAULT_THING_NAME = "ggic-local-core"
NUCLEUS_COMPONENT = "aws.greengrass.Nucleus"
#: The nucleus version the local runtime claims to be (for VersionRequirements on it).
DEFAULT_NUCLEUS_VERSION = "2.12.0"
DEPLOYMENT_FILE = "deployment.json"
CONFIGURATION_FILE = "configuration.json"
_DEFAULTS_TIMESTAMP = 1  # the nucleus merges recipe defaults with timestamp 1


class DeploymentError(ValueError):
    """The deployment can't be made; the message says which component and why."""


# --- request ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigurationUpdate:
    merge: Mapping[str, Any] = field(default_factory=dict)
    reset: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeploymentRequest:
    recipe_dir: Path | None = None
    artifact_dir: Path | None = None
    merge: Mapping[str, str] = field(default_factory=dict)  # name -> version
    remove: Sequence[str] = ()
    update_config: Mapping[str, ConfigurationUpdate] = field(default_factory=dict)
    stand_ins: Sequence[Path] = ()


def parse_merge_arguments(items: Iterable[str]) -> dict[str, str]:
    """``["a=1.0.0", "b=2.1.0"]`` -> ``{"a": "1.0.0", "b": "2.1.0"}``."""
    merged: dict[str, str] = {}
    for item in items:
        name, sep, version = item.partition("=")
        name, version = name.strip(), version.strip()
        if not sep or not name or not version:
            raise DeploymentError(f"--merge {item!r}: expected NAME=VERSION")
        try:
            Version.parse(version)
        except ValueError as exc:
            raise DeploymentError(f"--merge {item!r}: {exc}") from None
        merged[name] = version
    return merged


def parse_remove_arguments(items: Iterable[str]) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (the CLI takes comma-separated names)."""
    return [n.strip() for item in items for n in item.split(",") if n.strip()]


def parse_update_config(value: str | Path | Mapping[str, Any]) -> dict[str, ConfigurationUpdate]:
    """``--update-config``: a JSON string, a JSON file, or the parsed object.

    ``{"name": {"MERGE": {...}, "RESET": ["/json/pointer", ...]}}``; ``MERGE`` and ``RESET``
    are upper case, as greengrass-cli requires. ``MERGE`` may also be a JSON string.
    """
    document: Any = value
    if isinstance(value, Path) or (isinstance(value, str) and not value.lstrip().startswith("{")):
        path = Path(value)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DeploymentError(f"--update-config: can't read {path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise DeploymentError(f"--update-config: {path} is not JSON: {exc}") from None
    elif isinstance(value, str):
        try:
            document = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DeploymentError(f"--update-config is not JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise DeploymentError("--update-config must map component names to {MERGE, RESET}")
    updates: dict[str, ConfigurationUpdate] = {}
    for name, spec in document.items():
        if not isinstance(spec, Mapping):
            raise DeploymentError(f"--update-config {name}: expected {{\"MERGE\": ..., "
                                  f"\"RESET\": [...]}}")
        unknown = sorted(set(spec) - {"MERGE", "RESET"})
        if unknown:
            raise DeploymentError(f"--update-config {name}: unknown keys {unknown} (only MERGE "
                                  "and RESET, upper case)")
        merge = spec.get("MERGE") or {}
        if isinstance(merge, str):
            try:
                merge = json.loads(merge)
            except json.JSONDecodeError as exc:
                raise DeploymentError(f"--update-config {name}: MERGE is not JSON: {exc}") \
                    from None
        if not isinstance(merge, Mapping):
            raise DeploymentError(f"--update-config {name}: MERGE must be an object")
        reset = spec.get("RESET") or []
        if not isinstance(reset, list) or not all(isinstance(p, str) for p in reset):
            raise DeploymentError(f"--update-config {name}: RESET must be a list of JSON "
                                  "pointers")
        for pointer in reset:
            if pointer and not pointer.startswith("/"):
                raise DeploymentError(f"--update-config {name}: RESET {pointer!r} is not a "
                                      "JSON pointer (it starts with '/')")
        updates[str(name)] = ConfigurationUpdate(dict(merge), tuple(reset))
    return updates


# --- configuration with timestamps ------------------------------------------------------------


class _Leaf:
    __slots__ = ("value", "timestamp")

    def __init__(self, value: Any, timestamp: int) -> None:
        self.value = value
        self.timestamp = timestamp


_Child = Union[_Leaf, dict]  # an interior node is a dict of children


def _find_key(node: dict, key: str) -> str | None:
    """The stored spelling of ``key`` (the nucleus's configuration keys are case-insensitive)."""
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
    """One component's configuration, each value stamped with when it was set (as the nucleus
    does): an older write never replaces a newer one."""

    def __init__(self) -> None:
        self.root: dict = {}

    def merge(self, values: Mapping[str, Any], timestamp: int) -> None:
        self._merge(self.root, values, timestamp)

    def _merge(self, node: dict, values: Mapping[str, Any], timestamp: int) -> None:
        for key, value in values.items():
            key = str(key)
            stored = _find_key(node, key) or key
            current = node.get(stored)
            if isinstance(value, Mapping):
                if not isinstance(current, dict):
                    if current is not None and timestamp < _newest(current):
                        continue
                    current = node[stored] = {}
                self._merge(current, value, timestamp)
            elif current is None or timestamp >= _newest(current):
                node[stored] = _Leaf(copy.deepcopy(value), timestamp)

    def update(self, key_path: Sequence[str], value: Any, timestamp: int) -> None:
        """Set ``value`` at ``key_path`` (IPC UpdateConfiguration): a mapping is merged."""
        if not key_path:
            if not isinstance(value, Mapping):
                raise ValueError("only an object can replace the whole configuration")
            self.merge(value, timestamp)
            return
        node = self.root
        for key in key_path[:-1]:
            stored = _find_key(node, key) or key
            child = node.get(stored)
            if not isinstance(child, dict):
                child = node[stored] = {}
            node = child
        self._merge(node, {key_path[-1]: value}, timestamp)

    def reset(self, pointer: str) -> None:
        """Remove the value at a JSON pointer, so the defaults fill it again."""
        if pointer == "":
            self.root = {}
            return
        tokens = _pointer_tokens(pointer)
        if any(t.isdigit() for t in tokens):
            logger.error("can't RESET %r: resetting an element of a list is not supported "
                         "(as in the nucleus)", pointer)
            return
        node = self.root
        for token in tokens[:-1]:
            child = node.get(_find_key(node, token) or token)
            if not isinstance(child, dict):
                return
            node = child
        stored = _find_key(node, tokens[-1])
        if stored is not None:
            del node[stored]

    def get(self, key_path: Sequence[str]) -> tuple[bool, Any]:
        node: _Child = self.root
        for key in key_path:
            if not isinstance(node, dict):
                return False, None
            stored = _find_key(node, key)
            if stored is None:
                return False, None
            node = node[stored]
        return True, _plain(node)

    def to_dict(self) -> dict[str, Any]:
        return _plain(self.root)

    def newest_timestamp(self) -> int:
        return _newest(self.root)

    def copy(self) -> ConfigTree:
        clone = ConfigTree()
        clone.root = self._copy(self.root)
        return clone

    def _copy(self, node: dict) -> dict:
        return {k: _Leaf(copy.deepcopy(v.value), v.timestamp) if isinstance(v, _Leaf)
                else self._copy(v) for k, v in node.items()}

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
            return _Leaf(item.get("v"), int(item.get("t", _DEFAULTS_TIMESTAMP)))
        tree = cls()
        root = decode(data)
        tree.root = root if isinstance(root, dict) else {}
        return tree


class ConfigurationStore:
    """Every deployed component's configuration; shared with the IPC configuration service."""

    def __init__(self, trees: Mapping[str, ConfigTree] | None = None) -> None:
        self.trees: dict[str, ConfigTree] = dict(trees or {})

    def tree(self, name: str) -> ConfigTree:
        return self.trees.setdefault(name, ConfigTree())

    def to_dict(self, name: str) -> dict[str, Any]:
        return self.trees[name].to_dict() if name in self.trees else {}

    def get(self, name: str, key_path: Sequence[str] = ()) -> tuple[bool, Any]:
        if name not in self.trees:
            return False, None
        return self.trees[name].get(key_path)

    def update(self, name: str, key_path: Sequence[str], value: Any,
               timestamp: int | None = None) -> None:
        stamp = timestamp if timestamp is not None else max(
            int(time.time() * 1000), self.newest_timestamp() + 1)
        self.tree(name).update(key_path, value, stamp)

    def newest_timestamp(self) -> int:
        return max((t.newest_timestamp() for t in self.trees.values()), default=0)

    def copy(self) -> ConfigurationStore:
        return ConfigurationStore({n: t.copy() for n, t in self.trees.items()})

    def save(self, path: Path) -> None:
        _write_json(path, {n: t.to_json() for n, t in sorted(self.trees.items())})

    @classmethod
    def load(cls, path: Path) -> ConfigurationStore:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls({n: ConfigTree.from_json(t) for n, t in data.items()})


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)


# --- where recipes and artifacts come from ----------------------------------------------------


@dataclass(frozen=True)
class RecipeSource:
    recipe: Recipe
    kind: str  # "recipe-dir", "stand-in" or "store"
    artifact_dirs: tuple[Path, ...] = ()  # folders holding the artifact files themselves

    @property
    def path(self) -> Path:
        return Path(self.recipe.source)


def _recipe_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in RECIPE_SUFFIXES)


def scan_recipe_dir(folder: Path) -> list[Recipe]:
    """Every recipe in a folder (``.yaml``, ``.yml``, ``.json``; file names don't matter)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DeploymentError(f"recipe folder {folder} does not exist")
    return [load_recipe(path) for path in _recipe_files(folder)]


def load_stand_in(folder: Path) -> list[RecipeSource]:
    """The recipe(s) and artifact folders of a stand-in folder (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DeploymentError(f"stand-in {folder} is not a folder")
    if (folder / "recipes").is_dir():
        return [RecipeSource(r, "stand-in",
                             (folder / "artifacts" / r.name / r.version,))
                for r in scan_recipe_dir(folder / "recipes")]
    named = [folder / f"recipe{suffix}" for suffix in RECIPE_SUFFIXES]
    files = [p for p in named if p.is_file()] or _recipe_files(folder)
    if not files:
        raise DeploymentError(f"stand-in {folder} has no recipe (recipe.yaml or recipe.json)")
    sources = []
    for path in files:
        recipe = load_recipe(path)
        sources.append(RecipeSource(recipe, "stand-in", (
            folder / "artifacts" / recipe.name / recipe.version, folder / "artifacts", folder)))
    return sources


class ComponentCatalog:
    """Every recipe a deployment may use, by name and version."""

    def __init__(self) -> None:
        self._sources: dict[str, dict[str, RecipeSource]] = {}

    def add(self, source: RecipeSource) -> None:
        recipe = source.recipe
        versions = self._sources.setdefault(recipe.name, {})
        existing = versions.get(recipe.version)
        if existing is not None and existing.kind != "store" and existing.path != source.path:
            raise DeploymentError(
                f"{recipe.name} {recipe.version} is defined twice: {existing.path} and "
                f"{source.path}")
        if existing is None or existing.kind == "store" or source.kind != "store":
            versions[recipe.version] = source

    def versions(self, name: str) -> list[str]:
        return sorted(self._sources.get(name, {}), key=Version.parse, reverse=True)

    def get(self, name: str, version: str) -> RecipeSource | None:
        return self._sources.get(name, {}).get(version)


@dataclass(frozen=True)
class ArtifactSource:
    artifact: Artifact
    path: Path | None  # the file, or None if only an unpacked folder is given
    unpacked_dir: Path | None = None  # a ZIP given already unpacked
    skipped: bool = False  # e.g. docker: images, not files


def _hash_path(digest: Any, path: Path) -> None:
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file():
                digest.update(str(child.relative_to(path)).encode())
                _hash_file(digest, child)
    else:
        _hash_file(digest, path)


def _hash_file(digest: Any, path: Path) -> None:
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)


# --- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedComponent:
    name: str
    version: str
    recipe: Recipe | None  # None for a built-in (the nucleus itself)
    manifest: Manifest | None
    is_root: bool
    dependencies: Mapping[str, str]  # direct dependencies: name -> HARD or SOFT
    configuration: Mapping[str, Any]
    paths: ComponentPaths
    lifecycle: ComponentLifecycle
    lifecycle_raw: Mapping[str, Any]  # interpolated, as written (kept for the next deployment)
    artifacts: tuple[ArtifactSource, ...] = ()
    artifacts_digest: str = ""
    source_kind: str = "store"
    builtin: bool = False
    run_bootstrap: bool = False
    change: str = "new"  # new, reinstall, restart or unchanged (against the last deployment)

    def spec(self) -> ComponentSpec:
        return ComponentSpec(name=self.name, lifecycle=self.lifecycle, work_dir=self.paths.work,
                             version=self.version, dependencies=dict(self.dependencies),
                             run_bootstrap=self.run_bootstrap, builtin=self.builtin)


@dataclass(frozen=True)
class DeploymentPlan:
    deployment_id: str
    timestamp: int
    components: tuple[PlannedComponent, ...]  # dependencies first
    root_components: Mapping[str, str]
    removed: tuple[str, ...]
    configuration: ConfigurationStore

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.components]

    def component(self, name: str) -> PlannedComponent:
        for planned in self.components:
            if planned.name == name:
                return planned
        raise KeyError(f"{name} is not in the deployment")

    def component_specs(self) -> list[ComponentSpec]:
        return [c.spec() for c in self.components]

    def needs_reinstall(self) -> list[str]:
        return [c.name for c in self.components if c.change == "reinstall"]


# --- planning and applying --------------------------------------------------------------------


class LocalDeployer:
    """Plans and applies local deployments under one Greengrass root folder."""

    def __init__(self, root: Path, *, platform: Mapping[str, str] | None = None,
                 thing_name: str = DEFAULT_THING_NAME,
                 builtins: Mapping[str, str] | None = None) -> None:
        self.root = Path(root).absolute()
        self.platform = dict(platform) if platform is not None else detect_platform()
        self.thing_name = thing_name
        self.builtins = dict(builtins) if builtins is not None else {
            NUCLEUS_COMPONENT: DEFAULT_NUCLEUS_VERSION}
        self._state = self._load_state()
        self.configuration = ConfigurationStore.load(self.config_dir / CONFIGURATION_FILE)

    # paths and persisted state

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def recipe_store(self) -> Path:
        return self.root / "packages" / "recipes"

    def paths(self, name: str, version: str) -> ComponentPaths:
        return ComponentPaths.under(self.root, name, version)

    def _load_state(self) -> dict[str, Any]:
        path = self.config_dir / DEPLOYMENT_FILE
        if not path.exists():
            return {"rootComponents": {}, "services": {}}
        return json.loads(path.read_text(encoding="utf-8"))

    @property
    def root_components(self) -> dict[str, str]:
        return dict(self._state.get("rootComponents", {}))

    def deployed_versions(self) -> dict[str, str]:
        return {n: s["version"] for n, s in self._state.get("services", {}).items()}

    # the two steps

    def deploy(self, request: DeploymentRequest) -> DeploymentPlan:
        plan = self.plan(request)
        self.apply(plan)
        return plan

    def plan(self, request: DeploymentRequest) -> DeploymentPlan:
        """Resolve and check everything; writes nothing."""
        catalog = self._catalog(request)
        roots = self.root_components
        for name in request.remove:
            if roots.pop(name, None) is None:
                logger.warning("--remove %s: not a root component of the current deployment",
                               name)
        roots.update(request.merge)
        for name, version in roots.items():
            if name not in self.builtins and catalog.get(name, version) is None:
                available = catalog.versions(name)
                raise DeploymentError(
                    f"{name} {version}: no recipe for this version in the recipe folder, the "
                    f"stand-ins or the component store"
                    + (f" (available: {', '.join(available)})" if available else ""))
        versions = self._resolve(roots, catalog)
        dependencies = {n: self._dependencies(n, versions[n], catalog) for n in versions}
        try:
            order = start_order({n: list(d) for n, d in dependencies.items()})
        except DependencyCycleError as exc:
            raise DeploymentError(f"components depend on each other in a cycle: "
                                  f"{' -> '.join(exc.cycle)}") from exc
        for name in request.update_config:
            if name not in versions:
                raise DeploymentError(f"--update-config {name}: not in the deployment")
            if name not in roots:
                raise DeploymentError(
                    f"--update-config {name}: the nucleus only applies configuration updates "
                    f"to root components; add --merge {name}={versions[name]}")
        timestamp = max(int(time.time() * 1000), self.configuration.newest_timestamp() + 1)
        configuration = self._configure(versions, catalog, request.update_config, timestamp)
        manifests = {n: self._manifest(catalog.get(n, v)) for n, v in versions.items()
                     if n not in self.builtins}
        variables = {n: ComponentVariables(n, self.paths(n, versions[n]),
                                           configuration.to_dict(n)) for n in versions}
        components = tuple(
            self._plan_component(name, versions[name], catalog, manifests.get(name),
                                 dependencies[name], variables, name in roots, request)
            for name in order)
        removed = tuple(sorted(set(self.deployed_versions()) - set(versions)))
        return DeploymentPlan(str(uuid.uuid4()), timestamp, components, dict(roots), removed,
                              configuration)

    def apply(self, plan: DeploymentPlan) -> None:
        """Lay the files out and remember the deployment (for the next one and for restarts)."""
        for component in plan.components:
            if component.builtin:
                continue
            if component.source_kind != "store":
                self._store_recipe(component.recipe)
            if component.change != "unchanged" or not self._laid_out(component):
                # an unchanged component may be running: leave its files alone
                self._lay_out_artifacts(component)
            component.paths.work.mkdir(parents=True, exist_ok=True)
        services = {}
        for component in plan.components:
            if component.builtin:
                continue
            services[component.name] = {
                "version": component.version,
                "lifecycle": component.lifecycle_raw,
                "artifactsDigest": component.artifacts_digest,
                "dependencies": dict(component.dependencies),
            }
        self._state = {"deploymentId": plan.deployment_id, "timestamp": plan.timestamp,
                       "rootComponents": dict(plan.root_components), "services": services}
        _write_json(self.config_dir / DEPLOYMENT_FILE, self._state)
        self.configuration = plan.configuration
        self.save_configuration()

    def save_configuration(self) -> None:
        """Persist :attr:`configuration` (call after runtime updates through IPC)."""
        self.configuration.save(self.config_dir / CONFIGURATION_FILE)

    # planning helpers

    def _catalog(self, request: DeploymentRequest) -> ComponentCatalog:
        catalog = ComponentCatalog()
        if self.recipe_store.is_dir():
            for path in _recipe_files(self.recipe_store):
                try:
                    catalog.add(RecipeSource(load_recipe(path), "store"))
                except RecipeError as exc:
                    logger.warning("component store: ignoring %s", exc)
        try:
            if request.recipe_dir is not None:
                artifact_dir = Path(request.artifact_dir) if request.artifact_dir else None
                for recipe in scan_recipe_dir(Path(request.recipe_dir)):
                    dirs = (artifact_dir / recipe.name / recipe.version,) if artifact_dir else ()
                    catalog.add(RecipeSource(recipe, "recipe-dir", dirs))
            for folder in request.stand_ins:
                for source in load_stand_in(Path(folder)):
                    catalog.add(source)
        except RecipeError as exc:
            raise DeploymentError(str(exc)) from exc
        return catalog

    def _recipe(self, name: str, version: str, catalog: ComponentCatalog) -> Recipe | None:
        if name in self.builtins:
            return None
        source = catalog.get(name, version)
        assert source is not None
        return source.recipe

    def _dependencies(self, name: str, version: str, catalog: ComponentCatalog) -> dict[str, str]:
        recipe = self._recipe(name, version, catalog)
        if recipe is None:
            return {}
        return {d.name: d.dependency_type for d in recipe.dependencies.values()}

    def _choose(self, name: str, requirements: list[tuple[str, VersionRange]],
                catalog: ComponentCatalog) -> str:
        if name in self.builtins:
            candidates = [self.builtins[name]]
        else:
            candidates = catalog.versions(name)
        needed_by = ", ".join(f"{r} (from {d})" for d, r in requirements)
        if not candidates:
            raise DeploymentError(
                f"{name}, needed by {', '.join(d for d, _ in requirements)}: no recipe in the "
                "recipe folder, the stand-ins or the component store (give a stand-in folder "
                "for public components)")
        fitting = [v for v in candidates if all(r.matches(v) for _, r in requirements)]
        if not fitting:
            raise DeploymentError(f"no version of {name} satisfies {needed_by}; available: "
                                  f"{', '.join(candidates)}")
        deployed = self.deployed_versions().get(name)
        return deployed if deployed in fitting else fitting[0]

    def _resolve(self, roots: Mapping[str, str], catalog: ComponentCatalog) -> dict[str, str]:
        """Pick a version for every component in the closure of ``roots``."""
        chosen = dict(roots)
        for _ in range(100):
            requirements: dict[str, list[tuple[str, VersionRange]]] = {}
            seen: list[str] = []
            queue = sorted(roots)
            while queue:
                name = queue.pop(0)
                if name in seen:
                    continue
                seen.append(name)
                if name not in chosen:
                    chosen[name] = self._choose(name, requirements.get(name, []), catalog)
                recipe = self._recipe(name, chosen[name], catalog)
                for dep in (recipe.dependencies.values() if recipe else ()):
                    requirements.setdefault(dep.name, []).append((name, dep.version_requirement))
                    queue.append(dep.name)
            settled = True
            for name, needs in requirements.items():
                unmet = [(d, r) for d, r in needs if not r.matches(chosen[name])]
                if not unmet:
                    continue
                if name in roots or name in self.builtins:
                    source = "root component" if name in roots else "built in"
                    raise DeploymentError(
                        f"{name} {chosen[name]} ({source}) does not satisfy "
                        + ", ".join(f"{d}'s requirement {r}" for d, r in unmet))
                chosen[name] = self._choose(name, needs, catalog)
                settled = False
            chosen = {n: chosen[n] for n in seen}
            if settled:
                return chosen
        raise DeploymentError("component versions did not settle (conflicting requirements)")

    def _manifest(self, source: RecipeSource | None) -> Manifest:
        assert source is not None
        try:
            return select_manifest(source.recipe, self.platform)
        except NoMatchingManifestError as exc:
            raise DeploymentError(str(exc)) from exc

    def _configure(self, versions: Mapping[str, str], catalog: ComponentCatalog,
                   updates: Mapping[str, ConfigurationUpdate], timestamp: int
                   ) -> ConfigurationStore:
        previous = self.configuration
        store = ConfigurationStore()
        for name, version in versions.items():
            recipe = self._recipe(name, version, catalog)
            if recipe is None:
                continue
            tree = previous.trees[name].copy() if name in previous.trees else ConfigTree()
            update = updates.get(name)
            for pointer in update.reset if update else ():
                tree.reset(pointer)
            tree.merge(recipe.default_configuration, _DEFAULTS_TIMESTAMP)
            if update and update.merge:
                tree.merge(update.merge, timestamp)
            store.trees[name] = tree
        return store

    def _plan_component(self, name: str, version: str, catalog: ComponentCatalog,
                        manifest: Manifest | None, dependencies: Mapping[str, str],
                        variables: Mapping[str, ComponentVariables], is_root: bool,
                        request: DeploymentRequest) -> PlannedComponent:
        paths = self.paths(name, version)
        previous = self._state.get("services", {}).get(name)
        if name in self.builtins:
            return PlannedComponent(name, version, None, None, is_root, {}, {}, paths,
                                    ComponentLifecycle(), {}, builtin=True,
                                    change="unchanged" if previous else "new")
        source = catalog.get(name, version)
        assert source is not None and manifest is not None
        recipe = source.recipe
        if recipe.component_type != "aws.greengrass.generic":
            logger.warning("%s is of type %s; the local runtime runs its lifecycle as a generic "
                           "component's", name, recipe.component_type)
        context = InterpolationContext(
            component=variables[name], kernel_root=self.root, thing_name=self.thing_name,
            direct_dependencies=frozenset(dependencies), deployed=variables)
        try:
            raw = interpolate(effective_lifecycle(recipe, manifest), context)
        except InterpolationError as exc:
            raise DeploymentError(f"{recipe.source}: {exc}") from exc
        label = f"{manifest.label}.Lifecycle" if manifest.lifecycle else "Lifecycle"
        try:
            lifecycle = parse_lifecycle(raw, recipe.source, label)
        except RecipeError as exc:
            raise DeploymentError(str(exc)) from exc
        artifacts = tuple(self._find_artifact(source, manifest, artifact, request)
                          for artifact in manifest.artifacts)
        digest = hashlib.sha256()
        for found in artifacts:
            digest.update(found.artifact.file_name.encode())
            for path in (found.path, found.unpacked_dir):
                if path is not None:
                    _hash_path(digest, path)
        change, bootstrap = self._change(previous, version, lifecycle, digest.hexdigest(),
                                         dependencies, recipe)
        return PlannedComponent(
            name=name, version=version, recipe=recipe, manifest=manifest, is_root=is_root,
            dependencies=dict(dependencies), configuration=variables[name].configuration,
            paths=paths, lifecycle=lifecycle, lifecycle_raw=raw, artifacts=artifacts,
            artifacts_digest=digest.hexdigest(), source_kind=source.kind,
            run_bootstrap=bootstrap, change=change)

    @staticmethod
    def _change(previous: Mapping[str, Any] | None, version: str, lifecycle: ComponentLifecycle,
                digest: str, dependencies: Mapping[str, str], recipe: Recipe) -> tuple[str, bool]:
        has_bootstrap = lifecycle.step("Bootstrap") is not None
        if previous is None:
            return "new", has_bootstrap
        old = parse_lifecycle(previous.get("lifecycle", {}), recipe.source)
        if previous.get("version") != version:
            return "reinstall", has_bootstrap
        bootstrap_changed = has_bootstrap and old.step("Bootstrap") != lifecycle.step("Bootstrap")
        if bootstrap_changed or old.step("Install") != lifecycle.step("Install") \
                or previous.get("artifactsDigest") != digest:
            return "reinstall", bootstrap_changed
        if old != lifecycle or dict(previous.get("dependencies", {})) != dict(dependencies):
            return "restart", False
        return "unchanged", False

    def _find_artifact(self, source: RecipeSource, manifest: Manifest, artifact: Artifact,
                       request: DeploymentRequest) -> ArtifactSource:
        recipe = source.recipe
        if artifact.scheme == "docker":
            logger.warning("%s: %s is a Docker image; not pulled locally", recipe.name,
                           artifact.uri)
            return ArtifactSource(artifact, None, skipped=True)
        folders = list(source.artifact_dirs)
        if request.artifact_dir is not None:
            folders.append(Path(request.artifact_dir) / recipe.name / recipe.version)
        paths = self.paths(recipe.name, recipe.version)
        folders.append(paths.artifacts)
        for folder in folders:
            candidate = folder / artifact.file_name
            if candidate.is_file():
                return ArtifactSource(artifact, candidate)
        if artifact.unarchive == "ZIP":
            unpacked_homes = [f for f in folders if f != paths.artifacts] + [paths.decompressed]
            for folder in unpacked_homes:
                candidate = folder / artifact.unarchive_dir_name
                if candidate.is_dir():
                    return ArtifactSource(artifact, None, unpacked_dir=candidate)
        looked = ", ".join(str(f) for f in folders)
        raise DeploymentError(
            f"{recipe.source}: {manifest.label}: artifact {artifact.file_name} of {recipe.name} "
            f"{recipe.version} not found (looked in {looked})")

    # applying helpers

    @staticmethod
    def _laid_out(component: PlannedComponent) -> bool:
        for found in component.artifacts:
            if found.skipped:
                continue
            if found.path is not None and \
                    not (component.paths.artifacts / found.artifact.file_name).is_file():
                return False
            if found.artifact.unarchive == "ZIP" and not (
                    component.paths.decompressed / found.artifact.unarchive_dir_name).is_dir():
                return False
        return True

    def _store_recipe(self, recipe: Recipe | None) -> None:
        assert recipe is not None
        source = Path(recipe.source)
        suffix = source.suffix.lower() if source.suffix.lower() in RECIPE_SUFFIXES else ".yaml"
        target = self.recipe_store / f"{recipe.name}-{recipe.version}{suffix}"
        self.recipe_store.mkdir(parents=True, exist_ok=True)
        for stale in self.recipe_store.glob(f"{recipe.name}-{recipe.version}.*"):
            if stale != target:
                stale.unlink()
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)

    def _lay_out_artifacts(self, component: PlannedComponent) -> None:
        paths = component.paths
        for found in component.artifacts:
            if found.skipped:
                continue
            artifact = found.artifact
            if found.path is not None:
                target = paths.artifacts / artifact.file_name
                if found.path.resolve() != target.resolve():
                    paths.artifacts.mkdir(parents=True, exist_ok=True)
                    if target.exists() or target.is_symlink():
                        target.unlink()
                    shutil.copyfile(found.path, target)
                _set_mode(target, artifact)
            if artifact.unarchive != "ZIP":
                continue
            destination = paths.decompressed / artifact.unarchive_dir_name
            if found.unpacked_dir is not None and \
                    found.unpacked_dir.resolve() == destination.resolve():
                continue
            if destination.exists():
                shutil.rmtree(destination)
            destination.mkdir(parents=True)
            if found.path is not None:
                _unzip(found.path, destination, component.name)
            else:
                shutil.copytree(found.unpacked_dir, destination, dirs_exist_ok=True)
            _set_tree_mode(destination, artifact)


def _mode(artifact: Artifact) -> int:
    """File mode for an artifact's ``Permission`` (never writable: artifacts are read-only)."""
    mode = 0
    read, execute = artifact.permission.read, artifact.permission.execute
    if read == "OWNER" or execute == "OWNER":
        mode |= stat.S_IRUSR
    if read == "ALL" or execute == "ALL":
        mode |= stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    if execute == "OWNER":
        mode |= stat.S_IXUSR
    if execute == "ALL":
        mode |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    return mode


def _set_mode(path: Path, artifact: Artifact) -> None:
    os.chmod(path, _mode(artifact))


def _set_tree_mode(folder: Path, artifact: Artifact) -> None:
    """Unpacked files get the artifact's permission; folders stay listable by all (and
    writable by their owner, so a later deployment can replace them)."""
    mode = _mode(artifact)
    for current, _dirs, files in os.walk(folder):
        os.chmod(current, 0o755)
        for name in files:
            os.chmod(os.path.join(current, name), mode)


def _unzip(archive: Path, destination: Path, component: str) -> None:
    base = destination.resolve()
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                target = (destination / member.filename).resolve()
                if base != target and base not in target.parents:
                    raise DeploymentError(f"{component}: {archive.name} has an entry outside "
                                          f"its folder: {member.filename}")
            zipped.extractall(destination)
    except zipfile.BadZipFile as exc:
        raise DeploymentError(f"{component}: {archive} is not a ZIP file: {exc}") from exc
