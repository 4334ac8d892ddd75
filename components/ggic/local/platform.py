"""Platform attributes as the nucleus reports them, and manifest selection.

The nucleus describes its device with ``os`` (``linux``, ``darwin``, ``windows``),
``architecture`` (``amd64``, ``x86``, ``arm``, ``aarch64``) and, on 32-bit ARM only,
``architecture.detail`` (``armv6l``/``armv7l``/``armv8l`` from ``uname -m``); its
``platformOverride`` configuration adds or replaces attributes. A recipe uses the *first*
manifest whose ``Platform`` the device matches. Platform values are exact labels, ``*`` (any
value, even a missing one), ``/regex/`` (a full match), or a list of alternatives.
"""

from __future__ import annotations

import os
import platform as _host
import re
import sys
from collections.abc import Mapping
from typing import Any

from .recipe import Manifest, Recipe

OS_KEY = "os"
ARCHITECTURE_KEY = "architecture"
ARCHITECTURE_DETAIL_KEY = "architecture.detail"
UNKNOWN = "unknown"
_SIMPLE_LABEL = re.compile(r"^[a-zA-Z0-9]")


class NoMatchingManifestError(LookupError):
    """No manifest of a recipe matches the platform (the nucleus then refuses the deployment)."""

    def __init__(self, recipe: Recipe, platform: Mapping[str, str]) -> None:
        self.recipe = recipe
        self.platform = dict(platform)
        wanted = "; ".join(f"{m.label}: {dict(m.platform) or 'any'}" for m in recipe.manifests)
        super().__init__(f"{recipe.source}: no manifest of {recipe.name} {recipe.version} matches "
                         f"this platform {self.platform} (manifests: {wanted})")


def _detect_os() -> str:
    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform == "darwin":
        return "darwin"
    if os.path.exists("/proc"):
        return "linux"
    return UNKNOWN


def _normalise_architecture(machine: str) -> str:
    machine = machine.lower()
    if machine in ("x86_64", "amd64"):
        return "amd64"
    if machine in ("i386", "i486", "i586", "i686", "x86"):
        return "x86"
    if machine in ("aarch64", "arm64"):
        return "aarch64"
    if machine.startswith("arm"):
        return "arm"
    return UNKNOWN


def detect_platform(overrides: Mapping[str, str] | None = None,
                    machine: str | None = None) -> dict[str, str]:
    """This machine's platform attributes, as the nucleus would report them.

    ``overrides`` replaces or adds attributes (the nucleus's ``platformOverride``): tests use it
    to pretend to be another device. ``machine`` stands in for ``uname -m``.
    """
    machine = (machine or _host.machine() or "").lower()
    attributes = {OS_KEY: _detect_os(), ARCHITECTURE_KEY: _normalise_architecture(machine)}
    if attributes[OS_KEY] != "windows" and machine in ("armv6l", "armv7l", "armv8l"):
        attributes[ARCHITECTURE_DETAIL_KEY] = machine
    for key, value in (overrides or {}).items():
        if isinstance(value, str):  # as the nucleus: only string overrides count
            attributes[str(key)] = value
    return attributes


def parse_platform_overrides(text: str) -> dict[str, str]:
    """``"os=linux,architecture=aarch64"`` -> ``{"os": "linux", "architecture": "aarch64"}``."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"platform override {item!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _field_matches(name: str, label: str | None, template: Any) -> bool:
    if isinstance(template, list):  # alternatives
        return any(_field_matches(name, label, t) for t in template)
    if template is None:
        return label is None
    if template == "*":
        return True  # any value, and also no value
    if label is None or not isinstance(template, str):
        return False
    if template == "//":
        return True
    if len(template) > 2 and template.startswith("/") and template.endswith("/"):
        return re.fullmatch(template[1:-1], label) is not None
    if name in (OS_KEY, ARCHITECTURE_KEY) and template in ("all", "any"):
        return True  # legacy wildcards the nucleus still honours
    if not _SIMPLE_LABEL.match(template):
        return False  # reserved syntax
    return template == label


def platform_matches(requirements: Mapping[str, Any] | None, platform: Mapping[str, str]) -> bool:
    """Whether a manifest's ``Platform`` section matches the device's attributes."""
    if not requirements:
        return True
    return all(_field_matches(k, platform.get(k), v) for k, v in requirements.items())


def select_manifest(recipe: Recipe, platform: Mapping[str, str]) -> Manifest:
    """The first manifest of ``recipe`` that matches ``platform``."""
    for manifest in recipe.manifests:
        if platform_matches(manifest.platform, platform):
            return manifest
    raise NoMatchingManifestError(recipe, platform)
