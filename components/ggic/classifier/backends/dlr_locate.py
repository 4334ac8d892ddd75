"""Which native DLR library (``libdlr.so``) the classifier runs on, its version, and why.

On x86_64 Linux the ``dlr==1.6.0`` wheel ships ``libdlr.so`` (at ``<venv>/dlr/libdlr.so``).
PyPI has no native library for aarch64/armv7l, so there the classifier uses AWS's public
``variant.DLR`` component, whose installer puts a DLR 1.6.0 build for the device into
``{MLRootPath}/greengrass_ml_dlr_venv`` (the Python ``dlr`` package in that venv's
site-packages, ``libdlr.so`` at ``greengrass_ml_dlr_venv/dlr/libdlr.so``). The recipe's arm
manifests name that venv in ``$GGIC_DLR_VENV``; the Install step builds the component's venv
on top of it and links its ``libdlr.so`` to ``<our venv>/dlr/libdlr.so``, the first place
DLR 1.6's own search (``dlr.libpath.find_lib_path``) looks.

:func:`prepare_dlr` imports ``dlr`` (phone-home off), asks DLR's own search which library it
will load for a model directory, checks that the library exports every C function the Python
``dlr`` 1.6 package calls, reads its version with ``GetDLRVersion`` and logs one line saying
all of that. A missing or unusable DLR raises :class:`DlrUnavailable`, whose message says what
to deploy.
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from .base import ModelLoadError

log = logging.getLogger(__name__)

#: Set by the recipe's aarch64/armv7l manifests: variant.DLR's venv
#: (``{variant.DLR:configuration:/MLRootPath}/greengrass_ml_dlr_venv``).
DLR_VENV_ENV = "GGIC_DLR_VENV"
VARIANT_DLR = "variant.DLR"
#: variant.DLR's installer puts this DLR release on every device.
EXPECTED_VERSION = "1.6.0"
#: Every C function the Python dlr 1.6.0 package (dlr/dlr_model.py) calls through ctypes.
REQUIRED_SYMBOLS = (
    "CreateDLRModel", "DeleteDLRModel", "RunDLRModel", "DLRGetLastError", "GetDLRBackend",
    "GetDLRHasMetadata", "GetDLRInput", "GetDLRInputName", "GetDLRInputType",
    "GetDLRNumInputs", "GetDLRNumOutputs", "GetDLRNumWeights", "GetDLROutput",
    "GetDLROutputName", "GetDLROutputShape", "GetDLROutputSizeDim", "GetDLROutputType",
    "GetDLRVersion", "GetDLRWeightName", "SetDLRInput",
)


class DlrUnavailable(ModelLoadError):
    """DLR's Python package or native library is missing or unusable; says what to deploy."""


@dataclass(frozen=True)
class DlrLibrary:
    path: Path
    """The ``libdlr.so`` DLR loads, as DLR names it."""
    resolved: Path
    """The same file with links resolved (variant.DLR's, when linked by the Install step)."""
    version: str
    python_version: str
    python_package: Path
    source: str

    def describe(self) -> str:
        where = str(self.path) if self.path == self.resolved else f"{self.path} -> {self.resolved}"
        return (f"DLR native library {where} (version {self.version}, from {self.source}); "
                f"Python dlr {self.python_version} at {self.python_package}")


def what_to_deploy() -> str:
    venv = os.environ.get(DLR_VENV_ENV)
    if venv:
        return (f"deploy {VARIANT_DLR} with this component (its installer puts DLR "
                f"{EXPECTED_VERSION} with libdlr.so into {venv}; check its log, "
                f"{VARIANT_DLR}.log, if it is deployed), then restart this component")
    return (f"on x86_64 Linux install dlr=={EXPECTED_VERSION} (its wheel ships libdlr.so); "
            f"on aarch64/armv7l deploy {VARIANT_DLR} with this component")


def library_version(path: Path) -> str:
    """``GetDLRVersion`` of the library at ``path`` (loads it: only call on a trusted file)."""
    lib = ctypes.CDLL(str(path))
    out = ctypes.c_char_p()
    if lib.GetDLRVersion(ctypes.byref(out)) != 0 or out.value is None:
        raise DlrUnavailable(f"{path}: GetDLRVersion failed")
    return out.value.decode("ascii", "replace")


def missing_symbols(path: Path) -> list[str]:
    lib = ctypes.CDLL(str(path))
    return [name for name in REQUIRED_SYMBOLS if not hasattr(lib, name)]


def _source(path: Path, resolved: Path, model_dir: Path) -> str:
    venv = os.environ.get(DLR_VENV_ENV)
    if venv and Path(venv).resolve() in resolved.parents:
        return f"{VARIANT_DLR} ({venv})"
    if path.parent == model_dir:
        return "the model directory" + (" ($DLR_LIBRARY_PATH)" if path.is_symlink() else "")
    return "the dlr package's environment"


def locate(dlr: ModuleType, model_dir: str | Path,
           library_for: Callable[[Path], str]) -> DlrLibrary:
    """The library ``dlr`` will load for ``model_dir``: DLR's own search (``library_for``,
    backends/dlr.py's ``dlr_library_for``: only that module imports dlr), checked."""
    model_dir = Path(model_dir)
    try:
        path = Path(library_for(model_dir))
    except Exception as exc:
        if type(exc).__name__ != "DLRLibraryNotFound":
            raise
        first = str(exc).splitlines()[0]
        raise DlrUnavailable(f"DLR's native library libdlr.so was not found ({first}): "
                             f"{what_to_deploy()}") from None
    resolved = path.resolve()
    try:
        missing = missing_symbols(resolved)
        version = library_version(resolved) if not missing else "unknown"
    except OSError as exc:
        raise DlrUnavailable(f"{resolved} cannot be loaded ({exc}): it must be DLR "
                             f"{EXPECTED_VERSION} built for this device; {what_to_deploy()}"
                             ) from None
    python_version = str(getattr(dlr, "__version__", "unknown"))
    if missing:
        raise DlrUnavailable(
            f"{resolved} lacks {', '.join(missing)}, which the Python dlr {python_version} "
            f"calls: it is not DLR {EXPECTED_VERSION}'s library; {what_to_deploy()}")
    library = DlrLibrary(path, resolved, version, python_version,
                         Path(dlr.__file__).parent, _source(path, resolved, model_dir))
    if version != python_version:
        log.warning("DLR's native library %s is version %s but the Python dlr package is %s: "
                    "use the two from one DLR release", resolved, version, python_version)
    return library


def prepare_dlr(model_dir: str | Path, import_dlr: Callable[[], ModuleType],
                library_for: Callable[[Path], str]) -> ModuleType:
    """Import ``dlr`` (with ``import_dlr``) and log which native library it will load for
    ``model_dir``. Raises DlrUnavailable (a ModelLoadError) saying what to deploy when DLR is
    missing.
    """
    try:
        dlr = import_dlr()
    except ImportError as exc:
        raise DlrUnavailable(f"the Python package dlr is not installed ({exc}): "
                             f"{what_to_deploy()}") from None
    log.info("%s", locate(dlr, model_dir, library_for).describe())
    return dlr
