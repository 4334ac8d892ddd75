"""Import the ``dlr`` package with its phone-home switched off.

``import dlr`` normally imports ``dlr.counter``, which rewrites
``site-packages/dlr/counter/ccm_config.json`` and, on every model load, POSTs device and
model metrics to an AWS endpoint without a timeout. The C library makes no network calls.

We place a stand-in ``dlr.counter`` module in ``sys.modules`` before ``dlr`` is imported, so
``dlr.api`` binds our no-op ``call_phone_home`` decorator. Nothing is written into
site-packages and nothing reaches the network.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

COUNTER_MODULE = "dlr.counter"


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
                "import dlr only through ggic.classifier.dlr_import.import_dlr()"
            )
        return existing
    sys.modules[COUNTER_MODULE] = _counter_stub()
    return importlib.import_module("dlr")
