"""Waiting in tests: every wait has a deadline, so a test that would hang fails instead."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 15.0


def wait_until(predicate: Callable[[], T], timeout: float = DEFAULT_TIMEOUT,
               step: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; AssertionError
    (naming the predicate) once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {predicate}")
        time.sleep(step)
