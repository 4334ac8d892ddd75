"""Semantic versions and npm-style version ranges, as Greengrass uses them: strict
``MAJOR.MINOR.PATCH[-pre][+build]`` versions (``ComponentVersion``), ordered as semver 2.0.0
says, and ranges (``VersionRequirement``: ``^1.2.0``, ``>=2.1.0 <2.2.0``, ``1.x || ~2.3``).
The one version parser for ``ggic.local`` and ``ggic.cloud``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering


def is_version(text: str) -> bool:
    """True if ``text`` is a strict semantic version."""
    return bool(_VERSION_RE.match(text.strip()))


_VERSION_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


@total_ordering
@dataclass(frozen=True)
class Version:
    """A strict semantic version (``MAJOR.MINOR.PATCH[-pre][+build]``)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION_RE.match(text.strip())
        if not match:
            raise ValueError(f"not a semantic version (MAJOR.MINOR.PATCH): {text!r}")
        pre = tuple(match.group(4).split(".")) if match.group(4) else ()
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3)), pre,
                   match.group(5) or "")

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def _key(self) -> tuple:
        if not self.prerelease:
            return (self.core, (1,))
        idents = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.core, (0, idents))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + self.build
        return text


@dataclass(frozen=True)
class _Comparator:
    op: str  # one of < <= > >= =
    version: Version

    def test(self, version: Version) -> bool:
        if self.op == "<":
            return version < self.version
        if self.op == "<=":
            return version <= self.version
        if self.op == ">":
            return version > self.version
        if self.op == ">=":
            return version >= self.version
        return version == self.version


_PARTIAL_RE = re.compile(
    r"^v?(?P<major>[xX*]|0|[1-9]\d*)"
    r"(?:\.(?P<minor>[xX*]|0|[1-9]\d*)"
    r"(?:\.(?P<patch>[xX*]|0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?$"
)
_OPERATORS = ("<=", ">=", "<", ">", "=", "~>", "~", "^")


def _is_x(part: str | None) -> bool:
    return part is None or part in ("x", "X", "*")


def _lowest(major: int, minor: int = 0, patch: int = 0) -> Version:
    """The lowest version of a release line (``X.Y.Z-0``): an exclusive upper bound."""
    return Version(major, minor, patch, ("0",))


class _Partial:
    def __init__(self, text: str) -> None:
        match = _PARTIAL_RE.match(text)
        if not match:
            raise ValueError(f"not a version or partial version: {text!r}")
        self.major = None if _is_x(match.group("major")) else int(match.group("major"))
        minor = match.group("minor")
        patch = match.group("patch")
        self.minor = None if self.major is None or _is_x(minor) else int(minor)
        self.patch = None if self.minor is None or _is_x(patch) else int(patch)
        pre = match.group("pre")
        self.prerelease = tuple(pre.split(".")) if pre and self.patch is not None else ()

    def floor(self) -> Version:
        return Version(self.major or 0, self.minor or 0, self.patch or 0, self.prerelease)


def _desugar(op: str, text: str) -> list[_Comparator]:
    p = _Partial(text)
    if op in ("~", "~>"):
        if p.major is None:
            return [_Comparator(">=", Version(0, 0, 0))]
        if p.minor is None:
            return [_Comparator(">=", p.floor()), _Comparator("<", _lowest(p.major + 1))]
        return [_Comparator(">=", p.floor()), _Comparator("<", _lowest(p.major, p.minor + 1))]
    if op == "^":
        if p.major is None:
            return [_Comparator(">=", Version(0, 0, 0))]
        if p.major > 0 or p.minor is None:
            return [_Comparator(">=", p.floor()), _Comparator("<", _lowest(p.major + 1))]
        if p.minor > 0 or p.patch is None:
            return [_Comparator(">=", p.floor()), _Comparator("<", _lowest(0, p.minor + 1))]
        return [_Comparator(">=", p.floor()), _Comparator("<", _lowest(0, 0, p.patch + 1))]
    if p.major is None:  # "*", "x", ">=*"...
        if op in ("<", ">"):
            return [_Comparator("<", _lowest(0))]  # matches nothing
        return [_Comparator(">=", Version(0, 0, 0))]
    if p.patch is not None:
        return [_Comparator(op or "=", p.floor())]
    # a partial version (1 or 1.2): an X-range
    if p.minor is None:
        low, high = Version(p.major, 0, 0), _lowest(p.major + 1)
        next_low = Version(p.major + 1, 0, 0)
    else:
        low, high = Version(p.major, p.minor, 0), _lowest(p.major, p.minor + 1)
        next_low = Version(p.major, p.minor + 1, 0)
    if op in ("", "="):
        return [_Comparator(">=", low), _Comparator("<", high)]
    if op == ">":
        return [_Comparator(">=", next_low)]
    if op == ">=":
        return [_Comparator(">=", low)]
    if op == "<":
        return [_Comparator("<", _lowest(low.major, low.minor, 0))]
    return [_Comparator("<", high)]  # <=


def _hyphen_upper(text: str) -> list[_Comparator]:
    p = _Partial(text)
    if p.major is None:
        return []
    if p.minor is None:
        return [_Comparator("<", _lowest(p.major + 1))]
    if p.patch is None:
        return [_Comparator("<", _lowest(p.major, p.minor + 1))]
    return [_Comparator("<=", p.floor())]


class VersionRange:
    """An npm-style version range (``^1.2.0``, ``>=2.1.0 <2.2.0``, ``1.x || ~2.3``...)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._sets: list[list[_Comparator]] = []
        for alternative in str(text).split("||"):
            self._sets.append(self._parse_set(alternative.strip()))

    @staticmethod
    def _parse_set(text: str) -> list[_Comparator]:
        hyphen = re.match(r"^(\S+)\s+-\s+(\S+)$", text)
        if hyphen:
            low = _Partial(hyphen.group(1)).floor()
            return [_Comparator(">=", low)] + _hyphen_upper(hyphen.group(2))
        # glue operators to their versions: ">= 1.2.3" -> ">=1.2.3"
        text = re.sub(r"(<=|>=|~>|[<>=~^])\s+", r"\1", text)
        comparators: list[_Comparator] = []
        for token in text.split() or ["*"]:
            op = next((o for o in _OPERATORS if token.startswith(o)), "")
            comparators.extend(_desugar(op, token[len(op):]))
        return comparators

    def matches(self, version: Version | str) -> bool:
        if isinstance(version, str):
            version = Version.parse(version)
        for comparators in self._sets:
            if not all(c.test(version) for c in comparators):
                continue
            if not version.prerelease:
                return True
            # npm: a prerelease only satisfies a set that names a prerelease of the same X.Y.Z
            if any(c.version.prerelease and c.version.core == version.core
                   for c in comparators):
                return True
        return False

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"VersionRange({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VersionRange) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)
