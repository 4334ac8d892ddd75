"""Running components' lifecycles as processes, with the nucleus's states and restart rules.

This module names the public pieces; they live in lifecycle_states (states, specs, settings),
processes (scripts and Skipif), component_runner (one component's state machine) and
supervisor (many components).

One :class:`ComponentRunner` per component mirrors the nucleus's ``Lifecycle`` state machine:

* ``NEW``: (``Bootstrap`` when new or its version changed) and ``Install`` (120 s default);
  success -> ``INSTALLED``, failure -> ``ERRORED`` and ``Install`` again.
* ``INSTALLED``: waits until every HARD dependency is ``RUNNING``, ``STOPPING`` or
  ``FINISHED`` (SOFT dependencies are not waited for) -> ``STARTING``.
* ``STARTING``: ``Startup`` (120 s) -> ``RUNNING`` when it exits 0 or when the component
  reports RUNNING with UpdateState (its process runs on; UpdateState(ERRORED) is an error); a
  skipped or absent ``Startup`` -> ``Run`` is started -> ``RUNNING`` at once; no ``Run``, or a
  skipped one, -> ``FINISHED``.
* ``RUNNING``: ``Run`` exits 0 -> ``STOPPING`` -> ``FINISHED``; exits non-zero or runs past its
  ``Timeout`` -> ``ERRORED`` -> (``Recover``) -> ``STOPPING`` -> ``INSTALLED`` -> ... again.
* ``STOPPING``: ``Shutdown`` (15 s), then SIGTERM to the remaining lifecycle process group,
  SIGKILL after a grace period (the nucleus waits 5 s).
* The third ``ERRORED`` from the same state (``NEW``, ``STARTING`` or ``RUNNING``) within an
  hour becomes ``BROKEN`` instead; only a new deployment (:meth:`ComponentRunner.reinstall`)
  leaves ``BROKEN``.

Scripts run with ``sh -c`` in the component's work folder, with this process's environment plus
the runtime's (IPC socket, SVCUID...) plus the recipe's ``Setenv`` (lifecycle-wide, then the
step's own), as the user :mod:`.run_with` decides (as root: the component's user, root for
``RequiresPrivilege``; otherwise the current user, and a warning says RequiresPrivilege is not
applied). Each output line goes to ``<root>/logs/<component>.log``.

:class:`Supervisor` runs a set of components in dependency order, restarts HARD dependers when
a dependency leaves a healthy state, and stops them in reverse order. State changes are
reported through a callback, called from the runners' threads.
"""

from __future__ import annotations

from .component_runner import ComponentRunner
from .lifecycle_states import (
    DEPENDENCY_READY_STATES,
    ComponentSpec,
    RunnerSettings,
    State,
    StateCallback,
    StepResult,
    nucleus_environment,
)
from .processes import ScriptProcess, should_skip
from .supervisor import DependencyCycleError, Supervisor, start_order

__all__ = [
    "DEPENDENCY_READY_STATES", "ComponentRunner", "ComponentSpec", "DependencyCycleError",
    "RunnerSettings", "ScriptProcess", "State", "StateCallback", "StepResult", "Supervisor",
    "nucleus_environment", "should_skip", "start_order",
]
