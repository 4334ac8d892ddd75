"""The ``.meta`` file of a Neo-compiled model (``compiled.meta``).

Neo writes JSON of this shape (key names as in Neo's output; DLR reads output names from
``Model.Outputs[i].name``)::

    {"Requirements": {"TargetDevice": "ml_c5", "TargetDeviceType": "cpu"},
     "Compilation": {"CreatedTime": 1648771122.42},
     "Model": {"Inputs": [{"name": "data", "dtype": "float32", "shape": [1, 224, 224, 3]}],
               "Outputs": [{"name": "...", "dtype": "float32", "shape": [1, 1000]}]}}
"""

from __future__ import annotations

import time
from typing import Any

from .graph import GraphBuilder

DEFAULT_TARGET_DEVICE = "ml_c5"


def build_meta(
    graph: GraphBuilder,
    *,
    target_device: str = DEFAULT_TARGET_DEVICE,
    target_device_type: str = "cpu",
    created_time: float | None = None,
) -> dict[str, Any]:
    """The ``.meta`` JSON object describing ``graph``'s inputs and outputs."""

    def describe(tensor: Any) -> dict[str, Any]:
        return {
            "name": graph.name_of(tensor),
            "dtype": tensor.dtype,
            "shape": list(tensor.shape),
        }

    return {
        "Requirements": {"TargetDevice": target_device, "TargetDeviceType": target_device_type},
        "Compilation": {"CreatedTime": time.time() if created_time is None else created_time},
        "Model": {
            "Inputs": [describe(t) for t in graph.inputs],
            "Outputs": [describe(t) for t in graph.outputs],
        },
    }
