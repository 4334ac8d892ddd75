"""npm-style version ranges, as the nucleus checks VersionRequirement."""

from __future__ import annotations

import pytest

from ggic.local.recipe import Version, VersionRange


@pytest.mark.parametrize("range_text, version, expected", [
    ("1.2.3", "1.2.3", True),
    ("1.2.3", "1.2.4", False),
    ("=1.2.3", "1.2.3", True),
    (">=2.1.0 <2.2.0", "2.1.0", True),
    (">=2.1.0 <2.2.0", "2.1.9", True),
    (">=2.1.0 <2.2.0", "2.2.0", False),
    (">= 2.1.0 < 2.2.0", "2.1.5", True),
    ("^1.2.3", "1.9.0", True),
    ("^1.2.3", "2.0.0", False),
    ("^1.2.3", "1.2.2", False),
    ("^0.2.3", "0.2.9", True),
    ("^0.2.3", "0.3.0", False),
    ("^0.0.3", "0.0.3", True),
    ("^0.0.3", "0.0.4", False),
    ("^1.x", "1.5.0", True),
    ("^0.x", "0.9.9", True),
    ("^0.x", "1.0.0", False),
    ("~1.2.3", "1.2.9", True),
    ("~1.2.3", "1.3.0", False),
    ("~1.2", "1.2.0", True),
    ("~1", "1.9.9", True),
    ("~1", "2.0.0", False),
    ("1.x", "1.4.2", True),
    ("1.x", "2.0.0", False),
    ("1.2.*", "1.2.7", True),
    ("1", "1.3.0", True),
    ("*", "9.9.9", True),
    ("", "0.0.1", True),
    ("1.0.0 - 2.0.0", "2.0.0", True),
    ("1.0.0 - 2.0.0", "2.0.1", False),
    ("1.0.0 - 2", "2.9.9", True),
    ("1.0.0 - 2.1", "2.2.0", False),
    (">1", "1.9.9", False),
    (">1", "2.0.0", True),
    ("<1.2", "1.1.9", True),
    ("<1.2", "1.2.0", False),
    ("<=1.2", "1.2.9", True),
    ("<=1.2", "1.3.0", False),
    ("1.x || >=3.0.0", "3.1.0", True),
    ("1.x || >=3.0.0", "2.1.0", False),
    ("^1.2.3", "1.3.0-beta.1", False),  # prereleases only match a range naming one
    (">=1.3.0-beta.1 <2.0.0", "1.3.0-beta.2", True),
    (">=1.3.0-beta.1 <2.0.0", "1.4.0-beta.2", False),
    ("^2.0.0", "2.0.0+build.7", True),
])
def test_version_ranges(range_text: str, version: str, expected: bool) -> None:
    assert VersionRange(range_text).matches(version) is expected


@pytest.mark.parametrize("lower, higher", [
    ("1.0.0", "1.0.1"),
    ("1.0.0-alpha", "1.0.0"),
    ("1.0.0-alpha", "1.0.0-alpha.1"),
    ("1.0.0-alpha.1", "1.0.0-alpha.beta"),
    ("1.0.0-beta.2", "1.0.0-beta.11"),
    ("1.0.0-rc.1", "1.0.0"),
    ("1.9.0", "1.10.0"),
])
def test_version_ordering(lower: str, higher: str) -> None:
    assert Version.parse(lower) < Version.parse(higher)


@pytest.mark.parametrize("text", ["1.0", "01.0.0", "1.0.0.0", "v1.0.0", "x"])
def test_invalid_versions_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Version.parse(text)


@pytest.mark.parametrize("text", ["^x.y.z", ">=1.0.0 <abc", "1.0.0 - ?"])
def test_invalid_ranges_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        VersionRange(text)
