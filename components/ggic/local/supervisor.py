"""Many components: start order (dependencies first), HARD dependers restarted when a
dependency leaves a healthy state, reverse-order stop, and deployments' updates of the set."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Callable

from .component_logs import ComponentLog
from .component_runner import ComponentRunner
from .lifecycle_states import (
    DEPENDENCY_READY_STATES,
    ComponentSpec,
    RunnerSettings,
    State,
    StateCallback,
)

logger = logging.getLogger(__name__.rsplit(".", 1)[0] + ".lifecycle")


class DependencyCycleError(ValueError):
    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__("dependency cycle: " + " -> ".join(self.cycle))


def start_order(dependencies: Mapping[str, Iterable[str]]) -> list[str]:
    """Names ordered so that every component comes after its dependencies (ties by name).

    ``dependencies`` maps each name to the names it depends on; a cycle raises
    :class:`DependencyCycleError` naming it, a dependency not in the mapping ``KeyError``.
    """
    deps = {name: sorted(set(d)) for name, d in dependencies.items()}
    for name, names in deps.items():
        for dep in names:
            if dep not in deps:
                raise KeyError(f"{name} depends on {dep}, which is not among the components")
    order: list[str] = []
    done: set[str] = set()
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            raise DependencyCycleError(visiting[visiting.index(name):] + [name])
        visiting.append(name)
        for dep in deps[name]:
            visit(dep)
        visiting.pop()
        done.add(name)
        order.append(name)

    for name in sorted(deps):
        visit(name)
    return order


class Supervisor:
    """Starts components in dependency order, restarts them as the nucleus does, stops them
    in reverse order. ``env_for(name)`` gives each component's runtime environment (IPC socket
    path, SVCUID token...); ``base_env`` is added for every component."""

    def __init__(self, specs: Iterable[ComponentSpec], root: Path, *,
                 env_for: Callable[[str], Mapping[str, str]] | None = None,
                 base_env: Mapping[str, str] | None = None,
                 on_state_change: StateCallback | None = None,
                 settings: RunnerSettings | None = None) -> None:
        self.root = Path(root)
        self.settings = settings or RunnerSettings()
        self._env_for = env_for
        self._base_env = dict(base_env or {})
        self._callback = on_state_change
        self._cond = threading.Condition()
        self._specs: dict[str, ComponentSpec] = {}
        self._runners: dict[str, ComponentRunner] = {}
        self._order: list[str] = []
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"component {spec.name} given twice")
            self._specs[spec.name] = spec
        self._order = start_order({n: s.dependencies for n, s in self._specs.items()})
        for name in self._order:
            self._runners[name] = self._make_runner(self._specs[name])

    # construction helpers

    def _make_runner(self, spec: ComponentSpec) -> ComponentRunner:
        return ComponentRunner(
            spec, ComponentLog(self.root, spec.name),
            env_provider=lambda name=spec.name: self._environment(name),
            settings=self.settings,
            on_state_change=self._state_changed,
            dependencies_ready=lambda name=spec.name: self.dependencies_ready(name),
        )

    def _environment(self, name: str) -> dict[str, str]:
        env = dict(self._base_env)
        if self._env_for is not None:
            env.update(self._env_for(name))
        return env

    # queries

    @property
    def order(self) -> list[str]:
        return list(self._order)

    def runner(self, name: str) -> ComponentRunner:
        try:
            return self._runners[name]
        except KeyError:
            raise KeyError(f"no component {name!r} (have: {', '.join(self._order)})") from None

    def state(self, name: str) -> State:
        return self.runner(name).state

    def states(self) -> dict[str, State]:
        return {name: self._runners[name].state for name in self._order}

    def dependencies_ready(self, name: str) -> bool:
        specs, runners = self._specs, self._runners
        spec = specs.get(name)
        if spec is None:
            return False
        for dep, dep_type in spec.dependencies.items():
            if dep_type == "SOFT":
                continue
            runner = runners.get(dep)
            if runner is None or runner.state not in DEPENDENCY_READY_STATES:
                return False
        return True

    def hard_dependers(self, name: str) -> list[str]:
        specs = self._specs
        return [n for n in self._order if n in specs and specs[n].dependencies.get(name) == "HARD"]

    # waiting

    def wait_for(self, predicate: Callable[[Mapping[str, State]], bool],
                 timeout: float | None = None) -> bool:
        """Wait until ``predicate(states)`` holds; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.states()), timeout)

    def wait_for_state(self, name: str, states: State | Iterable[State],
                       timeout: float | None = None) -> bool:
        wanted = {states} if isinstance(states, State) else set(states)
        self.runner(name)
        return self.wait_for(lambda s: s[name] in wanted, timeout)

    # control

    def start_all(self) -> None:
        for name in self._order:
            self._runners[name].start()

    def start(self, name: str) -> None:
        self.runner(name).start()

    def stop(self, name: str, timeout: float | None = None) -> State:
        """Stop one component after its HARD dependers (as the nucleus waits for them)."""
        for depender in reversed(self.hard_dependers(name)):
            self.stop(depender, timeout)
        return self.runner(name).stop(timeout)

    def restart(self, name: str) -> bool:
        return self.runner(name).restart()

    def reinstall(self, name: str) -> None:
        self.runner(name).reinstall()

    def report_errored(self, name: str, reason: str = "the component reported ERRORED") -> bool:
        """A component's own UpdateState(ERRORED): see :meth:`ComponentRunner.report_errored`."""
        return self.runner(name).report_errored(reason)

    def report_running(self, name: str) -> bool:
        """A component's own UpdateState(RUNNING): see :meth:`ComponentRunner.report_running`."""
        return self.runner(name).report_running()

    def stop_all(self, timeout: float | None = None) -> dict[str, State]:
        for name in reversed(self._order):
            self._runners[name].stop(timeout)
        return self.states()

    def close(self, timeout: float | None = None) -> dict[str, State]:
        """Stop everything (reverse order) and end the runner threads."""
        states = self.stop_all(timeout)
        for name in reversed(self._order):
            self._runners[name].close(timeout)
        return states

    def update(self, specs: Iterable[ComponentSpec], reinstall: Iterable[str] = (),
               before_start: Callable[[], None] | None = None) -> list[str]:
        """Apply a new deployment: stop removed and changed components (dependers first),
        replace them and start the new and changed ones in dependency order; unchanged ones
        keep running. ``reinstall`` forces named components through Install again (e.g. their
        artifacts changed). ``before_start`` runs once they are stopped and before anything
        starts: the place to lay the new files out (``LocalDeployer.apply``). Returns the
        names (re)started."""
        new_specs = {s.name: s for s in specs}
        forced = set(reinstall)
        new_order = start_order({n: s.dependencies for n, s in new_specs.items()})
        replaced = {n for n in self._order
                    if n not in new_specs or n in forced
                    or not self._specs[n].same_service(new_specs[n])}
        for name in reversed(self._order):
            if name in replaced:
                self._runners[name].close()
        if before_start is not None:
            before_start()
        runners = {n: r for n, r in self._runners.items() if n not in replaced}
        fresh = [n for n in new_order if n not in runners]
        for name in fresh:
            runners[name] = self._make_runner(new_specs[name])
        with self._cond:  # swap whole dicts: runner threads read them without locks
            self._specs = new_specs
            self._runners = runners
            self._order = new_order
        for name in fresh:
            runners[name].start()
        return fresh

    # state changes from the runners

    def _state_changed(self, name: str, old: State, new: State) -> None:
        if self._callback is not None:
            try:
                self._callback(name, old, new)
            except Exception:
                logger.exception("state-change callback failed for %s", name)
        if new not in DEPENDENCY_READY_STATES:
            for depender in self.hard_dependers(name):
                runner = self._runners.get(depender)
                if runner is not None and runner.state in (State.STARTING, State.RUNNING):
                    logger.info("%s: restarting because dependency %s is %s", depender, name,
                                new.value)
                    runner.restart()
        for runner in list(self._runners.values()):
            runner.wake()
        with self._cond:
            self._cond.notify_all()
