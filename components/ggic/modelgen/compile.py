"""Compile kernel C sources into the shared library of a DLR model directory."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: Directory of ``tvm_abi.h`` and the bundled kernels; always on the include path.
KERNELS_DIR = Path(__file__).resolve().parent / "kernels"


class KernelCompileError(RuntimeError):
    """The C compiler failed; the message carries its command line and stderr."""

    def __init__(self, command: Sequence[str], returncode: int, stderr: str) -> None:
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(
            f"kernel compilation failed (exit {returncode}): {shlex.join(self.command)}\n{stderr}"
        )


def compiler_command() -> list[str]:
    """The C compiler to use: ``$CC`` (may hold arguments) or ``gcc``."""
    return shlex.split(os.environ.get("CC", "").strip() or "gcc")


def compile_kernel_library(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    *,
    openmp: bool = False,
    extra_flags: Sequence[str] = (),
    include_dirs: Sequence[str | os.PathLike] = (),
    opt_level: str = "-O3",
) -> Path:
    """Compile C ``sources`` (paths) into the shared library ``out_path``; return its path.

    Flags: ``opt_level -shared -fPIC -fvisibility=hidden`` (kernels export themselves with
    ``GGIC_KERNEL``), the ``kernels`` directory and ``include_dirs`` on the include path,
    ``-lm``. ``openmp=True`` adds ``-fopenmp`` and ``-Wl,-z,nodelete``: an OpenMP kernel
    library that is unloaded while libgomp's worker threads still reference it crashes the
    process when the DLRModel is freed or at interpreter exit. ``extra_flags`` come last.

    The library is built beside ``out_path`` and renamed over it, so a process that has the
    old file mapped is not disturbed. Raises :class:`KernelCompileError` with the compiler's
    stderr on failure, FileNotFoundError for a missing source or compiler.
    """
    paths = (
        [Path(sources)] if isinstance(sources, (str, os.PathLike)) else [Path(s) for s in sources]
    )
    if not paths:
        raise ValueError("no kernel sources given")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"kernel source {p} does not exist")
    out = Path(out_path).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    cc = compiler_command()
    if shutil.which(cc[0]) is None:
        raise FileNotFoundError(f"C compiler {cc[0]!r} not found (set $CC)")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    command = [
        *cc,
        opt_level,
        "-shared",
        "-fPIC",
        "-fvisibility=hidden",
        "-Wall",
        f"-I{KERNELS_DIR}",
        *(f"-I{Path(d)}" for d in include_dirs),
        *(["-fopenmp", "-Wl,-z,nodelete"] if openmp else []),
        *(str(p) for p in paths),
        "-o",
        str(tmp),
        "-lm",
        *extra_flags,
    ]
    log.debug("compiling kernels: %s", shlex.join(command))
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KernelCompileError(command, result.returncode, result.stderr)
        if result.stderr.strip():
            log.warning("kernel compiler warnings for %s:\n%s", out.name, result.stderr)
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("compiled %s from %d source(s)", out, len(paths))
    return out


def exported_symbols(library: str | os.PathLike) -> set[str] | None:
    """Names of the functions and variables ``library`` defines in its dynamic symbol table.

    Uses binutils' ``nm``; returns None when ``nm`` is not installed.
    """
    nm = shutil.which("nm")
    if nm is None:
        return None
    result = subprocess.run(
        [nm, "-D", "--defined-only", str(library)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        log.warning("nm failed on %s: %s", library, result.stderr.strip())
        return None
    symbols = set()
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            symbols.add(parts[2].split("@")[0])
    return symbols
