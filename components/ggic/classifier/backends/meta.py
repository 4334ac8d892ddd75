"""A model's ``.meta`` file (Neo's JSON description of inputs and outputs), for every backend.

Neo writes ``{"Model": {"Inputs": [{"name", "dtype", "shape"}], "Outputs": [...]}, ...}``;
``ggic model build-demo`` adds ``Model.Name`` (a profile name) and ``Model.Preprocessing``
(profile fields) so that ``ModelProfile: auto`` finds the right preprocessing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from .base import ModelSignature, TensorSpec

log = logging.getLogger(__name__)


def read_meta(path: Path) -> ModelSignature | None:
    """The signature a .meta describes (``source`` is its path); None if it is unreadable."""
    try:
        signature = signature_from_meta(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring unreadable %s (%s)", path, exc)
        return None
    return dataclasses.replace(signature, source=str(path))


def _get(entry: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in entry:
            return entry[key]
    return None


def signature_from_meta(meta: dict[str, Any]) -> ModelSignature:
    model = meta.get("Model", meta)

    def specs(items: Any) -> tuple[TensorSpec, ...]:
        out = []
        for item in items or []:
            name = _get(item, "name", "Name")
            shape = _get(item, "shape", "Shape")
            dtype = _get(item, "dtype", "DType", "type") or "float32"
            if name is None:
                continue
            out.append(TensorSpec(str(name), tuple(int(d) for d in (shape or ())), str(dtype)))
        return tuple(out)

    preprocessing = model.get("Preprocessing")
    name = model.get("Name")
    return ModelSignature(
        specs(model.get("Inputs")), specs(model.get("Outputs")), "meta",
        profile_name=str(name) if isinstance(name, str) else None,
        preprocessing=dict(preprocessing) if isinstance(preprocessing, dict) else None,
    )
