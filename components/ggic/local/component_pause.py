"""PauseComponent / ResumeComponent: freeze and thaw a component's processes.

The nucleus (GenericExternalService.pause, on Linux through the cgroup freezer) freezes a
RUNNING generic component's processes and keeps reporting it RUNNING; ``resume`` thaws them.
Here the Run step's process group gets SIGSTOP / SIGCONT (its children included, as with the
freezer). A paused component that leaves RUNNING (stop, restart, crash) is thawed first, so its
Shutdown and SIGTERM take effect. Errors, as LifecycleIPCEventStreamAgent words them, are raised
as :mod:`ipc_errors` so the IPC handler can pass them on.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Callable

from .ipc_errors import InvalidArgumentsError, ResourceNotFoundError, ServiceError
from .lifecycle_states import State

log = logging.getLogger("ggic.local.runtime")


class ComponentPauser:
    """``state_of(name)`` raises KeyError for an unknown component; ``process_of(name)`` is the
    Run process's pid (its group's leader) or None; ``is_generic(name)`` is False for built-ins."""

    def __init__(self, state_of: Callable[[str], State], process_of: Callable[[str], int | None],
                 is_generic: Callable[[str], bool]) -> None:
        self._state_of = state_of
        self._process_of = process_of
        self._is_generic = is_generic
        self._lock = threading.Lock()
        self._paused: dict[str, int] = {}  # name -> the paused process group

    def _check(self, name: str) -> State:
        if sys.platform.startswith("win"):
            raise ServiceError("Pause/resume component not supported on this platform.")
        try:
            state = self._state_of(name)
        except KeyError:
            raise ResourceNotFoundError("") from None
        return state

    def pause(self, name: str) -> None:
        state = self._check(name)
        if not self._is_generic(name):
            raise InvalidArgumentsError("Only generic components can be paused.")
        if state != State.RUNNING:
            raise InvalidArgumentsError(f"Component {name} is not running")
        with self._lock:
            if name in self._paused:
                return  # the nucleus: pausing a paused component does nothing
            group = self._process_of(name)
            if group is not None:
                try:
                    os.killpg(group, signal.SIGSTOP)
                except OSError as exc:
                    raise ServiceError(f"Failed to pause component {name} due to : {exc}") \
                        from None
            self._paused[name] = group if group is not None else 0
        log.info("%s paused", name)

    def resume(self, name: str) -> None:
        self._check(name)
        if not self._is_generic(name):
            raise InvalidArgumentsError("Only generic components can be resumed.")
        if not self._thaw(name):
            raise InvalidArgumentsError(f"Component {name} is not paused")
        log.info("%s resumed", name)

    def forget(self, name: str) -> None:
        """The component left RUNNING: thaw it (if paused) so it can stop."""
        if self._thaw(name):
            log.info("%s resumed: it left RUNNING while paused", name)

    def _thaw(self, name: str) -> bool:
        with self._lock:
            group = self._paused.pop(name, None)
        if group is None:
            return False
        if group:
            try:
                os.killpg(group, signal.SIGCONT)
            except ProcessLookupError:
                pass
            except OSError as exc:
                raise ServiceError(f"Failed to resume component {name} due to : {exc}") \
                    from None
        return True
