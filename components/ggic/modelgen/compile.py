"""Compile kernel C sources into the shared library of a DLR model directory."""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Target:
    """A device a model's kernels are compiled for, as Neo's target platforms name them."""

    name: str
    machine: str
    """``uname -m`` of the device (the ModelStore's folder architecture)."""
    compiler: str
    """The C compiler that builds for it from an x86_64 Debian (``$CC`` still wins)."""
    debian_package: str
    march: str | None
    flags: tuple[str, ...] = ()
    devices: str = ""


#: ``ggic model build-demo --target``: this machine, or a cross-compiled device build.
TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("native", platform.machine(), "gcc", "gcc", "native",
           devices="this machine (-march=native)"),
    Target("linux-aarch64", "aarch64", "aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu",
           "armv8-a", devices="Raspberry Pi 3/4/5 with a 64-bit OS, Jetson Nano/TX2/Xavier"),
    Target("linux-armv7l", "armv7l", "arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf",
           "armv7-a", ("-mfpu=neon-vfpv4", "-mfloat-abi=hard"),
           devices="Raspberry Pi 2/3/4 with 32-bit Raspberry Pi OS"),
)}


def resolve_target(name: str) -> Target:
    """The target called ``name``; its compiler must be installed (or given in ``$CC``)."""
    try:
        target = TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; known: {', '.join(TARGETS)}") from None
    if not os.environ.get("CC", "").strip() and shutil.which(target.compiler) is None:
        raise FileNotFoundError(f"{target.compiler} is not installed: apt-get install "
                                f"{target.debian_package} (or name a compiler in $CC)")
    return target


@contextmanager
def target_compiler(target: Target) -> Iterator[None]:
    """Compile with ``target``'s compiler (unless ``$CC`` names one) inside the block."""
    saved = os.environ.get("CC")
    if not (saved or "").strip():
        os.environ["CC"] = target.compiler
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CC", None)
        else:
            os.environ["CC"] = saved


def record_target(meta_path: Path | None, target: Target) -> None:
    """Note in ``compiled.meta`` which device the kernels were compiled for."""
    if meta_path is None:
        return
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta.setdefault("Requirements", {})["TargetArchitecture"] = target.machine
    meta["Requirements"]["TargetPlatform"] = target.name
    meta_path.write_text(json.dumps(meta, indent=4) + "\n", encoding="utf-8")


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
