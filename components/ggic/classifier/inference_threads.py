"""How many threads a model's inference uses (the ``InferenceThreads`` setting).

A compiled DLR model parallelises with one of two thread pools, and both are per calling thread:

- **OpenMP** (the kernels ``ggic model build-demo`` generates; any kernel library built with
  ``-fopenmp``): libgomp keeps the team size (the ``nthreads-var`` ICV) per thread.
  ``omp_set_num_threads(n)`` called *on the inference thread* sets the size of the teams that
  thread starts, whenever libgomp was loaded; ``OMP_NUM_THREADS`` is read only once, when
  libgomp loads, so it is not enough on its own.
- **a library's own pool** (ONNX Runtime's intra-op threads): the backend's ``set_threads``.
- **TVM's own pool** (models compiled by SageMaker Neo / TVM, run by the TVM runtime inside
  ``libdlr.so``): each thread that runs a model gets its own pool when it first launches
  parallel work, sized by ``TVM_NUM_THREADS`` (else ``OMP_NUM_THREADS``, else half the logical
  CPUs on x86_64). DLR's C API ``SetDLRNumThreads`` does nothing else than set
  ``TVM_NUM_THREADS`` (dlr 1.6.0's Python does not expose it), so setting the variable before
  the inference thread first runs a model is the runtime's own mechanism. The pool, once made,
  keeps its size: the setting takes effect when the component restarts.

:func:`apply_inference_threads` does both; call it on the thread that runs the model, after the
model is loaded (so that its OpenMP runtime is in the process) and before it first runs.
``OMP_WAIT_POLICY`` is left alone: with one thread there are no waiting team members, and with
more it can only be set before libgomp loads; ``benchmarks/run_all.py`` measures the trade-off.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: InferenceThreads 0: leave every runtime at its own default.
RUNTIME_DEFAULT = 0
#: OpenMP runtimes: GNU (libgomp, also bundled as libgomp-<hash>.so), LLVM (libomp), Intel.
_OPENMP_LIBRARY = re.compile(r"/lib(gomp|omp|iomp5)(-[0-9a-f]+)?\.so[.0-9]*$")


@dataclass(frozen=True)
class AppliedThreads:
    threads: int
    openmp_runtimes: tuple[str, ...]
    thread_name: str

    def describe(self) -> str:
        if self.threads == RUNTIME_DEFAULT:
            return "InferenceThreads 0: each runtime's default number of threads"
        openmp = ", ".join(Path(p).name for p in self.openmp_runtimes) or "none loaded"
        return (f"InferenceThreads {self.threads} on thread {self.thread_name}: "
                f"TVM_NUM_THREADS={self.threads}, OpenMP runtimes: {openmp}")


def loaded_openmp_runtimes(maps: str = "/proc/self/maps") -> list[str]:
    """Paths of the OpenMP runtime libraries mapped into this process."""
    try:
        text = Path(maps).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found: list[str] = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        path = parts[5] if len(parts) == 6 else ""
        if _OPENMP_LIBRARY.search(path) and path not in found:
            found.append(path)
    return found


def apply_inference_threads(threads: int, backend: Any = None) -> AppliedThreads:
    """Make the calling thread's model inference use ``threads`` threads (0: leave the
    runtimes' defaults). Call on the inference thread once the model is loaded; ``backend``
    (the model's :class:`~.backends.base.Backend`) also gets the count through its own
    ``set_threads`` (ONNX Runtime's intra-op pool, for one)."""
    name = threading.current_thread().name
    if threads == RUNTIME_DEFAULT:
        return AppliedThreads(threads, (), name)
    if threads < 0:
        raise ValueError(f"InferenceThreads must be 0 or more, got {threads}")
    if backend is not None:
        backend.set_threads(threads)
    # TVM's pool for this thread is sized from the environment when it is first needed. Set
    # only when it changes: setenv while other threads read the environment is not safe.
    if os.environ.get("TVM_NUM_THREADS") != str(threads):
        os.environ["TVM_NUM_THREADS"] = str(threads)
    applied = []
    for path in loaded_openmp_runtimes():
        try:
            runtime = ctypes.CDLL(path)  # already loaded: the same handle, nothing new
            runtime.omp_set_num_threads(ctypes.c_int(threads))  # this thread's teams
        except (OSError, AttributeError) as exc:
            log.warning("could not set the thread count of OpenMP runtime %s: %s", path, exc)
            continue
        applied.append(path)
    return AppliedThreads(threads, tuple(applied), name)
