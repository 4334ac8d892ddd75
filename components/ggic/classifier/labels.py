"""Class labels in the three formats models ship with.

- ``synset.txt`` of the ModelStore: a Python dict literal ``{0: 'tench, Tinca tinca', ...}``
  (parsed with ``ast.literal_eval``, never ``eval``);
- ``imagenet_class_index.json`` (torchvision/Keras): ``{"0": ["n01440764", "tench"], ...}``;
- one label per line (``labels.txt``; a leading WordNet id ``n01440764 tench`` is kept as is).
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Label files looked for in the model directory when LabelsPath is empty.
DEFAULT_LABEL_FILES = ("synset.txt", "labels.txt", "classes.txt")


class LabelsError(ValueError):
    """A labels file cannot be read."""


class Labels:
    """Class id -> label, with a fallback name for ids the file does not cover."""

    def __init__(self, names: Mapping[int, str], source: str = "") -> None:
        self._names = dict(names)
        self.source = source

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, class_id: int) -> str:
        return self._names.get(class_id, f"class {class_id}")

    def covers(self, num_classes: int) -> bool:
        return all(i in self._names for i in range(num_classes))

    @classmethod
    def numbered(cls) -> Labels:
        return cls({}, source="(none: class numbers)")


def parse_labels(text: str, source: str = "") -> Labels:
    """Parse labels text in any of the three formats."""
    stripped = text.strip()
    if not stripped:
        raise LabelsError(f"labels file {source} is empty")
    if stripped.startswith("{"):
        return Labels(_parse_mapping(stripped, source), source)
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except ValueError as exc:
            raise LabelsError(f"labels file {source} is not valid JSON: {exc}") from None
        return Labels({i: _label_text(v, source) for i, v in enumerate(items)}, source)
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return Labels(dict(enumerate(lines)), source)


def _parse_mapping(text: str, source: str) -> dict[int, str]:
    try:
        data: Any = json.loads(text)
    except ValueError:
        try:
            data = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            raise LabelsError(
                f"labels file {source} is neither JSON nor a Python dict literal: {exc}"
            ) from None
    if not isinstance(data, dict):
        raise LabelsError(f"labels file {source} must hold a mapping of class id to label")
    out = {}
    for key, value in data.items():
        try:
            class_id = int(key)
        except (TypeError, ValueError):
            raise LabelsError(f"labels file {source}: class id {key!r} is not a number") from None
        out[class_id] = _label_text(value, source)
    return out


def _label_text(value: Any, source: str) -> str:
    if isinstance(value, str):
        return value
    # class-index JSON: ["n01440764", "tench"] -> the human-readable part
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return value[-1]
    raise LabelsError(f"labels file {source}: unsupported label {value!r}")


def load_labels(path: str | Path) -> Labels:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabelsError(f"labels file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"labels file {p} cannot be read: {exc}") from None
    return parse_labels(text, str(p))


def find_labels(labels_path: str, model_dir: Path) -> Labels:
    """Labels from LabelsPath, else a default file in the model directory, else numbers."""
    if labels_path:
        return load_labels(labels_path)
    for name in DEFAULT_LABEL_FILES:
        candidate = model_dir / name
        if candidate.is_file():
            return load_labels(candidate)
    log.warning(
        "no labels: LabelsPath is empty and %s has none of %s; results name class numbers",
        model_dir,
        ", ".join(DEFAULT_LABEL_FILES),
    )
    return Labels.numbered()
