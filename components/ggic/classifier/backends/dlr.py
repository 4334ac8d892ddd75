"""The DLR backend: compiled Neo/TVM graph-runtime models run by ``libdlr.so`` (dlr==1.6.0).

Everything that knows DLR is here: importing ``dlr`` with its phone-home switched off, finding
a model's files, staging a directory DLR accepts, loading, and explaining failures.

A DLR model directory holds one kernel library ``*.so``, one graph ``*.json``, one ``*.params``
and optionally ``*.meta`` (JSON describing inputs and outputs) and a ``libdlr.so``. DLR picks
the files by extension and refuses a directory with two ``*.json`` files or a path containing
``:``; :class:`StagedModel` works around both with a directory of symbolic links.

The phone-home: ``import dlr`` normally imports ``dlr.counter``, which rewrites
``site-packages/dlr/counter/ccm_config.json`` and, on every model load, POSTs device and model
metrics to an AWS endpoint without a timeout (the C library makes no network calls).
:func:`import_dlr` places a stand-in ``dlr.counter`` module in ``sys.modules`` before ``dlr``
is imported, so ``dlr.api`` binds a no-op ``call_phone_home`` decorator: nothing is written
into site-packages and nothing reaches the network.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import struct
import sys
import tempfile
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from .base import (
    Backend,
    ModelDirectory,
    ModelLoadError,
    ModelSignature,
    TensorSpec,
    model_dir_files,
)
from .dlr_locate import DlrUnavailable, prepare_dlr
from .meta import read_meta

log = logging.getLogger(__name__)

PARAMS_MAGIC = 0xF7E58D4F05049CB7
RUNTIME_LIBRARY = "libdlr.so"
#: Environment variable naming a libdlr.so to use when the dlr package has none (aarch64, armv7l).
LIBRARY_ENV = "DLR_LIBRARY_PATH"
COUNTER_MODULE = "dlr.counter"
#: Extensions that make a directory look like a DLR model (for ``Backend: auto``).
MODEL_SUFFIXES = (".so", ".params", ".json")

F = TypeVar("F", bound=Callable[..., Any])


# -- importing dlr without its phone-home -------------------------------------------------------
def _no_phone_home(func: F) -> F:
    return func


def _counter_stub() -> types.ModuleType:
    stub = types.ModuleType(COUNTER_MODULE)
    stub.__doc__ = "ggic stand-in: DLR phone-home disabled."
    stub.call_phone_home = _no_phone_home  # type: ignore[attr-defined]
    return stub


def import_dlr() -> types.ModuleType:
    """Return the ``dlr`` module, imported with phone-home disabled.

    Raises RuntimeError if ``dlr`` was already imported with its real counter module, since
    that import has already enabled the phone-home.
    """
    existing = sys.modules.get("dlr")
    counter = sys.modules.get(COUNTER_MODULE)
    if existing is not None:
        if counter is None or getattr(counter, "call_phone_home", None) is not _no_phone_home:
            raise RuntimeError(
                "dlr was imported before ggic could disable its phone-home; "
                "import dlr only through ggic.classifier.backends.dlr.import_dlr()"
            )
        return existing
    sys.modules[COUNTER_MODULE] = _counter_stub()
    return importlib.import_module("dlr")


# -- the files of a model -----------------------------------------------------------------------
@dataclass(frozen=True)
class ModelFiles:
    directory: Path
    graph: Path
    params: Path
    library: Path
    meta: Path | None = None
    runtime_library: Path | None = None

    @property
    def needs_staging(self) -> bool:
        """DLR would refuse the directory as it is (extra *.json, or ':' in the path)."""
        jsons = [p for p in self.directory.iterdir() if p.suffix == ".json"]
        sos = [p for p in self.directory.iterdir()
               if p.suffix == ".so" and p.name != RUNTIME_LIBRARY]
        return len(jsons) > 1 or len(sos) > 1 or ":" in str(self.directory.resolve())

    def roles(self) -> tuple[tuple[str, Path | None], ...]:
        return (("graph", self.graph), ("params", self.params), ("kernels", self.library),
                ("meta", self.meta), (RUNTIME_LIBRARY, self.runtime_library))


def find_model_files(model_dir: str | Path) -> ModelFiles:
    directory, entries = model_dir_files(model_dir)
    libraries = [p for p in entries if p.suffix == ".so" and p.name != RUNTIME_LIBRARY]
    params = [p for p in entries if p.suffix == ".params"]
    graphs = [p for p in entries if p.suffix == ".json" and _is_graph_json(p)]
    metas = [p for p in entries if p.suffix == ".meta"]
    problems = []
    for kind, found in (("kernel library *.so", libraries), ("*.params", params),
                        ("graph *.json", graphs)):
        if not found:
            problems.append(f"no {kind}")
        elif len(found) > 1:
            problems.append(f"several {kind} files ({', '.join(p.name for p in found)})")
    if problems:
        raise ModelLoadError(
            f"ModelDir {directory} is not a compiled DLR model: {'; '.join(problems)}. "
            "A Neo/TVM graph-runtime model has exactly one of each."
        )
    runtime = directory / RUNTIME_LIBRARY
    return ModelFiles(
        directory=directory,
        graph=graphs[0],
        params=params[0],
        library=libraries[0],
        meta=metas[0] if len(metas) == 1 else None,
        runtime_library=runtime if runtime.is_file() else None,
    )


def _is_graph_json(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return b'"nodes"' in head or b'"arg_nodes"' in head or _graph_keys_anywhere(path)


def _graph_keys_anywhere(path: Path) -> bool:
    # The keys are usually near the start; look at the whole file only when they are not.
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "nodes" in data and "arg_nodes" in data


def read_signature(files: ModelFiles) -> ModelSignature:
    """Inputs and outputs from the .meta when it has them, otherwise from the graph."""
    if files.meta is not None:
        signature = read_meta(files.meta)
        if signature is not None and signature.inputs:
            return signature
        log.warning("%s names no inputs; reading the graph instead", files.meta)
    return _signature_from_graph(files)


def _signature_from_graph(files: ModelFiles) -> ModelSignature:
    try:
        graph = json.loads(files.graph.read_text(encoding="utf-8"))
        nodes = graph["nodes"]
        row_ptr = graph["node_row_ptr"]
        shapes = graph["attrs"]["shape"][1]
        dtypes = graph["attrs"]["dltype"][1]
        weight_names = set(read_param_names(files.params))
        inputs = []
        for nid in graph["arg_nodes"]:
            name = nodes[nid]["name"]
            if name in weight_names:
                continue
            entry = row_ptr[nid]
            inputs.append(TensorSpec(name, tuple(shapes[entry]), dtypes[entry]))
        outputs = []
        for i, (nid, index, _version) in enumerate(graph["heads"]):
            entry = row_ptr[nid] + index
            outputs.append(TensorSpec(f"output{i}", tuple(shapes[entry]), dtypes[entry]))
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ModelLoadError(f"cannot read the graph {files.graph}: {exc}") from None
    return ModelSignature(tuple(inputs), tuple(outputs), str(files.graph))


def read_param_names(path: Path) -> list[str]:
    """The names stored in a TVM ``.params`` file (its header only)."""
    with path.open("rb") as f:
        header = f.read(24)
        if len(header) < 24:
            raise ValueError(f"{path} is too short to be a .params file")
        magic, _reserved, count = struct.unpack("<QQQ", header)
        if magic != PARAMS_MAGIC:
            raise ValueError(f"{path} is not a TVM .params file (bad magic)")
        names = []
        for _ in range(count):
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 4096:
                raise ValueError(f"{path} has an implausible parameter name length")
            names.append(f.read(length).decode("utf-8"))
        return names


class StagedModel:
    """A directory DLR accepts: the model's own, or one of symbolic links to its files."""

    def __init__(self, files: ModelFiles) -> None:
        self.files = files
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        extra_runtime = os.environ.get(LIBRARY_ENV)
        use_env_runtime = bool(extra_runtime) and files.runtime_library is None
        if not files.needs_staging and not use_env_runtime:
            self.path = files.directory
            return
        self._tempdir = tempfile.TemporaryDirectory(prefix="ggic-model-")
        staging = Path(self._tempdir.name)
        if ":" in str(staging):
            self.close()
            raise ModelLoadError(f"temporary directory {staging} contains ':'; set TMPDIR")
        links = [files.graph, files.params, files.library, files.meta, files.runtime_library]
        for source in links:
            if source is not None:
                (staging / source.name).symlink_to(source.resolve())
        if use_env_runtime:
            runtime = Path(extra_runtime)  # type: ignore[arg-type]
            if not runtime.is_file():
                self.close()
                raise ModelLoadError(f"{LIBRARY_ENV}={runtime} is not a file")
            (staging / RUNTIME_LIBRARY).symlink_to(runtime.resolve())
        log.info("staged model %s as %s for DLR", files.directory, staging)
        self.path = staging

    def close(self) -> None:
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None


