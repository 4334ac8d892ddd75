"""The typed lifecycle of a recipe (steps, ``Setenv``, ``Timeout``, ``Skipif``...) and the
error every recipe parser raises."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__.rsplit(".", 1)[0] + ".recipe")

#: Lifecycle steps in the order the nucleus runs them, and their default timeouts (seconds;
#: None = no timeout). From the nucleus's Lifecycle/GenericExternalService.
STEP_NAMES = ("Bootstrap", "Install", "Startup", "Run", "Shutdown", "Recover")
DEFAULT_STEP_TIMEOUTS: Mapping[str, float | None] = {
    "Bootstrap": 120.0,
    "Install": 120.0,
    "Startup": 120.0,
    "Run": None,
    "Shutdown": 15.0,
    "Recover": 60.0,
}
_STEP_OBJECT_KEYS = ("Script", "RequiresPrivilege", "Skipif", "Timeout", "Setenv")
_LIFECYCLE_KEYS = ("Setenv",) + STEP_NAMES


class RecipeError(ValueError):
    """A recipe is malformed. ``source`` is the recipe file, ``key`` the offending key path."""

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class LifecycleStep:
    """One lifecycle step (``Install``, ``Run``...), after interpolation."""

    name: str
    script: str
    requires_privilege: bool = False
    skipif: str | None = None
    timeout: float | None = None  # as written; None = the step's default
    setenv: Mapping[str, str] = field(default_factory=dict)
    is_object: bool = False  # written as an object with Script (changes the log's scriptName)

    @property
    def effective_timeout(self) -> float | None:
        return self.timeout if self.timeout is not None else DEFAULT_STEP_TIMEOUTS[self.name]

    def script_name(self, component: str) -> str:
        """The nucleus's ``scriptName`` for this step's log lines."""
        base = f"services.{component}.lifecycle.{self.name}"
        return base + ".Script" if self.is_object else base


@dataclass(frozen=True)
class ComponentLifecycle:
    setenv: Mapping[str, str] = field(default_factory=dict)
    steps: Mapping[str, LifecycleStep] = field(default_factory=dict)

    def step(self, name: str) -> LifecycleStep | None:
        return self.steps.get(name)


def canonical_key(key: str, known: Sequence[str]) -> str | None:
    lowered = key.lower()
    return next((k for k in known if k.lower() == lowered), None)


def _env_value(value: Any, source: str, key: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise RecipeError(source, key, f"an environment value must be a string, got {value!r}")


def _parse_setenv(raw: Any, source: str, key: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RecipeError(source, key, "Setenv must be a mapping of variable names to values")
    env: dict[str, str] = {}
    for name, value in raw.items():
        text = _env_value(value, source, f"{key}.{name}")
        if text is not None:
            env[str(name)] = text
    return env


def _parse_bool(value: Any, source: str, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise RecipeError(source, key, f"must be true or false, got {value!r}")


def _parse_timeout(value: Any, source: str, key: str) -> float:
    try:
        seconds = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds >= 0:
        raise RecipeError(source, key, f"Timeout must be a number of seconds, got {value!r}")
    return seconds


def _canonical_keys(raw: Mapping[Any, Any], known: Sequence[str], source: str, key: str,
                    what: str) -> dict[str, Any]:
    """``raw``'s entries under their canonical (case-insensitive) names: an unknown key is
    ignored with a warning, as by the nucleus; two spellings of one key are a RecipeError."""
    values: dict[str, Any] = {}
    for raw_key, value in raw.items():
        canonical = canonical_key(str(raw_key), known)
        if canonical is None:
            logger.warning("%s: %s.%s: unknown %s, ignored (as by the nucleus)",
                           source, key, raw_key, what)
            continue
        if canonical in values:
            raise RecipeError(source, f"{key}.{raw_key}", f"duplicate key ({canonical})")
        values[canonical] = value
    return values


def _parse_step(name: str, raw: Any, source: str, key: str) -> LifecycleStep | None:
    if raw is None:
        return None
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        return LifecycleStep(name=name, script=str(raw))
    if not isinstance(raw, Mapping):
        raise RecipeError(source, key, "a lifecycle step must be a script or an object with Script")
    values = _canonical_keys(raw, _STEP_OBJECT_KEYS, source, key, "lifecycle key")
    script = values.get("Script")
    if script is None:
        raise RecipeError(source, key, "a lifecycle step object needs a Script")
    if not isinstance(script, (str, int, float)) or isinstance(script, bool):
        raise RecipeError(source, f"{key}.Script", "Script must be a string")
    skipif = values.get("Skipif")
    if skipif is not None and not isinstance(skipif, str):
        raise RecipeError(source, f"{key}.Skipif",
                          "Skipif must be 'onpath <exe>' or 'exists <file>'")
    timeout = values.get("Timeout")
    return LifecycleStep(
        name=name,
        script=str(script),
        requires_privilege=_parse_bool(values.get("RequiresPrivilege", False), source,
                                       f"{key}.RequiresPrivilege"),
        skipif=skipif.strip() if isinstance(skipif, str) else None,
        timeout=None if timeout is None else _parse_timeout(timeout, source, f"{key}.Timeout"),
        setenv=_parse_setenv(values.get("Setenv"), source, f"{key}.Setenv"),
        is_object=True,
    )


def parse_lifecycle(raw: Mapping[str, Any], source: str = "<recipe>",
                    key: str = "Lifecycle") -> ComponentLifecycle:
    """Type one component's (platform-selected, possibly interpolated) lifecycle section."""
    if not isinstance(raw, Mapping):
        raise RecipeError(source, key, "Lifecycle must be a mapping")
    found = _canonical_keys(raw, _LIFECYCLE_KEYS, source, key, "lifecycle step")
    steps: dict[str, LifecycleStep] = {}
    for name in STEP_NAMES:
        step = _parse_step(name, found.get(name), source, f"{key}.{name}")
        if step is not None:
            steps[name] = step
    if "Startup" in steps and "Run" in steps:
        logger.warning("%s: %s defines both Startup and Run; the nucleus runs only Startup",
                       source, key)
    return ComponentLifecycle(setenv=_parse_setenv(found.get("Setenv"), source, f"{key}.Setenv"),
                              steps=steps)
