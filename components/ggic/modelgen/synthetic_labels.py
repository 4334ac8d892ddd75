"""Synthetic ImageNet-style class labels, and the two label file formats the models ship with.

- ``synset.txt`` (ModelStore): a Python dict literal, one class per line,
  ``{0: 'tench, Tinca tinca',\\n 1: 'goldfish, Carassius auratus', ...}``;
- ``imagenet_class_index.json`` (torchvision/Keras): ``{"0": ["n01440764", "tench"], ...}``.

The first classes carry their real ImageNet names; the rest are synthetic, and some contain
commas, single and double quotes and a backslash so that parsers are exercised.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

# (WordNet id, synset text, short name) of the first ImageNet classes.
_REAL = (
    ("n01440764", "tench, Tinca tinca", "tench"),
    ("n01443537", "goldfish, Carassius auratus", "goldfish"),
    (
        "n01484850",
        "great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias",
        "great_white_shark",
    ),
    ("n01491361", "tiger shark, Galeocerdo cuvieri", "tiger_shark"),
    ("n01494475", "hammerhead, hammerhead shark", "hammerhead"),
)


@dataclass(frozen=True)
class ClassLabel:
    wnid: str
    synset: str  # the full synset.txt text
    short: str  # the imagenet_class_index.json name


def synthetic_labels(num_classes: int) -> list[ClassLabel]:
    """``num_classes`` labels: real names first, then synthetic ones (some with quotes)."""
    if num_classes < 1:
        raise ValueError("num_classes must be at least 1")
    labels = []
    for i in range(num_classes):
        if i < len(_REAL):
            labels.append(ClassLabel(*_REAL[i]))
            continue
        if i % 7 == 5:
            synset = f"jack-o'-lantern no. {i}, synthetic"
        elif i % 7 == 6:
            synset = f'class {i} "quoted", synthetic \\ backslash'
        else:
            synset = f"class {i}, synthetic"
        short = synset.split(",")[0]
        labels.append(ClassLabel(f"n{90000000 + i:08d}", synset, short))
    return labels


def format_synset(labels: list[ClassLabel]) -> str:
    """The ``synset.txt`` text (a Python dict literal, as in AWS's ModelStore artifacts)."""
    body = ",\n ".join(f"{i}: {label.synset!r}" for i, label in enumerate(labels))
    return "{" + body + "}\n"


def format_class_index(labels: list[ClassLabel]) -> str:
    """The ``imagenet_class_index.json`` text."""
    return json.dumps({str(i): [lab.wnid, lab.short] for i, lab in enumerate(labels)}) + "\n"


def write_synset(path: str | os.PathLike, labels: list[ClassLabel]) -> Path:
    p = Path(path)
    p.write_text(format_synset(labels), encoding="utf-8")
    return p


def write_class_index(path: str | os.PathLike, labels: list[ClassLabel]) -> Path:
    p = Path(path)
    p.write_text(format_class_index(labels), encoding="utf-8")
    return p