def dlr_library_for(model_dir: str | Path) -> str:
    """The libdlr.so DLR 1.6 will load for ``model_dir`` (its own search, ``dlr.libpath``);
    raises its DLRLibraryNotFound. Call after :func:`import_dlr`."""
    from dlr.libpath import find_lib_path  # type: ignore[import-not-found]

    return str(find_lib_path(model_path=str(model_dir), use_default_dlr=False))


def explain_dlr_failure(files: ModelFiles, exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if type(exc).__name__ == "DLRLibraryNotFound" or "Cannot find DLR Library" in text:
        return (
            "DLR's native library libdlr.so was not found. On x86_64 Linux install dlr==1.6.0 "
            "(its wheel ships libdlr.so); on aarch64/armv7l put a libdlr.so built for the device "
            f"in the model directory or name it in ${LIBRARY_ENV}. ({text})"
        )
    if isinstance(exc, ImportError):
        return f"the dlr package is not installed: pip install dlr==1.6.0 ({text})"
    return (
        f"DLR could not load the model in {files.directory}: {text}. Check that the model was "
        "compiled for this device's architecture and for the 'cpu' target."
    )


# -- the backend ----------------------------------------------------------------------------------
class DlrBackend(Backend):
    """A compiled Neo/TVM model in ``dlr.DLRModel`` (CPU)."""

    name = "dlr"
    model_files = "a compiled DLR model: one kernel library *.so, one *.params, one graph *.json"

    def __init__(self, model: ModelDirectory, files: ModelFiles, signature: ModelSignature,
                 staged: StagedModel, dlr_model: Any) -> None:
        super().__init__(model, signature)
        self.files = files
        self._staged = staged
        self._model: Any = dlr_model

    @classmethod
    def recognizes(cls, directory: Path) -> bool:
        return any(p.suffix in MODEL_SUFFIXES and p.name != RUNTIME_LIBRARY
                   for p in directory.iterdir() if p.is_file())

    @classmethod
    def inspect(cls, directory: Path) -> ModelDirectory:
        files = find_model_files(directory)
        return ModelDirectory(cls.name, files.directory, files.roles(), read_signature(files))

    @classmethod
    def open(cls, directory: Path) -> DlrBackend:
        files = find_model_files(directory)
        signature = read_signature(files)
        model = ModelDirectory(cls.name, files.directory, files.roles(), signature)
        staged = StagedModel(files)
        try:
            # imports dlr; logs which libdlr.so, its version
            dlr = prepare_dlr(staged.path, import_dlr, dlr_library_for)
            dlr_model = dlr.DLRModel(str(staged.path), "cpu", use_default_dlr=False)
        except DlrUnavailable:
            staged.close()
            raise
        except Exception as exc:
            staged.close()
            raise ModelLoadError(explain_dlr_failure(files, exc)) from exc
        return cls(model, files, signature, staged, dlr_model)

    def output_names(self) -> tuple[str, ...]:
        with self._lock:
            if self._model is None:
                return ()
            return tuple(self._model.get_output_names() or ())

    def _execute(self, inputs: Mapping[str, np.ndarray]) -> Sequence[Any]:
        return self._model.run(dict(inputs))

    def _finalize(self) -> None:
        self._model = None
        self._staged.close()
