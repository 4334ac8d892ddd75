"""The classification pipeline: image in, predictions out. Knows nothing of IPC.

It has two halves so the service can overlap them: :meth:`prepare` (read, decode,
preprocess: any thread, many at once) and :meth:`infer` (the model: one thread). ``ggic
classify``, the classifier service and the benchmarks all use this class.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..messages import ClassificationError, ErrorCode, ImageSource, Prediction, SourceKind
from .decode import decode_image, image_dimensions, is_jpeg
from .inputs import InputLimits, load_tensor, read_file
from .model import LoadedModel, ModelInfo
from .postprocess import scores_from_output, top_k
from .preprocess import TensorPool, needed_decode_size, preprocessor_for


@dataclass
class PreparedInput:
    tensor: np.ndarray
    timing_ms: dict[str, float] = field(default_factory=dict)
    #: Gives the tensor back to its pool once the model has consumed it (None: not pooled).
    release: Callable[[], None] | None = None


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0


class ClassificationPipeline:
    def __init__(self, model: LoadedModel, info: ModelInfo) -> None:
        self.model = model
        self.info = info
        self._preprocessor = preprocessor_for(model.profile)
        # tensors preprocessing writes into, reused once inference has consumed them
        self._tensors = TensorPool(self._preprocessor.shape)

    @property
    def profile(self):  # noqa: ANN201 - a ModelProfile
        return self.model.profile

    def prepare(self, source: ImageSource, limits: InputLimits) -> PreparedInput:
        """Read, decode and preprocess one input; raise ClassificationError on bad input."""
        started = time.perf_counter()
        if source.kind is SourceKind.INLINE:
            data = source.data or b""
            if len(data) > limits.max_image_bytes:
                raise ClassificationError(
                    ErrorCode.IMAGE_TOO_LARGE,
                    f"inline image of {len(data)} bytes exceeds MaxImageBytes "
                    f"({limits.max_image_bytes})",
                )
        else:
            data = read_file(str(source.path), limits)
        what = source.describe()
        if source.kind is SourceKind.TENSOR:
            tensor = load_tensor(data, self.model.input_shape, what)
            return PreparedInput(tensor, {"load": _ms(started), "preprocess": 0.0})
        image = self.decode(data, limits, what)
        decoded = time.perf_counter()
        tensor = self._preprocessor(image, self._tensors.take())
        return PreparedInput(
            tensor, {"load": (decoded - started) * 1000.0, "preprocess": _ms(decoded)},
            release=lambda: self._tensors.give_back(tensor),
        )

    def decode(self, data: bytes, limits: InputLimits, what: str) -> np.ndarray:
        needed = None
        dims = image_dimensions(data) if is_jpeg(data) else None
        if dims is not None:
            needed = needed_decode_size(dims[0], dims[1], self.profile)
        return decode_image(data, max_pixels=limits.max_image_pixels, needed=needed, what=what)

    def infer(self, prepared: PreparedInput) -> np.ndarray:
        """Run the model; class probabilities. Only ever call from one thread at a time."""
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
        prepared.timing_ms["inference"] = _ms(started)
        return scores_from_output(output, self.profile.output)

    def warm_up(self) -> float:
        """One inference on zeros, on the thread that will run the model; its time in ms."""
        return self.model.warm_up()

    def close(self) -> None:
        self.model.close()

    def predictions(self, scores: np.ndarray, k: int, threshold: float) -> list[Prediction]:
        return top_k(scores, k, threshold, self.model.labels)

    def classify(self, source: ImageSource, limits: InputLimits, k: int,
                 threshold: float) -> tuple[list[Prediction], dict[str, float]]:
        """All steps in the calling thread (for ``ggic classify`` and benchmarks)."""
        started = time.perf_counter()
        prepared = self.prepare(source, limits)
        predictions = self.predictions(self.infer(prepared), k, threshold)
        prepared.timing_ms["total"] = _ms(started)
        return predictions, prepared.timing_ms
