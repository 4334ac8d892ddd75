"""Recipe variables (``{artifacts:path}``, ``{configuration:/Key}``...) in lifecycle values.

Mirrors the nucleus's KernelConfigResolver:

* ``{namespace:key}`` for the component itself: ``artifacts:path``,
  ``artifacts:decompressedPath``, ``work:path``, ``kernel:rootPath``, ``iot:thingName`` and
  ``configuration:<JSON pointer>``;
* ``{component:namespace:key}`` for a *direct* dependency, same namespaces (``kernel`` and
  ``iot`` give the same values as for the component itself);
* a configuration value is rendered as text: strings as they are, ``null`` as ``null``,
  numbers and booleans as JSON does, objects and lists as compact JSON;
* anything unknown (namespace, key, missing configuration path) is left as written, with a
  warning: shell syntax such as ``${VAR:-x}`` must survive.

Stricter than the nucleus (which logs and leaves the text): ``{other:<known namespace>:...}``
naming a component that is not a direct dependency, or a dependency absent from the
deployment, raises :class:`InterpolationError`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Same patterns as the nucleus: names are word characters and dots; keys stop at ':' or '}'.
# KernelConfigResolver's SAME_COMPONENT_INTERPOLATION_REGEX and the cross-component one: names
# may hold '-' (component names do); Java's \w is ASCII
_SAME_COMPONENT = re.compile(r"\{([.\w-]+):([^:}]+)\}", re.ASCII)
_CROSS_COMPONENT = re.compile(r"\{([.\w-]+):([.\w-]+):([^:}]+)\}", re.ASCII)
_DEPENDENCY_NAMESPACES = ("artifacts", "work", "configuration", "kernel", "iot")


class InterpolationError(ValueError):
    """A recipe variable names a component this component can't reference."""

    def __init__(self, component: str, target: str, variable: str, reason: str) -> None:
        self.component = component
        self.target = target
        self.variable = variable
        super().__init__(f"{component}: recipe variable {variable} refers to {target}, {reason}")


@dataclass(frozen=True)
class ComponentPaths:
    """Where the nucleus puts a component's files under its root."""

    artifacts: Path
    decompressed: Path
    work: Path

    @classmethod
    def under(cls, root: Path, name: str, version: str) -> ComponentPaths:
        root = Path(root).absolute()
        return cls(
            artifacts=root / "packages" / "artifacts" / name / version,
            decompressed=root / "packages" / "artifacts-unarchived" / name / version,
            work=root / "work" / name,
        )


@dataclass(frozen=True)
class ComponentVariables:
    """What one component contributes to recipe variables."""

    name: str
    paths: ComponentPaths
    configuration: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InterpolationContext:
    """Everything needed to interpolate one component's lifecycle."""

    component: ComponentVariables
    kernel_root: Path
    thing_name: str
    direct_dependencies: frozenset[str] = frozenset()
    deployed: Mapping[str, ComponentVariables] = field(default_factory=dict)


# --- rendering --------------------------------------------------------------------------------


def _java_double(value: float) -> str:
    """``Double.toString``: ``1.0``, ``0.25``, ``1.0E7``, ``1.0E-4``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        text = repr(float(value))
        return text if "e" not in text else f"{value:f}".rstrip("0")
    mantissa, exponent = f"{value:.16e}".split("e")
    digits = repr(float(mantissa))  # shortest repr of the mantissa
    return f"{digits}E{int(exponent)}"


def render_value(value: Any) -> str:
    """A configuration value as the nucleus substitutes it into a lifecycle string."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _java_double(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


_MISSING = object()


def resolve_pointer(document: Any, pointer: str) -> Any:
    """Resolve an RFC 6901 JSON pointer; returns ``_MISSING`` (see :func:`pointer_found`)."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        return _MISSING
    node = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping):
            if token not in node:
                return _MISSING
            node = node[token]
        elif isinstance(node, list):
            if not token.isdigit() or (len(token) > 1 and token[0] == "0") \
                    or int(token) >= len(node):
                return _MISSING
            node = node[int(token)]
        else:
            return _MISSING
    return node


def pointer_found(value: Any) -> bool:
    return value is not _MISSING


# --- substitution -----------------------------------------------------------------------------


def _system_value(target: ComponentVariables, ctx: InterpolationContext, namespace: str,
                  key: str) -> str | None:
    if namespace == "artifacts" and key == "path":
        return str(target.paths.artifacts)
    if namespace == "artifacts" and key == "decompressedPath":
        return str(target.paths.decompressed)
    if namespace == "work" and key == "path":
        return str(target.paths.work)
    if namespace == "kernel" and key == "rootPath":
        return str(Path(ctx.kernel_root).absolute())
    if namespace == "iot" and key == "thingName":
        return ctx.thing_name
    return None


def _configuration_value(target: ComponentVariables, pointer: str, variable: str,
                         component: str) -> str | None:
    value = resolve_pointer(target.configuration, pointer)
    if not pointer_found(value):
        logger.warning("%s: %s: no configuration value at %r; left as is", component, variable,
                       pointer)
        return None
    return render_value(value)


def _replace_same(match: re.Match, ctx: InterpolationContext) -> str:
    namespace, key = match.group(1), match.group(2)
    me = ctx.component
    if namespace == "configuration":
        value = _configuration_value(me, key, match.group(0), me.name)
    elif namespace in ("artifacts", "work", "kernel", "iot"):
        value = _system_value(me, ctx, namespace, key)
        if value is None:
            logger.warning("%s: unknown recipe variable %s; left as is", me.name, match.group(0))
    else:
        logger.warning("%s: %s: unknown namespace %r; left as is", me.name, match.group(0),
                       namespace)
        value = None
    return match.group(0) if value is None else value


def _replace_cross(match: re.Match, ctx: InterpolationContext) -> str:
    target_name, namespace, key = match.group(1), match.group(2), match.group(3)
    me = ctx.component.name
    if namespace not in _DEPENDENCY_NAMESPACES:
        logger.warning("%s: %s: unknown namespace %r; left as is", me, match.group(0), namespace)
        return match.group(0)
    if target_name not in ctx.direct_dependencies:
        raise InterpolationError(me, target_name, match.group(0),
                                 "which is not a direct dependency of " + me)
    target = ctx.deployed.get(target_name)
    if target is None:
        raise InterpolationError(me, target_name, match.group(0),
                                 f"a dependency of {me} that is not in the deployment")
    if namespace == "configuration":
        value = _configuration_value(target, key, match.group(0), me)
    else:
        value = _system_value(target, ctx, namespace, key)
        if value is None:
            logger.warning("%s: unknown recipe variable %s; left as is", me, match.group(0))
    return match.group(0) if value is None else value


def interpolate_string(text: str, ctx: InterpolationContext) -> str:
    """Substitute recipe variables in one string (the component's own first, as the nucleus)."""
    text = _SAME_COMPONENT.sub(lambda m: _replace_same(m, ctx), text)
    return _CROSS_COMPONENT.sub(lambda m: _replace_cross(m, ctx), text)


def interpolate(value: Any, ctx: InterpolationContext) -> Any:
    """Interpolate every string value (not key) in a lifecycle structure."""
    if isinstance(value, str):
        return interpolate_string(value, ctx)
    if isinstance(value, Mapping):
        return {k: interpolate(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, ctx) for v in value]
    return value
