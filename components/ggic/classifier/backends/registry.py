"""The inference backends by name, and the choice of one for a model directory.

Adding a backend: write ``backends/<name>.py`` with a :class:`~.base.Backend` subclass and add
one line to :data:`BACKENDS`. Backend modules import their inference library only when a model
is opened, so every registered backend can be listed (and ``Backend: auto`` can look at a
directory) on a machine that has only some of the libraries.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .base import Backend, ModelLoadError, model_dir_files

AUTO = "auto"

#: name (the ``Backend`` configuration value) -> "module:class" in this package.
BACKENDS: dict[str, str] = {
    "dlr": "dlr:DlrBackend",
    "onnx": "onnx:OnnxBackend",
}

#: The values the ``Backend`` configuration key accepts.
BACKEND_CHOICES: tuple[str, ...] = (AUTO, *BACKENDS)


def backend_class(name: str) -> type[Backend]:
    """The backend registered as ``name``; ValueError for an unknown name."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown backend {name!r}; known: {', '.join(BACKEND_CHOICES)}") from None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(f".{module_name}", __package__)
    return getattr(module, class_name)


def all_backends() -> list[type[Backend]]:
    return [backend_class(name) for name in BACKENDS]


def choose_backend(name: str, model_dir: str | Path) -> type[Backend]:
    """The backend for ``model_dir``: ``name``'s, or with ``auto`` the only one whose files the
    directory holds. ModelLoadError saying what to do when none or several fit."""
    if name != AUTO:
        try:
            return backend_class(name)
        except ValueError as exc:
            raise ModelLoadError(f"Backend {exc}") from None
    directory, _entries = model_dir_files(model_dir)
    backends = all_backends()
    fitting = [cls for cls in backends if cls.recognizes(directory)]
    if len(fitting) == 1:
        return fitting[0]
    kinds = "; or ".join(f"{cls.model_files} (Backend: {cls.name})" for cls in backends)
    if not fitting:
        raise ModelLoadError(f"ModelDir {directory} holds no model files: it needs {kinds}")
    names = ", ".join(cls.name for cls in fitting)
    raise ModelLoadError(
        f"ModelDir {directory} holds model files of several backends ({names}): set Backend "
        "to the one to use, or keep one model per directory")


def inspect_model(name: str, model_dir: str | Path):  # noqa: ANN201 - a ModelDirectory
    """The files and signature of the model in ``model_dir``, without loading it."""
    return choose_backend(name, model_dir).inspect(Path(model_dir))
