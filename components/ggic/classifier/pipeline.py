"""The classification pipeline: image in, predictions out. Knows nothing of IPC.

It has two halves so the service can overlap them: :meth:`prepare` (read, decode,
preprocess: any thread, many at once) and :meth:`run_model` (the model: one thread). Each
stage returns its own timing (``PreparedInput.timing_ms``, ``ModelRun.inference_ms``) and
:func:`result_timing` puts a result's ``timing_ms`` together once. ``ggic classify``, the
classifier service and the benchmarks all use this class.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..messages import ClassificationError, ErrorCode, ImageSource, Prediction, SourceKind
from .decode import decode_image
from .formats import ImageFormat, ImageProbe, probe_image
from .inputs import InputLimits, load_tensor, read_file
from .model import LoadedModel
from .postprocess import scores_from_output, top_k
from .preprocess import TensorPool, jpeg_reduction, preprocessor_for


@dataclass
class PreparedInput:
    """One input, ready for the model, with what preparing it took.

    ``timing_ms`` holds ``load`` (read + decode) and ``preprocess``, written once by
    :meth:`ClassificationPipeline.prepare`. ``probe`` is the image's header (None for a
    tensor)."""

    tensor: np.ndarray
    timing_ms: dict[str, float] = field(default_factory=dict)
    probe: ImageProbe | None = None
    #: Gives the tensor back to its pool once the model has consumed it (None: not pooled).
    release: Callable[[], None] | None = None

    @property
    def load_ms(self) -> float:
        return self.timing_ms.get("load", 0.0)

    @property
    def preprocess_ms(self) -> float:
        return self.timing_ms.get("preprocess", 0.0)


@dataclass(frozen=True)
class ModelRun:
    """What :meth:`ClassificationPipeline.run_model` returns: class probabilities and the
    time the model took."""

    scores: np.ndarray
    inference_ms: float


def result_timing(prepared: PreparedInput, run: ModelRun, total_ms: float) -> dict[str, float]:
    """A result's ``timing_ms``: load, preprocess, inference, total."""
    return {"load": prepared.load_ms, "preprocess": prepared.preprocess_ms,
            "inference": run.inference_ms, "total": total_ms}


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0


class ClassificationPipeline:
    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self._preprocessor = preprocessor_for(model.profile)
        # tensors preprocessing writes into, reused once the model has consumed them
        self._tensors = TensorPool(self._preprocessor.shape)

    @property
    def info(self) -> LoadedModel:
        """The loaded model (its ``summary()`` is a result's ``model`` field)."""
        return self.model

    @property
    def profile(self):  # noqa: ANN201 - a ModelProfile
        return self.model.profile

    def prepare(self, source: ImageSource, limits: InputLimits) -> PreparedInput:
        """Read, decode and preprocess one input; raise ClassificationError on bad input.

        Inline images were size-checked when the request was parsed; files are checked as
        they are read."""
        started = time.perf_counter()
        data = (source.data or b"") if source.kind is SourceKind.INLINE else read_file(
            str(source.path), limits)
        what = source.describe()
        if source.kind is SourceKind.TENSOR:
            tensor = load_tensor(data, self.model.input_shape, what)
            return PreparedInput(tensor, {"load": _ms(started), "preprocess": 0.0})
        probe = probe_image(data, limits.accepted_formats, what)
        image = self.decode(data, limits, what, probe)
        decoded = time.perf_counter()
        tensor = self._preprocessor(image, self._tensors.take(),
                                    full_size=(probe.width, probe.height))
        return PreparedInput(
            tensor, {"load": (decoded - started) * 1000.0, "preprocess": _ms(decoded)}, probe,
            release=lambda: self._tensors.give_back(tensor))

    def decode(self, data: bytes, limits: InputLimits, what: str,
               probe: ImageProbe | None = None) -> np.ndarray:
        """Decode ``data`` (its header ``probe`` read once, here if not given), JPEGs at the
        reduction ``preprocess.jpeg_reduction`` chooses for the profile."""
        if probe is None:
            probe = probe_image(data, limits.accepted_formats, what)
        reduction = 1
        if probe.format is ImageFormat.JPEG:
            reduction = jpeg_reduction(probe.width, probe.height, self.profile)
        return decode_image(data, max_pixels=limits.max_image_pixels, reduction=reduction,
                            what=what, probe=probe)

    def run_model(self, prepared: PreparedInput) -> ModelRun:
        """Run the model; class probabilities and the time taken. Only ever call from one
        thread at a time."""
        started = time.perf_counter()
        try:
            output = self.model.run(prepared.tensor)
        except Exception as exc:
            raise ClassificationError(ErrorCode.MODEL_ERROR, f"inference failed: {exc}") from exc
        finally:
            # the model copied its input; the tensor may now be reused by the next request
            release, prepared.release = prepared.release, None
            if release is not None:
                release()
        inference_ms = _ms(started)
        return ModelRun(scores_from_output(output, self.profile.output), inference_ms)

    def warm_up(self) -> float:
        """One inference on zeros, on the thread that will run the model; its time in ms."""
        return self.model.warm_up()

    def close(self) -> None:
        self.model.close()

    def predictions(self, scores: np.ndarray, k: int, threshold: float) -> list[Prediction]:
        return top_k(scores, k, threshold, self.model.labels)

    def classify(self, source: ImageSource, limits: InputLimits, k: int,
                 threshold: float) -> tuple[list[Prediction], Mapping[str, float]]:
        """All steps in the calling thread (for ``ggic classify`` and benchmarks)."""
        started = time.perf_counter()
        prepared = self.prepare(source, limits)
        run = self.run_model(prepared)
        predictions = self.predictions(run.scores, k, threshold)
        return predictions, result_timing(prepared, run, _ms(started))
