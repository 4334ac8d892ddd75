"""Write a complete DLR model directory: graph JSON, ``.params``, kernel library, ``.meta``."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .compile import compile_kernel_library, exported_symbols
from .graph import GraphBuilder
from .meta import DEFAULT_TARGET_DEVICE, build_meta
from .params import write_params

log = logging.getLogger(__name__)

#: Extensions DLR picks model files by; a directory must hold exactly one of each.
_MODEL_EXTENSIONS = (".json", ".so", ".params", ".meta")


@dataclass
class ModelFiles:
    """The files of a written model directory."""

    directory: Path
    graph: Path
    params: Path
    library: Path
    meta: Path | None


def write_model_dir(
    out_dir: str | os.PathLike,
    graph: GraphBuilder,
    kernel_sources: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    graph_file: str = "compiled_model.json",
    stem: str = "compiled",
    openmp: bool = False,
    extra_flags: Sequence[str] = (),
    write_meta: bool = True,
    include_dirs: Sequence[str | os.PathLike] = (),
    opt_level: str = "-O3",
    target_device: str = DEFAULT_TARGET_DEVICE,
) -> ModelFiles:
    """Write ``<stem>.so``, ``<stem>.params``, ``graph_file`` and ``<stem>.meta`` to ``out_dir``.

    Everything DLR would refuse or misread is rejected with ValueError before anything is
    written: a ``:`` in the path, another ``*.json`` (or ``*.so``, ``*.params``, ``*.meta``)
    already in ``out_dir``, params and weight nodes that do not match one to one, a kernel
    name that a system library already defines (``dlsym`` would find that one). After
    compiling, the library must export every kernel the graph calls.
    """
    directory = Path(out_dir).absolute()
    _check_names(directory, graph_file, stem)
    graph_obj = graph.graph_json()  # validates params against weight nodes
    _check_kernel_names(graph.func_names)
    files = ModelFiles(
        directory=directory,
        graph=directory / graph_file,
        params=directory / f"{stem}.params",
        library=directory / f"{stem}.so",
        meta=directory / f"{stem}.meta" if write_meta else None,
    )
    directory.mkdir(parents=True, exist_ok=True)
    _check_no_strays(directory, files)

    compile_kernel_library(
        kernel_sources,
        files.library,
        openmp=openmp,
        extra_flags=extra_flags,
        include_dirs=include_dirs,
        opt_level=opt_level,
    )
    _check_exports(files.library, graph.func_names)
    write_params(files.params, graph.params)
    files.graph.write_text(json.dumps(graph_obj) + "\n", encoding="utf-8")
    if files.meta is not None:
        meta = build_meta(graph, target_device=target_device)
        files.meta.write_text(json.dumps(meta, indent=4) + "\n", encoding="utf-8")
    log.info(
        "wrote DLR model %s: %d nodes, %d params, kernels %s",
        directory,
        len(graph_obj["nodes"]),
        len(graph.params),
        ", ".join(graph.func_names),
    )
    return files


def _check_names(directory: Path, graph_file: str, stem: str) -> None:
    if ":" in str(directory):
        raise ValueError(f"model directory {directory} contains ':', which DLR cannot load")
    if not graph_file.endswith(".json") or Path(graph_file).name != graph_file:
        raise ValueError(f"graph_file {graph_file!r} must be a plain file name ending in .json")
    if not stem or Path(stem).name != stem or stem == "libdlr":
        raise ValueError(f"stem {stem!r} must be a plain file name (and not 'libdlr')")
    if ":" in graph_file or ":" in stem:
        raise ValueError("file names with ':' cannot be loaded by DLR")


def _check_no_strays(directory: Path, files: ModelFiles) -> None:
    ours = {files.graph.name, files.params.name, files.library.name, "libdlr.so"}
    if files.meta is not None:
        ours.add(files.meta.name)
    strays = sorted(
        p.name for p in directory.iterdir() if p.suffix in _MODEL_EXTENSIONS and p.name not in ours
    )
    if files.meta is None and (directory / f"{files.library.stem}.meta").exists():
        strays.append(f"{files.library.stem}.meta")
    if strays:
        raise ValueError(
            f"{directory} already holds {', '.join(strays)}: DLR picks model files by "
            "extension and refuses a directory with two *.json (or is misled by a second "
            "*.so/*.params/*.meta); write into an empty directory or move them away"
        )


def _system_libraries() -> list[ctypes.CDLL]:
    libs = [ctypes.CDLL(None)]
    for name in ("c", "m", "dl", "pthread"):
        found = ctypes.util.find_library(name)
        if found:
            with contextlib.suppress(OSError):  # listed but not loadable
                libs.append(ctypes.CDLL(found))
    return libs


def _check_kernel_names(func_names: Sequence[str]) -> None:
    libs = _system_libraries()
    for name in func_names:
        for lib in libs:
            try:
                lib[name]
            except AttributeError:
                continue
            raise ValueError(
                f"kernel name {name!r} is already defined by {lib._name or 'the process'}; "
                "dlsym could resolve it there instead of in the model library: prefix it "
                "(e.g. 'ggic_')"
            )


def _check_exports(library: Path, func_names: Sequence[str]) -> None:
    symbols = exported_symbols(library)
    if symbols is None:
        log.debug("nm not available: not checking the exports of %s", library)
        return
    missing = [n for n in func_names if n not in symbols]
    if missing:
        library.unlink(missing_ok=True)
        raise ValueError(
            f"the kernel library does not export {', '.join(missing)} (declare kernels with "
            "GGIC_KERNEL(name) from tvm_abi.h)"
        )
