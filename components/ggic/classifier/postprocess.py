"""Postprocessing: model output in, top-k predictions with probabilities out.

Scores are always probabilities in [0, 1]: logits go through a softmax (AWS's DLR component
thresholds raw logits at 0.3, which keeps nearly everything for a ResNet-50 and makes the
threshold meaningless). The threshold applies to those probabilities.
"""

from __future__ import annotations

import numpy as np

from ..messages import ClassificationError, ErrorCode, Prediction
from .labels import Labels


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def scores_from_output(output: np.ndarray, kind: str) -> np.ndarray:
    """A 1-D array of class probabilities from a model output of shape (1, C) or (C,)."""
    values = np.asarray(output)
    if values.ndim == 2 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 1 or values.size == 0:
        raise ClassificationError(
            ErrorCode.MODEL_ERROR, f"model output has shape {np.shape(output)}, expected (1, C)"
        )
    if not np.all(np.isfinite(values)):
        raise ClassificationError(ErrorCode.MODEL_ERROR, "model output contains NaN or infinity")
    if kind == "logits":
        return softmax(values)
    return np.clip(values.astype(np.float64), 0.0, 1.0)


def top_k(scores: np.ndarray, k: int, threshold: float, labels: Labels) -> list[Prediction]:
    """The k highest scores at or above ``threshold``, best first (equal scores: the lower
    class id first)."""
    k = min(k, scores.size)
    if k < scores.size:
        candidates = np.argpartition(-scores, k - 1)[:k]
    else:
        candidates = np.arange(scores.size)
    values = scores[candidates]
    # stable order in one call: by score descending, then class id ascending
    order = np.lexsort((candidates, -values))
    return [
        Prediction(label=labels[i], class_id=i, score=score)
        for i, score in zip(candidates[order].tolist(), values[order].tolist())
        if score >= threshold
    ]
