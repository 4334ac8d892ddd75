"""The record of what components published to AWS IoT Core (``<root>/logs/iotcore.jsonl``, one
JSON line per PublishToIoTCore call, 0600): nothing leaves the machine."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def iot_core_line(record: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded PublishToIoTCore call as one JSON-able line (payload as text if UTF-8)."""
    payload = bytes(record.get("payload") or b"")
    try:
        text, encoding = payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
    line = {
        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "component": record.get("component"),
        "topic": record.get("topic"),
        "qos": record.get("qos"),
        "retain": bool(record.get("retain", False)),
        "payload": text,
        "payloadEncoding": encoding,
    }
    for key in ("userProperties", "contentType", "payloadFormat", "messageExpiryIntervalSeconds"):
        if record.get(key) is not None:
            line[key] = record[key]
    return line


def read_iot_core_log(path: Path) -> list[dict[str, Any]]:
    """The recorded PublishToIoTCore calls (``<root>/logs/iotcore.jsonl``), oldest first."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out
