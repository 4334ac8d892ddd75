"""What a local deployment is asked to do, as ``greengrass-cli deployment create`` takes it:
``--merge NAME=VERSION``, ``--remove NAME``, ``--update-config`` (``{"name": {"MERGE": {...},
"RESET": [...]}}``), a recipe folder and an artifact folder; and the error every deployment step
raises."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..semver import Version


class DeploymentError(ValueError):
    """The deployment can't be made; the message says which component and why."""


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
    run_with: Mapping[str, str] = field(default_factory=dict)
    """name -> runWith.posixUser ("user[:group]"; "" removes it), kept for later deployments
    (componentToRunWithInfo; the nucleus's KernelConfigResolver.updateRunWith)."""


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
