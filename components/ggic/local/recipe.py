"""Greengrass component recipes: loading (YAML or JSON) into typed, validated objects.

The nucleus reads recipes with Jackson's ``ACCEPT_CASE_INSENSITIVE_PROPERTIES``: recipe keys
(``componentName``, ``MANIFESTS``, ``uri``...) match whatever their case, and lifecycle keys are
matched case-insensitively by its configuration store. Keys are normalised here to their
canonical spelling. Enumerated *values* (``HARD``, ``ZIP``, ``OWNER``...) are case-sensitive
in the nucleus (plain Jackson enums), so they are checked exactly.

Every problem raises :class:`RecipeError` naming the recipe file and the key path.

Also here: npm-style semantic versions and ranges (``VersionRequirement``), as the nucleus
evaluates them (semver4j in NPM mode), and the typed lifecycle of one component.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..semver import Version, VersionRange
from .recipe_lifecycle import (
    ComponentLifecycle,
    LifecycleStep,
    RecipeError,
    canonical_key,
    parse_lifecycle,
)

__all__ = [
    "Artifact", "ComponentDependency", "ComponentLifecycle", "LifecycleStep", "Manifest",
    "Permission", "Recipe", "RecipeError", "Version", "VersionRange", "effective_lifecycle",
    "load_recipe", "parse_lifecycle", "parse_recipe", "recipe_from_document",
]

logger = logging.getLogger(__name__)

RECIPE_FORMAT_VERSION = "2020-01-25"
COMPONENT_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9\-_.]+$")
COMPONENT_NAME_MAX_LENGTH = 128
COMPONENT_VERSION_MAX_LENGTH = 64
COMPONENT_VERSION_MAX_NUMBER = 999999

COMPONENT_TYPES = (
    "aws.greengrass.generic",
    "aws.greengrass.lambda",
    "aws.greengrass.plugin",
    "aws.greengrass.nucleus",
)
DEPENDENCY_TYPES = ("HARD", "SOFT")
UNARCHIVE_TYPES = ("NONE", "ZIP")
PERMISSION_TYPES = ("NONE", "OWNER", "ALL")

# --- the recipe model -------------------------------------------------------------------------


@dataclass(frozen=True)
class ComponentDependency:
    name: str
    version_requirement: VersionRange
    dependency_type: str = "HARD"  # HARD or SOFT


@dataclass(frozen=True)
class Permission:
    read: str = "OWNER"
    execute: str = "NONE"


@dataclass(frozen=True)
class Artifact:
    uri: str
    unarchive: str = "NONE"
    permission: Permission = Permission()
    digest: str | None = None
    algorithm: str | None = None

    @property
    def file_name(self) -> str:
        """The file name: the last segment of the URI (``s3://b/k/x.zip`` -> ``x.zip``)."""
        tail = self.uri.rstrip("/")
        for sep in ("/", ":"):
            tail = tail.rsplit(sep, 1)[-1]
        return tail

    @property
    def scheme(self) -> str:
        return self.uri.split(":", 1)[0].lower() if ":" in self.uri else ""

    @property
    def unarchive_dir_name(self) -> str:
        """The folder a ZIP unpacks to: the file name minus its last extension (as the nucleus)."""
        name = self.file_name
        return name[: name.rindex(".")] if name.find(".") > 0 else name


@dataclass(frozen=True)
class Manifest:
    index: int
    name: str | None = None
    platform: Mapping[str, Any] = field(default_factory=dict)
    lifecycle: Mapping[str, Any] | None = None  # raw, as written; None = not defined
    selections: tuple[str, ...] = ()
    artifacts: tuple[Artifact, ...] = ()

    @property
    def label(self) -> str:
        return f"Manifests[{self.index}]" + (f" ({self.name})" if self.name else "")


@dataclass(frozen=True)
class Recipe:
    name: str
    version: str
    format_version: str = RECIPE_FORMAT_VERSION
    description: str = ""
    publisher: str = ""
    component_type: str = "aws.greengrass.generic"
    dependencies: Mapping[str, ComponentDependency] = field(default_factory=dict)
    default_configuration: Mapping[str, Any] = field(default_factory=dict)
    manifests: tuple[Manifest, ...] = ()
    lifecycle: Mapping[str, Any] = field(default_factory=dict)  # global lifecycle, raw
    source: str = "<recipe>"

    @property
    def identifier(self) -> str:
        return f"{self.name}-{self.version}"


# --- loading ----------------------------------------------------------------------------------

_TOP_KEYS = (
    "RecipeFormatVersion", "ComponentName", "ComponentVersion", "ComponentType",
    "ComponentDescription", "ComponentPublisher", "ComponentSource", "ComponentConfiguration",
    "ComponentDependencies", "Manifests", "Lifecycle",
)
_MANIFEST_KEYS = ("Name", "Platform", "Lifecycle", "Selections", "Artifacts", "Dependencies",
                  "Parameters")
_ARTIFACT_KEYS = ("URI", "Unarchive", "Permission", "Digest", "Algorithm")
_DEPENDENCY_KEYS = ("VersionRequirement", "DependencyType")


def _normalise(raw: Any, known: Sequence[str], source: str, key: str) -> dict[str, Any]:
    """Map a recipe object's keys to their canonical case; warn about (and drop) unknown keys."""
    if not isinstance(raw, Mapping):
        raise RecipeError(source, key, f"must be a mapping, got {type(raw).__name__}")
    out: dict[str, Any] = {}
    for raw_key, value in raw.items():
        canonical = canonical_key(str(raw_key), known)
        where = f"{key}.{raw_key}" if key else str(raw_key)
        if canonical is None:
            logger.warning("%s: %s: unknown recipe key, ignored (as by the nucleus)", source, where)
            continue
        if canonical in out:
            raise RecipeError(source, where,
                              f"duplicate key ({canonical}, keys are case-insensitive)")
        out[canonical] = value
    return out


def _required_str(values: Mapping[str, Any], name: str, source: str, key: str) -> str:
    value = values.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RecipeError(source, key, "is required")
    if not isinstance(value, str):
        raise RecipeError(source, key, f"must be a string, got {value!r}")
    return value.strip()


def _enum(value: Any, allowed: Sequence[str], source: str, key: str) -> str:
    if value not in allowed:
        raise RecipeError(source, key, f"must be one of {', '.join(allowed)} (case-sensitive), "
                                       f"got {value!r}")
    return str(value)


def _parse_version_text(value: Any, source: str, key: str) -> str:
    if not isinstance(value, str):
        raise RecipeError(source, key, f"must be a string (quote it in YAML), got {value!r}")
    try:
        parsed = Version.parse(value)
    except ValueError as exc:
        raise RecipeError(source, key, str(exc)) from None
    if len(value) > COMPONENT_VERSION_MAX_LENGTH:
        raise RecipeError(source, key, f"longer than {COMPONENT_VERSION_MAX_LENGTH} characters")
    if max(parsed.core) > COMPONENT_VERSION_MAX_NUMBER:
        raise RecipeError(source, key, "major, minor and patch can't exceed 6 digits")
    return value.strip()


def _parse_dependencies(raw: Any, source: str) -> dict[str, ComponentDependency]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RecipeError(source, "ComponentDependencies", "must be a mapping of component names")
    deps: dict[str, ComponentDependency] = {}
    for name, spec in raw.items():
        key = f"ComponentDependencies.{name}"
        values = _normalise(spec if spec is not None else {}, _DEPENDENCY_KEYS, source, key)
        requirement = values.get("VersionRequirement")
        if not isinstance(requirement, str) or not requirement.strip():
            raise RecipeError(source, f"{key}.VersionRequirement",
                              "is required (an npm-style range)")
        try:
            version_range = VersionRange(requirement.strip())
        except ValueError as exc:
            raise RecipeError(source, f"{key}.VersionRequirement", str(exc)) from None
        dep_type = _enum(values.get("DependencyType", "HARD"), DEPENDENCY_TYPES, source,
                         f"{key}.DependencyType")
        deps[str(name)] = ComponentDependency(str(name), version_range, dep_type)
    return deps


def _parse_artifact(raw: Any, source: str, key: str) -> Artifact:
    values = _normalise(raw, _ARTIFACT_KEYS, source, key)
    uri = values.get("URI")
    if not isinstance(uri, str) or not uri.strip():
        raise RecipeError(source, f"{key}.URI", "is required")
    unarchive = _enum(values.get("Unarchive", "NONE"), UNARCHIVE_TYPES, source, f"{key}.Unarchive")
    permission = Permission()
    if values.get("Permission") is not None:
        perm = _normalise(values["Permission"], ("Read", "Execute"), source, f"{key}.Permission")
        permission = Permission(
            read=_enum(perm.get("Read", "OWNER"), PERMISSION_TYPES, source,
                       f"{key}.Permission.Read"),
            execute=_enum(perm.get("Execute", "NONE"), PERMISSION_TYPES, source,
                          f"{key}.Permission.Execute"),
        )
    artifact = Artifact(uri=uri.strip(), unarchive=unarchive, permission=permission,
                        digest=values.get("Digest"), algorithm=values.get("Algorithm"))
    if not artifact.file_name:
        raise RecipeError(source, f"{key}.URI", f"has no file name: {uri!r}")
    return artifact


def _parse_platform(raw: Any, source: str, key: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RecipeError(source, key, "Platform must be a mapping of attributes to values")
    for attr, value in raw.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item is not None and not isinstance(item, str):
                raise RecipeError(source, f"{key}.{attr}", f"must be a string, got {item!r}")
            if isinstance(item, str) and len(item) > 2 and item.startswith("/") \
                    and item.endswith("/"):
                try:
                    re.compile(item[1:-1])
                except re.error as exc:
                    raise RecipeError(source, f"{key}.{attr}", f"bad regular expression: {exc}") \
                        from None
    return {str(k): v for k, v in raw.items()}


def _parse_manifest(raw: Any, index: int, source: str) -> Manifest:
    key = f"Manifests[{index}]"
    if raw is None:
        raise RecipeError(source, key, "a manifest can't be empty")
    values = _normalise(raw, _MANIFEST_KEYS, source, key)
    if values.get("Dependencies"):
        logger.warning("%s: %s.Dependencies is ignored by the nucleus; use ComponentDependencies",
                       source, key)
    lifecycle = values.get("Lifecycle")
    if lifecycle is not None and not isinstance(lifecycle, Mapping):
        raise RecipeError(source, f"{key}.Lifecycle", "must be a mapping")
    selections = values.get("Selections") or []
    if not isinstance(selections, list) or not all(isinstance(s, str) for s in selections):
        raise RecipeError(source, f"{key}.Selections", "must be a list of selection keys")
    artifacts = values.get("Artifacts") or []
    if not isinstance(artifacts, list):
        raise RecipeError(source, f"{key}.Artifacts", "must be a list")
    parsed = tuple(_parse_artifact(a, source, f"{key}.Artifacts[{i}]")
                   for i, a in enumerate(artifacts))
    names = [a.file_name for a in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RecipeError(source, f"{key}.Artifacts",
                          f"artifact file names must be unique in a manifest: {duplicates}")
    name = values.get("Name")
    return Manifest(
        index=index,
        name=str(name) if name is not None else None,
        platform=_parse_platform(values.get("Platform"), source, f"{key}.Platform"),
        lifecycle=dict(lifecycle) if lifecycle else None,
        selections=tuple(selections),
        artifacts=parsed,
    )


def recipe_from_document(document: Any, source: str = "<recipe>") -> Recipe:
    """Build a :class:`Recipe` from an already-parsed YAML/JSON document."""
    values = _normalise(document, _TOP_KEYS, source, "")
    fmt = values.get("RecipeFormatVersion")
    if str(fmt) != RECIPE_FORMAT_VERSION:
        raise RecipeError(source, "RecipeFormatVersion", f"must be '{RECIPE_FORMAT_VERSION}', "
                                                         f"got {fmt!r}")
    name = _required_str(values, "ComponentName", source, "ComponentName")
    if len(name) > COMPONENT_NAME_MAX_LENGTH or not COMPONENT_NAME_PATTERN.match(name):
        raise RecipeError(source, "ComponentName",
                          f"{name!r}: only letters, digits, '-', '.' and '_' (at most 128)")
    if "ComponentVersion" not in values:
        raise RecipeError(source, "ComponentVersion", "is required")
    version = _parse_version_text(values["ComponentVersion"], source, "ComponentVersion")
    component_type = _enum(values.get("ComponentType", "aws.greengrass.generic"), COMPONENT_TYPES,
                           source, "ComponentType")
    default_configuration: dict[str, Any] = {}
    if values.get("ComponentConfiguration") is not None:
        conf = _normalise(values["ComponentConfiguration"], ("DefaultConfiguration",), source,
                          "ComponentConfiguration")
        default = conf.get("DefaultConfiguration")
        if default is not None and not isinstance(default, Mapping):
            raise RecipeError(source, "ComponentConfiguration.DefaultConfiguration",
                              "must be a mapping")
        default_configuration = dict(default or {})
    manifests_raw = values.get("Manifests")
    if not manifests_raw:
        raise RecipeError(source, "Manifests", "at least one manifest is required "
                                               "(the nucleus refuses a recipe without)")
    if not isinstance(manifests_raw, list):
        raise RecipeError(source, "Manifests", "must be a list")
    manifests = tuple(_parse_manifest(m, i, source) for i, m in enumerate(manifests_raw))
    lifecycle = values.get("Lifecycle") or {}
    if not isinstance(lifecycle, Mapping):
        raise RecipeError(source, "Lifecycle", "must be a mapping")
    description = values.get("ComponentDescription")
    publisher = values.get("ComponentPublisher")
    recipe = Recipe(
        name=name,
        version=version,
        description=str(description) if description is not None else "",
        publisher=str(publisher) if publisher is not None else "",
        component_type=component_type,
        dependencies=_parse_dependencies(values.get("ComponentDependencies"), source),
        default_configuration=default_configuration,
        manifests=manifests,
        lifecycle=dict(lifecycle),
        source=source,
    )
    _validate_lifecycles(recipe)
    return recipe


def _validate_lifecycles(recipe: Recipe) -> None:
    """Type every manifest's effective lifecycle once, so errors surface at load time."""
    for manifest in recipe.manifests:
        key = f"{manifest.label}.Lifecycle" if manifest.lifecycle else "Lifecycle"
        parse_lifecycle(effective_lifecycle(recipe, manifest), recipe.source, key)


# --- global lifecycle and selection keys --------------------------------------------------------

ALL_SELECTION = "all"


def _filter_selected(value: Any, keywords: set[str], selectors: Sequence[str]) -> Any:
    """The nucleus's selection filter: at any level, a mapping whose keys include a selection
    keyword keeps only the first selected branch (the manifest's selections in order, then
    ``all``); other keys at that level are ignored."""
    if not isinstance(value, Mapping):
        return value
    if any(k in keywords for k in value):
        ignored = [k for k in value if k not in keywords]
        if ignored:
            logger.warning("lifecycle section mixes selection keys and other keys; "
                           "the other keys are ignored (as by the nucleus): %s", ignored)
        chosen = next((value[s] for s in selectors if value.get(s) is not None), None)
        if chosen is None:
            chosen = value.get(ALL_SELECTION)
        return None if chosen is None else _filter_selected(chosen, keywords, selectors)
    out = {}
    for key, child in value.items():
        filtered = _filter_selected(child, keywords, selectors)
        if filtered is not None:
            out[key] = filtered
    return out


def effective_lifecycle(recipe: Recipe, manifest: Manifest) -> dict[str, Any]:
    """The raw lifecycle the nucleus uses with ``manifest``: the manifest's own lifecycle if it
    defines one, else the global ``Lifecycle`` filtered by the manifest's ``Selections``."""
    if manifest.lifecycle:
        return dict(manifest.lifecycle)
    keywords = {ALL_SELECTION}
    for m in recipe.manifests:
        keywords.update(m.selections)
    filtered = _filter_selected(recipe.lifecycle, keywords, list(manifest.selections))
    if not filtered:
        if recipe.lifecycle:
            logger.warning("%s: the global lifecycle has no section for %s's selections %s",
                           recipe.source, manifest.label, list(manifest.selections))
        return {}
    return dict(filtered)


# YAML timestamps stay strings (as Jackson reads them): `RecipeFormatVersion: 2020-01-25`
_yaml_loader: Any = None


def _yaml_load(text: str) -> Any:
    global _yaml_loader
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is in the `local` extra
        raise RecipeError("<yaml>", "", "PyYAML is needed for YAML recipes: "
                                        "pip install 'ggic[local]'") from None
    if _yaml_loader is None:
        class _RecipeLoader(yaml.SafeLoader):
            pass

        _RecipeLoader.yaml_implicit_resolvers = {
            first: [(tag, regexp) for tag, regexp in resolvers
                    if tag != "tag:yaml.org,2002:timestamp"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        _yaml_loader = _RecipeLoader
    return yaml.load(text, Loader=_yaml_loader)  # noqa: S506 - a SafeLoader subclass


def parse_recipe(text: str, source: str = "<recipe>", fmt: str | None = None) -> Recipe:
    """Parse recipe text. ``fmt`` is ``"json"`` or ``"yaml"``; None tries JSON, then YAML."""
    document: Any
    if fmt == "json" or (fmt is None and text.lstrip().startswith("{")):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            if fmt == "json":
                raise RecipeError(source, "", f"invalid JSON: {exc}") from None
            document = _parse_yaml_text(text, source)
    else:
        document = _parse_yaml_text(text, source)
    if not isinstance(document, Mapping):
        raise RecipeError(source, "", "a recipe must be a mapping at the top level")
    return recipe_from_document(document, source)


def _parse_yaml_text(text: str, source: str) -> Any:
    try:
        return _yaml_load(text)
    except RecipeError:
        raise
    except Exception as exc:  # yaml.YAMLError and its many subclasses
        raise RecipeError(source, "", f"invalid YAML: {exc}") from None


RECIPE_SUFFIXES = (".yaml", ".yml", ".json")


def load_recipe(path: Path | str) -> Recipe:
    """Load a recipe file (``.json`` as JSON, ``.yaml``/``.yml`` as YAML, others sniffed)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(str(path), "", f"can't read recipe: {exc}") from None
    suffix = path.suffix.lower()
    fmt = "json" if suffix == ".json" else "yaml" if suffix in (".yaml", ".yml") else None
    return parse_recipe(text, str(path), fmt)
