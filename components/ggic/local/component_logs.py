"""Logs in the nucleus's layout and text format.

``<root>/logs/greengrass.log`` holds the runtime's own log; ``<root>/logs/<component>.log``
holds each component's process output and lifecycle events. Both are private to the runtime's
user (0600 files in a 0700 folder). Lines follow the Greengrass
logging library's text format::

    2024-01-19T21:46:03.514Z [INFO] (Copier) com.example.Hello: stdout. Hello. {scriptName=
    services.com.example.Hello.lifecycle.Run.Script, serviceName=com.example.Hello,
    currentState=RUNNING}

(one line): timestamp (UTC, milliseconds), level (``INFO``, ``WARN``, ``ERROR``, ``DEBUG``),
thread, logger name, then the event type, message and ``{key=value, ...}`` context joined with
``". "``, empty parts left out. Process output is logged at INFO for stdout and WARN for
stderr, each line trimmed, from a thread called ``Copier``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .private_files import open_private_append, private_dir

RUNTIME_LOG_NAME = "greengrass.log"
RUNTIME_LOGGER = "ggic.local"
COPIER_THREAD = "Copier"

_LEVEL_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARN",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "ERROR",
}


def logs_dir(root: Path) -> Path:
    return Path(root) / "logs"


def component_log_path(root: Path, component: str) -> Path:
    return logs_dir(root) / f"{component}.log"


def runtime_log_path(root: Path) -> Path:
    return logs_dir(root) / RUNTIME_LOG_NAME


def format_timestamp(when: datetime | None = None) -> str:
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _java_string_hash(text: str) -> int:
    value = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        value = (31 * value + int(unit, 16)) & 0xFFFFFFFF
    return value


def java_hashmap_order(keys: Sequence[str]) -> list[str]:
    """``keys`` in the iteration order of a Java ``HashMap`` they were put into in this order.

    The logging library keeps a line's context in a HashMap, which is why real lines read
    ``{scriptName=..., serviceName=..., currentState=...}`` and ``{exitCode=..., ...}``.
    """
    capacity = 16
    while len(keys) > capacity * 0.75:
        capacity *= 2

    def bucket(key: str) -> int:
        h = _java_string_hash(key)
        return (h ^ (h >> 16)) & (capacity - 1)

    return sorted(keys, key=bucket)  # stable: same bucket keeps insertion order


def format_context(context: Mapping[str, Any]) -> str:
    keys = java_hashmap_order(list(context))
    return "{" + ", ".join(f"{k}={context[k]}" for k in keys) + "}"


def format_line(level: str, logger_name: str, event_type: str | None, message: str | None,
                context: Mapping[str, Any] | None = None, thread: str = COPIER_THREAD,
                when: datetime | None = None) -> str:
    """One log line in the Greengrass text format (no trailing newline)."""
    parts = [p for p in (event_type, message, format_context(context) if context else None) if p]
    return f"{format_timestamp(when)} [{level}] ({thread}) {logger_name}: {'. '.join(parts)}"


class ComponentLog:
    """Appends lines to ``<root>/logs/<component>.log``; safe to share between threads."""

    def __init__(self, root: Path, component: str) -> None:
        self.component = component
        self.path = component_log_path(root, component)
        private_dir(self.path.parent, narrow=False)
        self._lock = threading.Lock()

    def write(self, level: str, event_type: str | None, message: str | None,
              context: Mapping[str, Any] | None = None, thread: str = COPIER_THREAD) -> None:
        line = format_line(level, self.component, event_type, message, context, thread)
        with self._lock, open_private_append(self.path) as out:  # 0600, as the runtime's logs
            out.write(line + "\n")

    def output(self, stream: str, line: str, script_name: str, state: str) -> None:
        """A line a lifecycle script printed (``stream`` is ``stdout`` or ``stderr``)."""
        self.write("INFO" if stream == "stdout" else "WARN", stream, line.strip(),
                   {"scriptName": script_name, "serviceName": self.component,
                    "currentState": state})

    def event(self, level: str, event_type: str | None, message: str | None, state: str,
              thread: str | None = None, **context: Any) -> None:
        """A lifecycle event (script start, exit...), with the nucleus's default context."""
        full = dict(context)
        full.update(serviceName=self.component, currentState=state)
        self.write(level, event_type, message, full, thread or f"{self.component}-lifecycle")


class NucleusFormatter(logging.Formatter):
    """Formats ``logging`` records in the Greengrass text format.

    Pass ``extra={"event_type": "...", "context": {...}}`` to fill those parts of the line.
    """

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, timezone.utc)
        context = getattr(record, "context", None)
        line = format_line(_LEVEL_NAMES.get(record.levelno, record.levelname),
                           record.name, getattr(record, "event_type", None),
                           record.getMessage(), context, record.threadName or "main", when)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_runtime_logging(root: Path, level: int = logging.INFO,
                          logger_name: str = RUNTIME_LOGGER) -> logging.Handler:
    """Send the runtime log (logger ``ggic.local`` and children) to ``<root>/logs/greengrass.log``.

    Idempotent: calling it again for the same root returns the handler already installed.
    Returns the handler so the caller can remove it (``logging.getLogger(name).removeHandler``).
    """
    path = runtime_log_path(root).absolute()
    target = logging.getLogger(logger_name)
    for handler in target.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path:
            return handler
    open_private_append(path).close()  # created 0600 before the handler appends to it
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(NucleusFormatter())
    handler.setLevel(level)
    target.addHandler(handler)
    if target.level == logging.NOTSET or target.level > level:
        target.setLevel(level)
    return handler
