"""The ONNX Runtime backend: one ``*.onnx`` file run by ``onnxruntime`` on the CPU.

``pip install 'ggic[onnx]'`` brings onnxruntime (wheels for x86_64 and aarch64: Jetson,
Raspberry Pi OS 64-bit). Only this module imports it, and only when a model is opened.

An ONNX model directory holds exactly one ``*.onnx`` and optionally a Neo-style ``*.meta``
(``ggic model build-demo --format onnx`` writes one naming the profile, so ``ModelProfile:
auto`` finds the preprocessing) and the labels. Inputs and outputs come from the model itself;
a dynamic batch dimension is taken as 1, other dynamic dimensions stay -1 (any size).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    Backend,
    ModelDirectory,
    ModelLoadError,
    ModelSignature,
    TensorSpec,
    model_dir_files,
)
from .meta import read_meta

log = logging.getLogger(__name__)

MODEL_SUFFIX = ".onnx"
INSTALL_HINT = "pip install 'ggic[onnx]' (or: pip install onnxruntime)"

#: ONNX Runtime's type strings -> numpy dtype names.
_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelLoadError(
            f"the model is an ONNX model but ONNX Runtime is not installed: {INSTALL_HINT} "
            f"({exc})") from None
    return onnxruntime


def find_onnx_file(model_dir: str | Path) -> tuple[Path, Path, Path | None]:
    """(directory, the .onnx file, the .meta or None); ModelLoadError unless exactly one."""
    directory, entries = model_dir_files(model_dir)
    models = [p for p in entries if p.suffix == MODEL_SUFFIX]
    if len(models) != 1:
        found = ", ".join(p.name for p in models) if models else "none"
        raise ModelLoadError(
            f"ModelDir {directory} is not an ONNX model: it needs exactly one *.onnx file "
            f"(found {found})")
    metas = [p for p in entries if p.suffix == ".meta"]
    return directory, models[0], metas[0] if len(metas) == 1 else None


def _spec(arg: Any, position: int) -> TensorSpec:
    dims = []
    for i, dim in enumerate(arg.shape or ()):
        if isinstance(dim, int) and dim >= 0:
            dims.append(dim)
        else:  # symbolic (a name or None): the batch is one image; anything else any size
            dims.append(1 if i == 0 else -1)
    return TensorSpec(str(arg.name), tuple(dims), _DTYPES.get(str(arg.type), str(arg.type)))


def _session(path: Path, threads: int = 0) -> Any:
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: ONNX Runtime's default (one per core)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings would go to stderr unescaped
    try:
        return ort.InferenceSession(str(path), sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:
        text = str(exc).strip() or type(exc).__name__
        raise ModelLoadError(
            f"ONNX Runtime could not load {path}: {text}. Check that the file is a complete "
            "ONNX model (re-copy or re-export it) and that its opset is supported by this "
            f"onnxruntime ({getattr(ort, '__version__', '?')})") from exc


def _signature(session: Any, path: Path, meta: Path | None) -> ModelSignature:
    signature = ModelSignature(
        tuple(_spec(a, i) for i, a in enumerate(session.get_inputs())),
        tuple(_spec(a, i) for i, a in enumerate(session.get_outputs())),
        str(path))
    described = read_meta(meta) if meta is not None else None
    if described is None:
        return signature
    return dataclasses.replace(signature, profile_name=described.profile_name,
                               preprocessing=described.preprocessing)


def _roles(model: Path, meta: Path | None) -> tuple[tuple[str, Path | None], ...]:
    return (("model", model), ("meta", meta))


class OnnxBackend(Backend):
    """An ONNX model in an ``onnxruntime.InferenceSession`` (CPUExecutionProvider)."""

    name = "onnx"
    model_files = "an ONNX model: one *.onnx"

    def __init__(self, model: ModelDirectory, session: Any) -> None:
        super().__init__(model, model.signature)
        self._session: Any = session
        self._output_names = [spec.name for spec in model.signature.outputs]
        self._path = dict(model.files)["model"]

    @classmethod
    def recognizes(cls, directory: Path) -> bool:
        return any(p.suffix == MODEL_SUFFIX for p in directory.iterdir() if p.is_file())

    @classmethod
    def inspect(cls, directory: Path) -> ModelDirectory:
        directory, path, meta = find_onnx_file(directory)
        session = _session(path, threads=1)
        return ModelDirectory(cls.name, directory, _roles(path, meta),
                              _signature(session, path, meta))

    @classmethod
    def open(cls, directory: Path) -> OnnxBackend:
        directory, path, meta = find_onnx_file(directory)
        session = _session(path)
        model = ModelDirectory(cls.name, directory, _roles(path, meta),
                               _signature(session, path, meta))
        return cls(model, session)

    def set_threads(self, count: int) -> None:
        """A new session with ``count`` intra-op threads (0: one per core)."""
        session = _session(self._path, threads=count)
        with self._lock:
            if not self._closed:
                self._session = session

    def _execute(self, inputs: Mapping[str, np.ndarray]) -> Sequence[Any]:
        return self._session.run(self._output_names, dict(inputs))

    def _finalize(self) -> None:
        self._session = None
