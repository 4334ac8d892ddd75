"""What every inference backend is, and the types shared by all of them.

A backend runs one kind of model file with one inference library (DLR, ONNX Runtime). Its
life has three steps, as in Triton's Python backend: :meth:`Backend.open` (initialize: find
the model's files in a directory, load them), :meth:`Backend.run` (execute: named input
tensors in, output tensors out) and :meth:`Backend.close` (finalize). Nothing here imports an
inference library; each backend's own module does, and only there.

Thread confinement: a backend is not thread-safe in its library (a ``DLRModel`` shares its
input and output buffers between calls). :meth:`Backend.run` and :meth:`Backend.close` take the
backend's lock, so concurrent calls are serialised rather than corrupted, but the classifier
runs each model from ONE thread (its inference thread, warm-up included), because a model's
thread pool belongs to the thread that runs it (see ``classifier/service.py``).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message says what is wrong and how to fix it."""


class BackendClosedError(RuntimeError):
    """:meth:`Backend.run` was called after :meth:`Backend.close`."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class ModelSignature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    source: str
    #: What a Neo-style .meta says about preprocessing, for ``ModelProfile: auto``: a profile
    #: name (``Model.Name``) and/or profile fields (``Model.Preprocessing``), as written by
    #: ``ggic model build-demo``. Neo's own .meta files carry neither.
    profile_name: str | None = None
    preprocessing: dict[str, Any] | None = None

    def input_named(self, name: str) -> TensorSpec | None:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        return None


@dataclass(frozen=True)
class ModelDirectory:
    """What a backend found in a model directory, read without loading its library: enough for
    ``ggic model info``, ``ggic tensor`` and packaging a model for another machine."""

    backend: str
    directory: Path
    #: (role, file) pairs, e.g. ("graph", .../compiled_model.json); None: optional and absent.
    files: tuple[tuple[str, Path | None], ...]
    signature: ModelSignature


class Backend(ABC):
    """One loaded model in one inference library. Subclasses implement the underscored
    methods; the public ones check their arguments and the backend's state first."""

    #: The registry key and the value of the ``Backend`` configuration key.
    name: ClassVar[str]
    #: One line for error messages: what a model directory of this backend holds.
    model_files: ClassVar[str]

    def __init__(self, model: ModelDirectory, signature: ModelSignature) -> None:
        self.model = model
        self.signature = signature
        self._lock = threading.Lock()
        self._closed = False

    # -- discovery (no library needed) ---------------------------------------------------------
    @classmethod
    @abstractmethod
    def recognizes(cls, directory: Path) -> bool:
        """Whether ``directory`` holds files of this backend's kind (for ``Backend: auto``)."""

    @classmethod
    @abstractmethod
    def inspect(cls, directory: Path) -> ModelDirectory:
        """The model's files and signature; ModelLoadError saying what is missing."""

    # -- initialize / execute / finalize -------------------------------------------------------
    @classmethod
    @abstractmethod
    def open(cls, directory: Path) -> Backend:
        """Load the model in ``directory``; ModelLoadError saying how to fix any problem."""

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """One inference: a tensor for every model input, by name; the outputs in order.

        ValueError when an input is missing, unknown, or of the wrong shape or dtype;
        BackendClosedError after :meth:`close`; the library's own error otherwise.
        """
        self._check_inputs(inputs)
        with self._lock:
            if self._closed:
                raise BackendClosedError(
                    f"the {self.name} model {self.model.directory} is closed; load it again")
            return [np.asarray(out) for out in self._execute(inputs)]

    def close(self) -> None:
        """Release the model; later :meth:`run` calls raise BackendClosedError. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._finalize()

    @property
    def closed(self) -> bool:
        return self._closed

    def set_threads(self, count: int) -> None:
        """Hint: run inference on ``count`` threads (0: the library's default). Backends
        whose library cannot change it ignore the hint."""
        return None

    @abstractmethod
    def _execute(self, inputs: Mapping[str, np.ndarray]) -> Sequence[Any]:
        """Run the library; called with the lock held and the inputs checked."""

    @abstractmethod
    def _finalize(self) -> None:
        """Release the library's model; called once, with the lock held."""

    def _check_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        expected = {spec.name: spec for spec in self.signature.inputs}
        unknown = sorted(set(inputs) - set(expected))
        missing = sorted(set(expected) - set(inputs))
        if unknown or missing:
            raise ValueError(
                f"the model takes inputs {', '.join(expected) or 'none'}; got "
                f"{', '.join(sorted(inputs)) or 'none'}")
        for name, tensor in inputs.items():
            spec = expected[name]
            shape = tuple(getattr(tensor, "shape", ()))
            if not shape_matches(shape, spec.shape):
                raise ValueError(
                    f"input {name} has shape {list(shape)}; the model takes {list(spec.shape)}")
            dtype = str(getattr(tensor, "dtype", type(tensor).__name__))
            if dtype != spec.dtype:
                raise ValueError(f"input {name} is {dtype}; the model takes {spec.dtype}")


def shape_matches(shape: Sequence[int], expected: Sequence[int]) -> bool:
    """Equal shapes, where a negative expected dimension (dynamic in the model) takes any."""
    return len(shape) == len(expected) and all(
        e < 0 or int(s) == int(e) for s, e in zip(shape, expected))


def model_dir_files(model_dir: str | Path) -> tuple[Path, list[Path]]:
    """The directory and the files directly in it; ModelLoadError if it cannot be listed."""
    if not str(model_dir):
        raise ModelLoadError(
            "ModelDir is empty and no default model was provided: set ModelDir to the directory "
            "of a model (a compiled DLR model: .so, .params and graph .json; or an ONNX model: "
            "one .onnx)"
        )
    directory = Path(model_dir)
    if not directory.is_dir():
        raise ModelLoadError(
            f"ModelDir {directory} does not exist or is not a directory: set ModelDir to the "
            "directory of a model, or deploy the model component it comes from"
        )
    try:
        entries = sorted(p for p in directory.iterdir() if p.is_file())
    except PermissionError:
        raise ModelLoadError(
            f"ModelDir {directory} is not readable by this component's user: copy the model "
            "into the component's work directory in a privileged Install step (the recipe does "
            "this for the ModelStore) or fix its permissions"
        ) from None
    return directory, entries
