"""One component's lifecycle state machine (:class:`ComponentRunner`), with the nucleus's states
and restart rules: see the lifecycle module's docstring for the states and their steps."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Callable

from .component_logs import ComponentLog
from .lifecycle_states import ComponentSpec, RunnerSettings, State, StateCallback, StepResult
from .processes import ScriptProcess, should_skip, spawn_step, wait_for_step
from .recipe_lifecycle import LifecycleStep
from .run_with import ComponentUser

logger = logging.getLogger(__name__.rsplit(".", 1)[0] + ".lifecycle")

#: States the error counter applies to; a third ERRORED from one of them means BROKEN.
_COUNTED_STATES = frozenset({State.NEW, State.STARTING, State.RUNNING})


class ComponentRunner:
    """Runs one component's lifecycle in a background thread (see the module docstring)."""

    def __init__(self, spec: ComponentSpec, log: ComponentLog, *,
                 env_provider: Callable[[], Mapping[str, str]] | None = None,
                 settings: RunnerSettings | None = None,
                 on_state_change: StateCallback | None = None,
                 dependencies_ready: Callable[[], bool] | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.log = log
        self.settings = settings or RunnerSettings()
        self._env_provider = env_provider or dict
        self._on_state_change = on_state_change
        self._dependencies_ready = dependencies_ready or (lambda: True)
        self._cond = threading.Condition()
        self._state = State.NEW
        self._previous = State.NEW
        self._desired: State | None = None  # RUNNING or FINISHED
        self._restart_pending = False
        self._reinstall_pending = False
        self._bootstrap_pending = spec.run_bootstrap
        self._errors: dict[State, list[float]] = {}
        self._busy = False
        self._closed = False
        self._broken_cleaned = False
        self._run_process: ScriptProcess | None = None
        self._run_exit: int | None = None
        self._run_deadline: float | None = None
        self._generation = 0
        self._reported_error: str | None = None  # UpdateState(ERRORED) from the component
        self._reported_running = False  # UpdateState(RUNNING) during Startup
        self._run_is_startup = False  # the watched process is a Startup that reported RUNNING
        self._startup_process: ScriptProcess | None = None
        self._thread: threading.Thread | None = None
        self._user = ComponentUser(self.settings.users, spec.posix_user, Path(spec.work_dir),
                                   spec.artifact_dirs)

    # public API

    @property
    def state(self) -> State:
        return self._state

    def start(self) -> None:
        """Install (if needed) and run the component; returns at once."""
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name}: runner is closed")
            self._desired = State.RUNNING
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name=f"{self.name}-lifecycle")
                self._thread.start()

    @property
    def run_process_id(self) -> int | None:
        """The Run step's process (the leader of its process group), None when none runs."""
        return getattr(self._run_process, "pid", None)  # one read: it may change meanwhile

    def request_stop(self) -> None:
        with self._cond:
            self._desired = State.FINISHED
            self._restart_pending = False
            self._cond.notify_all()

    def stop(self, timeout: float | None = None) -> State:
        """Stop (Shutdown, then terminate) and wait until stopped; returns the final state."""
        self.request_stop()
        self.wait_until(self._settled, timeout)
        return self._state

    def restart(self) -> bool:
        """Stop and start again (the nucleus's requestRestart). False if never started or
        BROKEN (a BROKEN component needs :meth:`reinstall`)."""
        with self._cond:
            if self._desired is None and self._state == State.NEW:
                return False
            if self._state == State.BROKEN:
                logger.warning("%s is BROKEN; a new deployment (reinstall) is needed", self.name)
                return False
            self._desired = State.RUNNING
            self._restart_pending = True
            self._cond.notify_all()
        return True

    def report_errored(self, reason: str = "the component reported ERRORED") -> bool:
        """The component reported ERRORED itself (IPC UpdateState): handled like a crash, as
        the nucleus does (Recover, stop, start again; the third error within an hour ->
        BROKEN). The nucleus's Lifecycle accepts it from STARTING and RUNNING
        (ALLOWED_STATE_TRANSITION_FOR_REPORTING); False, and ignored, otherwise."""
        with self._cond:
            if self._state not in (State.STARTING, State.RUNNING) or self._closed:
                return False
            self._reported_error = reason
            self._cond.notify_all()
        return True

    def report_running(self) -> bool:
        """The component reported RUNNING (IPC UpdateState): during ``Startup`` that moves
        STARTING -> RUNNING and ends the startup timeout, the Startup process running on (the
        nucleus's Lifecycle.reportState; GenericExternalService.startup). False, and ignored,
        unless STARTING."""
        with self._cond:
            if self._state != State.STARTING or self._closed:
                return False
            self._reported_running = True
            self._cond.notify_all()
        return True

    def reinstall(self) -> None:
        """Install again from scratch and run (what a new deployment does; leaves BROKEN)."""
        with self._cond:
            self._reinstall_pending = True
        self.start()

    def wake(self) -> None:
        """Re-check dependencies (the supervisor calls this on every state change)."""
        with self._cond:
            self._cond.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_for_state(self, states: State | Iterable[State], timeout: float | None = None) -> bool:
        wanted = {states} if isinstance(states, State) else set(states)
        return self.wait_until(lambda: self._state in wanted, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Stop and end the runner's thread."""
        self.request_stop()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # state bookkeeping

    def _settled(self) -> bool:
        if self._busy:
            return False
        if self._state == State.BROKEN:
            return self._broken_cleaned  # its Shutdown still has to run
        return self._state == State.FINISHED or (
            self._state == State.NEW and self._desired != State.RUNNING)

    def _set_state(self, new: State, error_report: bool = False) -> None:
        with self._cond:
            old = self._state
            if old == new:
                return
            if not error_report:
                self._errors.pop(old, None)  # a healthy transition forgives old's errors
            self._previous = old
            self._state = new
            self._cond.notify_all()
        logger.info("%s: %s -> %s", self.name, old.value, new.value,
                    extra={"event_type": "service-set-state",
                           "context": {"serviceName": self.name, "currentState": old.value,
                                       "newState": new.value}})
        if self._on_state_change is not None:
            try:
                self._on_state_change(self.name, old, new)
            except Exception:  # a callback must not kill the lifecycle thread
                logger.exception("%s: state-change callback failed", self.name)

    def _report_error(self, reason: str) -> None:
        with self._cond:
            current = self._state
            broken = False
            if current in _COUNTED_STATES:
                now = time.monotonic()
                times = self._errors.setdefault(current, [])
                if times and now - times[-1] >= self.settings.error_reset_seconds:
                    times.clear()
                times.append(now)
                broken = len(times) >= self.settings.max_errors
        logger.error("%s: %s", self.name, reason,
                     extra={"event_type": "service-errored",
                            "context": {"serviceName": self.name, "currentState": current.value,
                                        "reason": reason}})
        self.log.event("ERROR", "service-errored", None, current.value, reason=reason)
        self._set_state(State.BROKEN if broken else State.ERRORED, error_report=True)

    # the lifecycle thread

    def _loop(self) -> None:
        handlers = {
            State.NEW: self._handle_new,
            State.INSTALLED: self._handle_installed,
            State.STARTING: self._handle_starting,
            State.RUNNING: self._handle_running,
            State.STOPPING: self._handle_stopping,
            State.ERRORED: self._handle_errored,
            State.BROKEN: self._handle_broken,
            State.FINISHED: self._handle_finished,
        }
        while True:
            with self._cond:
                if self._closed and self._settled():
                    return
                state = self._state
            try:
                handlers[state]()
            except Exception as exc:  # pragma: no cover - a bug; don't spin silently
                logger.exception("%s: lifecycle error in %s", self.name, state.value)
                self._report_error(f"internal error: {exc}")

    def _stop_wanted(self) -> bool:
        return self._desired != State.RUNNING or self._closed or self._reinstall_pending

    def _handle_new(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._desired == State.RUNNING or self._closed)
            if self._desired != State.RUNNING:
                return
            self._reinstall_pending = False
            self._restart_pending = False
            self._busy = True
        try:
            if self.spec.builtin:
                result = StepResult.NOTHING
            else:
                result = StepResult.OK
                if self._bootstrap_pending:
                    result = self._run_bootstrap()
                if result in (StepResult.OK, StepResult.SKIPPED, StepResult.NOTHING):
                    result = self._run_foreground("Install", self._stop_wanted)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        if result == StepResult.ABORTED:
            return
        if result in (StepResult.OK, StepResult.SKIPPED, StepResult.NOTHING):
            self._set_state(State.INSTALLED)
        else:
            self._report_error(f"Install {result.value.lower()}")

    def _run_bootstrap(self) -> StepResult:
        step = self.spec.lifecycle.step("Bootstrap")
        result = self._run_foreground("Bootstrap", self._stop_wanted)
        if result == StepResult.FAILED and step is not None and self._last_exit in (100, 101):
            logger.warning("%s: Bootstrap asked for a %s restart (exit %d); not done locally",
                           self.name, "nucleus" if self._last_exit == 100 else "device",
                           self._last_exit)
            result = StepResult.OK
        if result in (StepResult.OK, StepResult.SKIPPED, StepResult.NOTHING):
            self._bootstrap_pending = False
        return result

    def _handle_installed(self) -> None:
        with self._cond:
            while True:
                if self._reinstall_pending:
                    target = State.NEW
                    break
                if self._desired != State.RUNNING or self._closed:
                    target = State.FINISHED
                    break
                if self._dependencies_ready():
                    self._restart_pending = False
                    target = State.STARTING
                    break
                self._cond.wait(self.settings.poll_interval * 10)
        self._set_state(target)

    def _handle_starting(self) -> None:
        with self._cond:
            if self._stop_wanted() or self._restart_pending:
                stop = True
            else:
                stop = False
                self._busy = True
        if stop:
            self._set_state(State.STOPPING)
            return
        try:
            self._start_service()
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _start_service(self) -> None:
        with self._cond:
            self._reported_error = None  # a report about an earlier run
            self._reported_running = False
        if self.spec.builtin:
            self._set_state(State.RUNNING)
            return
        lifecycle = self.spec.lifecycle
        startup = lifecycle.step("Startup")
        if startup is not None and startup.script.strip():
            result = self._run_foreground(
                "Startup", lambda: self._stop_wanted() or self._restart_pending,
                watch_reports=True)
            if result not in (StepResult.SKIPPED, StepResult.REPORTED_RUNNING,
                              StepResult.REPORTED_ERRORED):
                self.log.event("INFO", None, "Startup script exited", State.STARTING.value,
                               exitCode=self._last_exit)
            if result == StepResult.ABORTED:
                self._set_state(State.STOPPING)
                return
            if result == StepResult.OK:
                self._set_state(State.RUNNING)
                return
            if result == StepResult.REPORTED_RUNNING:
                self._watch_startup()
                return
            if result == StepResult.REPORTED_ERRORED:
                with self._cond:
                    reason, self._reported_error = self._reported_error, None
                self._report_error(reason or "the component reported ERRORED")
                return
            if result != StepResult.SKIPPED:
                self._report_error(f"Startup {result.value.lower()}")
                return
            # GenericExternalService.startup: a Startup that did nothing (skipped) -> Run
        run = lifecycle.step("Run")
        if run is None or not run.script.strip():
            with self._cond:
                self._desired = State.FINISHED  # nothing to run: the nucleus finishes it
            self._set_state(State.FINISHED)
            return
        env = self._step_env(run)
        try:
            if run.skipif and should_skip(run.skipif, env):
                self.log.event("DEBUG", "generic-service-skipped", None, State.STARTING.value,
                               script=run.script_name(self.name))
                # GenericExternalService.handleRunScript: NothingDone -> reportState(FINISHED)
                with self._cond:
                    self._desired = State.FINISHED
                self._set_state(State.FINISHED)
                return
        except ValueError as exc:
            self._report_error(str(exc))
            return
        process = self._spawn(run, env)
        if process is None:
            self._report_error("Run script could not be started")
            return
        with self._cond:
            self._generation += 1
            generation = self._generation
            self._run_process = process
            self._run_is_startup = False
            self._run_exit = None
            timeout = run.effective_timeout
            self._run_deadline = None if timeout is None else time.monotonic() + timeout
        threading.Thread(target=self._watch_run, args=(process, generation), daemon=True,
                         name=f"{self.name}-run-watch").start()
        self._set_state(State.RUNNING)

    def _watch_startup(self) -> None:
        """RUNNING, reported by a Startup still running: watch it as the Run process is watched
        (a non-zero exit is an error; exit 0 changes nothing, as in the nucleus); no timeout."""
        with self._cond:
            process, self._startup_process = self._startup_process, None
            self._generation += 1
            generation = self._generation
            self._run_process = process
            self._run_is_startup = True
            self._run_exit = None
            self._run_deadline = None
        self.log.event("INFO", None, "Startup reported RUNNING", State.STARTING.value)
        if process is not None:
            threading.Thread(target=self._watch_run, args=(process, generation), daemon=True,
                             name=f"{self.name}-startup-watch").start()
        self._set_state(State.RUNNING)

    def _watch_run(self, process: ScriptProcess, generation: int) -> None:
        code = process.wait()
        self.log.event("INFO", None, "Run script exited", self._state.value, exitCode=code)
        logger.info("%s: Run script exited with %s", self.name, code)
        with self._cond:
            if generation == self._generation:
                self._run_exit = code
                self._cond.notify_all()

    def _handle_running(self) -> None:
        outcome = "stop"
        reason = ""
        code = None
        with self._cond:
            while True:
                if self._run_exit is not None:
                    code = self._run_exit
                    self._run_exit = None
                    self._run_process = None
                    if code == 0 and self._run_is_startup:
                        continue  # a Startup that reported RUNNING, then exited cleanly
                    outcome = "exit"
                    break
                if self._reported_error is not None:
                    reason, self._reported_error = self._reported_error, None
                    outcome = "reported"
                    break
                if self._stop_wanted() or self._restart_pending:
                    break
                deadline = self._run_deadline
                if deadline is not None and self._run_process is not None \
                        and time.monotonic() >= deadline:
                    outcome = "timeout"
                    break
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._cond.wait(wait)
        if outcome == "exit" and code == 0:
            with self._cond:
                self._desired = State.FINISHED  # the nucleus's requestStop on a clean exit
            self._set_state(State.STOPPING)
        elif outcome == "exit":
            self._report_error(f"Run script exited with {code}")
        elif outcome == "reported":
            self._report_error(reason)  # then Recover, and STOPPING ends the Run process
        elif outcome == "timeout":
            self.log.event("WARN", "service-run-timed-out",
                           "Service failed to run within timeout, calling close in process",
                           State.RUNNING.value)
            self._terminate_run()
            self._report_error("Run timed out")
        else:
            self._set_state(State.STOPPING)

    def _terminate_run(self) -> None:
        with self._cond:
            self._generation += 1  # its exit is expected: don't report it
            process, self._run_process = self._run_process, None
            self._run_exit = None
            self._run_deadline = None
        if process is not None:
            process.terminate(self.settings.grace_period)

    def _shutdown(self) -> StepResult:
        result = self._run_foreground("Shutdown", None)
        self._terminate_run()
        return result

    def _handle_stopping(self) -> None:
        with self._cond:
            self._busy = True
        try:
            result = self._shutdown()
        finally:
            with self._cond:
                self._busy = False
        if result == StepResult.TIMEOUT:
            self._report_error("Timeout in shutdown")  # ERRORED from STOPPING, then on
            return
        self._set_state(self._after_stop())

    def _after_stop(self) -> State:
        with self._cond:
            if self._reinstall_pending and not self._closed:
                return State.NEW
            if self._desired == State.RUNNING and not self._closed:
                self._restart_pending = False
                return State.INSTALLED
            return State.FINISHED

    def _handle_errored(self) -> None:
        previous = self._previous
        if not self.spec.builtin:
            self._run_foreground("Recover", None)
        with self._cond:
            if self._desired is None:
                self._desired = State.RUNNING
        if previous in (State.STARTING, State.RUNNING):
            self._set_state(State.STOPPING)
        elif previous == State.NEW:
            self._set_state(State.NEW)
        else:
            self._set_state(self._after_stop())

    def _handle_broken(self) -> None:
        if not self._broken_cleaned:
            with self._cond:
                self._busy = True
            try:
                if self._previous in (State.STARTING, State.RUNNING, State.ERRORED):
                    self._shutdown()
            finally:
                with self._cond:
                    self._broken_cleaned = True
                    self._busy = False
                    self._cond.notify_all()
            self.log.event("ERROR", "service-broken", "service is broken. Deployment is needed",
                           State.BROKEN.value)
        with self._cond:
            self._cond.wait_for(lambda: self._reinstall_pending or self._closed)
            if not self._reinstall_pending or self._closed:
                return
            self._errors.clear()
            self._broken_cleaned = False
        self._set_state(State.NEW)

    def _handle_finished(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._reinstall_pending or self._closed
                                or self._desired == State.RUNNING)
            if self._closed:
                return
            target = State.NEW if self._reinstall_pending else State.INSTALLED
            self._restart_pending = False
        self._set_state(target)

    # running one step

    _last_exit: int | None = None

    def _step_env(self, step: LifecycleStep) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self._env_provider())
        env.update(self.spec.lifecycle.setenv)
        env.update(step.setenv)
        return env

    def _spawn(self, step: LifecycleStep, env: Mapping[str, str]) -> ScriptProcess | None:
        return spawn_step(self.name, step, env, Path(self.spec.work_dir), self.log,
                          lambda: self._state, self.settings.output_drain_timeout, self._user)

    def _run_foreground(self, name: str, abort: Callable[[], bool] | None,
                        watch_reports: bool = False) -> StepResult:
        """Run a step to completion (Install, Startup, Shutdown...), with its timeout. With
        ``watch_reports`` (Startup), the component's UpdateState(RUNNING) ends the wait (the
        process keeps running, in ``_startup_process``) and UpdateState(ERRORED) stops it."""
        self._last_exit = None
        step = self.spec.lifecycle.step(name)
        if step is None or not step.script.strip():
            return StepResult.NOTHING
        env = self._step_env(step)
        try:
            if step.skipif and should_skip(step.skipif, env):
                self.log.event("DEBUG", "generic-service-skipped", None, self._state.value,
                               script=step.script_name(self.name))
                return StepResult.SKIPPED
        except ValueError as exc:
            self.log.event("ERROR", "generic-service-invalid-config", str(exc), self._state.value)
            logger.error("%s: %s", self.name, exc)
            return StepResult.FAILED
        process = self._spawn(step, env)
        if process is None:
            return StepResult.FAILED

        def interrupt() -> StepResult | None:
            with self._cond:
                if abort is not None and abort():
                    return StepResult.ABORTED
                if not watch_reports:
                    return None
                if self._reported_error is not None:
                    return StepResult.REPORTED_ERRORED
                if self._reported_running:
                    self._startup_process = process
                    return StepResult.REPORTED_RUNNING
                return None

        result = wait_for_step(process, step.effective_timeout, self.settings.poll_interval,
                               self.settings.grace_period, interrupt)
        if result == StepResult.TIMEOUT:
            self.log.event("WARN", "shell-runner-timeout",
                           f"{name} timed out after {step.effective_timeout:g} seconds",
                           self._state.value, scriptName=step.script_name(self.name))
        if not isinstance(result, int):
            return result
        self._last_exit = result
        if result != 0:
            self.log.event("WARN", "shell-runner-error", None, self._state.value,
                           scriptName=step.script_name(self.name), exitCode=result)
            return StepResult.FAILED
        return StepResult.OK
