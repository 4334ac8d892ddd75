"""Finding the files of a compiled DLR model and what its inputs and outputs are.

A DLR (TVM graph-runtime) model directory holds one kernel library ``*.so``, one graph
``*.json``, one ``*.params`` and optionally ``*.meta`` (JSON describing inputs and outputs)
and a ``libdlr.so``. DLR picks the files by extension and refuses a directory with two
``*.json`` files or a path containing ``:``; :func:`stage_for_dlr` works around both with a
directory of symbolic links.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PARAMS_MAGIC = 0xF7E58D4F05049CB7
RUNTIME_LIBRARY = "libdlr.so"
#: Environment variable naming a libdlr.so to use when the dlr package has none (aarch64, armv7l).
LIBRARY_ENV = "DLR_LIBRARY_PATH"


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


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


@dataclass(frozen=True)
class ModelSignature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    source: str
    #: What the .meta says about preprocessing, for ``ModelProfile: auto``: a profile name
    #: (``Model.Name``) and/or profile fields (``Model.Preprocessing``), as written by
    #: ``ggic model build-demo``. Neo's own .meta files carry neither.
    profile_name: str | None = None
    preprocessing: dict[str, Any] | None = None


def find_model_files(model_dir: str | Path) -> ModelFiles:
    directory = Path(model_dir)
    if not str(model_dir):
        raise ModelLoadError(
            "ModelDir is empty and no default model was provided: set ModelDir to the directory "
            "of a compiled DLR model (compiled .so, .params and graph .json)"
        )
    if not directory.is_dir():
        raise ModelLoadError(
            f"ModelDir {directory} does not exist or is not a directory: set ModelDir to the "
            "directory of a compiled DLR model, or deploy the model component it comes from"
        )
    try:
        entries = sorted(p for p in directory.iterdir() if p.is_file())
    except PermissionError:
        raise ModelLoadError(
            f"ModelDir {directory} is not readable by this component's user: copy the model "
            "into the component's work directory in a privileged Install step (the recipe does "
            "this for the ModelStore) or fix its permissions"
        ) from None
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
        try:
            signature = _signature_from_meta(json.loads(files.meta.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable %s (%s); reading the graph instead", files.meta, exc)
        else:
            if signature.inputs:
                return dataclasses.replace(signature, source=str(files.meta))
    return _signature_from_graph(files)


def _get(entry: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in entry:
            return entry[key]
    return None


def _signature_from_meta(meta: dict[str, Any]) -> ModelSignature:
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


def input_layout(shape: tuple[int, ...]) -> tuple[str, tuple[int, int]] | None:
    """("NCHW"|"NHWC", (height, width)) for a 4-D image input shape, if it is unambiguous."""
    if len(shape) != 4:
        return None
    channels_first = shape[1] in (1, 3)
    channels_last = shape[3] in (1, 3)
    if channels_first and not channels_last:
        return "NCHW", (int(shape[2]), int(shape[3]))
    if channels_last and not channels_first:
        return "NHWC", (int(shape[1]), int(shape[2]))
    return None


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
            raise ModelLoadError(f"temporary directory {staging} contains ':'; set TMPDIR")
        links = [files.graph, files.params, files.library, files.meta, files.runtime_library]
        for source in links:
            if source is not None:
                (staging / source.name).symlink_to(source.resolve())
        if use_env_runtime:
            runtime = Path(extra_runtime)  # type: ignore[arg-type]
            if not runtime.is_file():
                raise ModelLoadError(f"{LIBRARY_ENV}={runtime} is not a file")
            (staging / RUNTIME_LIBRARY).symlink_to(runtime.resolve())
        log.info("staged model %s as %s for DLR", files.directory, staging)
        self.path = staging

    def close(self) -> None:
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None
