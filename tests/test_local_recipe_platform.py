"""Platform attributes as the nucleus reports them, and first-match manifest selection."""

from __future__ import annotations

import json

import pytest

from ggic.local.platform import (
    NoMatchingManifestError,
    detect_platform,
    parse_platform_overrides,
    platform_matches,
    select_manifest,
)
from ggic.local.recipe import parse_recipe

LINUX_AMD64 = {"os": "linux", "architecture": "amd64"}
LINUX_ARM = {"os": "linux", "architecture": "arm", "architecture.detail": "armv7l"}
DARWIN_ARM = {"os": "darwin", "architecture": "aarch64"}


@pytest.mark.parametrize("requirements, platform, expected", [
    (None, LINUX_AMD64, True),
    ({}, LINUX_AMD64, True),
    ({"os": "linux"}, LINUX_AMD64, True),
    ({"os": "linux"}, DARWIN_ARM, False),
    ({"os": "linux", "architecture": "amd64"}, LINUX_ARM, False),
    ({"os": "*"}, DARWIN_ARM, True),
    ({"architecture.detail": "*"}, LINUX_AMD64, True),  # * also matches a missing attribute
    ({"architecture.detail": "armv7l"}, LINUX_AMD64, False),
    ({"architecture.detail": "armv7l"}, LINUX_ARM, True),
    ({"architecture": "/amd64|x86/"}, LINUX_AMD64, True),
    ({"architecture": "/amd64|x86/"}, LINUX_ARM, False),
    ({"architecture": "/amd/"}, LINUX_AMD64, False),  # a regex must match the whole value
    ({"architecture": "/.+/"}, LINUX_AMD64, True),
    ({"architecture.detail": "/.+/"}, LINUX_AMD64, False),  # ...and needs a value
    ({"os": ["darwin", "linux"]}, LINUX_AMD64, True),  # list: alternatives
    ({"os": "all"}, DARWIN_ARM, True),  # legacy wildcard
    ({"com.example.Radio": "lora"}, {**LINUX_AMD64, "com.example.Radio": "lora"}, True),
    ({"com.example.Radio": "lora"}, LINUX_AMD64, False),
    ({"os": "Linux"}, LINUX_AMD64, False),  # labels are case-sensitive
])
def test_platform_matching(requirements, platform, expected) -> None:
    assert platform_matches(requirements, platform) is expected


RECIPE = json.dumps({
    "RecipeFormatVersion": "2020-01-25",
    "ComponentName": "com.example.Multi",
    "ComponentVersion": "1.0.0",
    "Manifests": [
        {"Name": "armv7", "Platform": {"os": "linux", "architecture.detail": "armv7l"},
         "Lifecycle": {"Run": "arm7"}},
        {"Name": "linux", "Platform": {"os": "linux", "architecture": "/amd64|aarch64/"},
         "Lifecycle": {"Run": "linux"}},
        {"Name": "any linux", "Platform": {"os": "linux"}, "Lifecycle": {"Run": "fallback"}},
    ],
})


@pytest.mark.parametrize("platform, expected", [
    (LINUX_ARM, "armv7"),
    (LINUX_AMD64, "linux"),
    ({"os": "linux", "architecture": "aarch64"}, "linux"),
    ({"os": "linux", "architecture": "x86"}, "any linux"),
])
def test_first_matching_manifest_wins(platform, expected) -> None:
    assert select_manifest(parse_recipe(RECIPE, "m.json"), platform).name == expected


def test_no_matching_manifest_is_a_clear_error() -> None:
    with pytest.raises(NoMatchingManifestError, match="no manifest of com.example.Multi 1.0.0"):
        select_manifest(parse_recipe(RECIPE, "m.json"), DARWIN_ARM)


@pytest.mark.parametrize("machine, architecture, detail", [
    ("x86_64", "amd64", None),
    ("AMD64", "amd64", None),
    ("i686", "x86", None),
    ("aarch64", "aarch64", None),
    ("arm64", "aarch64", None),
    ("armv7l", "arm", "armv7l"),
    ("armv6l", "arm", "armv6l"),
    ("riscv64", "unknown", None),
])
def test_architecture_as_the_nucleus_reports_it(machine, architecture, detail) -> None:
    platform = detect_platform(machine=machine)
    assert platform["architecture"] == architecture
    assert platform.get("architecture.detail") == detail
    assert platform["os"] in ("linux", "darwin", "windows", "unknown")


def test_overrides_replace_and_add_attributes() -> None:
    overrides = parse_platform_overrides("architecture=aarch64, com.example.Radio=lora")
    platform = detect_platform(overrides, machine="x86_64")
    assert platform["architecture"] == "aarch64"
    assert platform["com.example.Radio"] == "lora"
    with pytest.raises(ValueError):
        parse_platform_overrides("architecture")
