"""Running components' lifecycles as processes, with the nucleus's states and restart rules.

One :class:`ComponentRunner` per component mirrors the nucleus's ``Lifecycle`` state machine:

* ``NEW``: (``Bootstrap`` when new or its version changed) and ``Install`` (120 s default);
  success -> ``INSTALLED``, failure -> ``ERRORED`` and ``Install`` again.
* ``INSTALLED``: waits until every HARD dependency is ``RUNNING``, ``STOPPING`` or
  ``FINISHED`` (SOFT dependencies are not waited for) -> ``STARTING``.
* ``STARTING``: ``Startup`` (120 s) -> ``RUNNING`` when it exits 0; or ``Run`` is started ->
  ``RUNNING`` at once; no ``Run`` at all -> ``FINISHED``.
* ``RUNNING``: ``Run`` exits 0 -> ``STOPPING`` -> ``FINISHED``; exits non-zero or runs past its
  ``Timeout`` -> ``ERRORED`` -> (``Recover``) -> ``STOPPING`` -> ``INSTALLED`` -> ... again.
* ``STOPPING``: ``Shutdown`` (15 s), then SIGTERM to the remaining lifecycle process group,
  SIGKILL after a grace period (the nucleus waits 5 s).
* The third ``ERRORED`` from the same state (``NEW``, ``STARTING`` or ``RUNNING``) within an
  hour becomes ``BROKEN`` instead; only a new deployment (:meth:`ComponentRunner.reinstall`)
  leaves ``BROKEN``.

Scripts run with ``sh -c`` in the component's work folder, with this process's environment plus
the runtime's (IPC socket, SVCUID...) plus the recipe's ``Setenv`` (lifecycle-wide, then the
step's own). ``RequiresPrivilege`` is not applied locally: the step runs as the current user
and a warning says so. Each output line goes to ``<root>/logs/<component>.log``.

:class:`Supervisor` runs a set of components in dependency order, restarts HARD dependers when
a dependency leaves a healthy state, and stops them in reverse order. State changes are
reported through a callback, called from the runners' threads.
"""

from __future__ import annotations

import enum
import getpass
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

from .component_logs import ComponentLog
from .recipe import ComponentLifecycle, LifecycleStep

logger = logging.getLogger(__name__)


class State(str, enum.Enum):
    """The nucleus's component states."""

    NEW = "NEW"
    INSTALLED = "INSTALLED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    ERRORED = "ERRORED"
    BROKEN = "BROKEN"
    FINISHED = "FINISHED"

    def __str__(self) -> str:
        return self.value


#: States in which a HARD dependency lets its dependers start (the nucleus: happy and at least
#: RUNNING).
DEPENDENCY_READY_STATES = frozenset({State.RUNNING, State.STOPPING, State.FINISHED})
#: States the error counter applies to; a third ERRORED from one of them means BROKEN.
_COUNTED_STATES = frozenset({State.NEW, State.STARTING, State.RUNNING})


@dataclass(frozen=True)
class RunnerSettings:
    grace_period: float = 5.0  # SIGTERM -> SIGKILL, as the nucleus
    max_errors: int = 3  # the nucleus's MAXIMUM_CONTINUAL_ERROR
    error_reset_seconds: float = 3600.0  # errors older than this are forgotten
    output_drain_timeout: float = 2.0  # wait for a dead process's last output lines
    poll_interval: float = 0.05


@dataclass(frozen=True)
class ComponentSpec:
    """Everything the runner needs about one component (the deployment produces these)."""

    name: str
    lifecycle: ComponentLifecycle = field(default_factory=ComponentLifecycle)
    work_dir: Path = Path(".")
    version: str = ""
    dependencies: Mapping[str, str] = field(default_factory=dict)  # name -> HARD or SOFT
    run_bootstrap: bool = False
    builtin: bool = False  # a nucleus-provided service: no processes, RUNNING once started

    def same_service(self, other: ComponentSpec) -> bool:
        """Whether ``other`` runs the same way (ignoring one-off flags such as bootstrap)."""
        return (self.name, self.lifecycle, Path(self.work_dir), self.version,
                dict(self.dependencies), self.builtin) == \
               (other.name, other.lifecycle, Path(other.work_dir), other.version,
                dict(other.dependencies), other.builtin)


StateCallback = Callable[[str, State, State], None]


def nucleus_environment(thing_name: str, region: str = "us-east-1",
                        nucleus_version: str = "") -> dict[str, str]:
    """The variables the nucleus sets for every lifecycle script (besides IPC ones)."""
    env = {"AWS_IOT_THING_NAME": thing_name, "AWS_REGION": region, "AWS_DEFAULT_REGION": region}
    if nucleus_version:
        env["GGC_VERSION"] = nucleus_version
    return env


# --- Skipif -----------------------------------------------------------------------------------

_SKIPIF = re.compile(r"(exists|onpath) +(.+)")


def should_skip(expression: str, env: Mapping[str, str] | None = None) -> bool:
    """Evaluate ``Skipif``: ``onpath <exe>`` / ``exists <file>``, optionally negated with ``!``.

    Raises ``ValueError`` for anything else (the nucleus then fails the step).
    """
    expr = expression.strip()
    negate = expr.startswith("!")
    if negate:
        expr = expr[1:].strip()
    match = _SKIPIF.fullmatch(expr)
    if not match:
        raise ValueError(f"invalid Skipif {expression!r}: expected 'onpath <exe>' or "
                         "'exists <file>'")
    target = os.path.expanduser(match.group(2).strip())
    if match.group(1) == "onpath":
        path = (env or os.environ).get("PATH", os.defpath)
        found = shutil.which(target, path=path) is not None
    else:
        found = os.path.exists(target)
    return found != negate


# --- processes --------------------------------------------------------------------------------


def _shell_command(script: str) -> list[str]:
    if sys.platform.startswith("win"):
        return ["cmd.exe", "/C", script]
    return ["sh", "-c", script]


class ScriptProcess:
    """One lifecycle script running in its own process group, output copied to the log."""

    def __init__(self, script: str, script_name: str, env: Mapping[str, str], cwd: Path,
                 log: ComponentLog, state: Callable[[], State],
                 drain_timeout: float = 2.0) -> None:
        self.script = script
        self.script_name = script_name
        self._env = dict(env)
        self._cwd = cwd
        self._log = log
        self._state = state
        self._drain_timeout = drain_timeout
        self._proc: subprocess.Popen | None = None
        self._readers: list[threading.Thread] = []

    def start(self) -> None:
        posix = not sys.platform.startswith("win")
        kwargs: dict = {"start_new_session": True} if posix else {
            "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        self._proc = subprocess.Popen(  # noqa: S603 - running recipe scripts is the point
            _shell_command(self.script), cwd=str(self._cwd), env=self._env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
        for stream, name in ((self._proc.stdout, "stdout"), (self._proc.stderr, "stderr")):
            reader = threading.Thread(target=self._copy, args=(stream, name), daemon=True,
                                      name=f"{self._log.component}-{name}")
            reader.start()
            self._readers.append(reader)

    def _copy(self, stream: IO[bytes], name: str) -> None:
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace")
                self._log.output(name, line, self.script_name, self._state().value)
        except (OSError, ValueError):  # closed under us
            pass
        finally:
            stream.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code (signals as 128+n, like a shell), or None if still running."""
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for reader in self._readers:
            reader.join(self._drain_timeout)
        return 128 - code if code < 0 else code

    def terminate(self, grace: float) -> None:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds if still running."""
        if not self.running():
            return
        self._signal(signal.SIGTERM)
        if self.wait(grace) is None:
            logger.warning("%s: %s ignored SIGTERM for %.1fs; sending SIGKILL", self._log.component,
                           self.script_name, grace)
            self._signal(getattr(signal, "SIGKILL", signal.SIGTERM))
            self.wait(grace)

    def _signal(self, signum: int) -> None:
        assert self._proc is not None
        try:
            if sys.platform.startswith("win"):
                if signum == signal.SIGTERM:
                    self._proc.terminate()
                else:
                    self._proc.kill()
            else:
                os.killpg(self._proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class StepResult(str, enum.Enum):
    OK = "OK"
    SKIPPED = "SKIPPED"
    NOTHING = "NOTHING"  # step absent or empty
    FAILED = "FAILED"  # non-zero exit, or could not start
    TIMEOUT = "TIMEOUT"
    ABORTED = "ABORTED"  # stopped on request


# --- one component ----------------------------------------------------------------------------


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
        self._thread: threading.Thread | None = None

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
        BROKEN). False, and ignored, unless the component is RUNNING."""
        with self._cond:
            if self._state != State.RUNNING or self._closed:
                return False
            self._reported_error = reason
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
        if self.spec.builtin:
            self._set_state(State.RUNNING)
            return
        lifecycle = self.spec.lifecycle
        startup = lifecycle.step("Startup")
        if startup is not None and startup.script.strip():
            result = self._run_foreground(
                "Startup", lambda: self._stop_wanted() or self._restart_pending)
            self.log.event("INFO", None, "Startup script exited", State.STARTING.value,
                           exitCode=self._last_exit)
            if result == StepResult.ABORTED:
                self._set_state(State.STOPPING)
            elif result in (StepResult.OK, StepResult.SKIPPED):
                self._set_state(State.RUNNING)
            else:
                self._report_error(f"Startup {result.value.lower()}")
            return
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
                self._set_state(State.RUNNING)  # as the nucleus: RUNNING with no process
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
            self._run_exit = None
            timeout = run.effective_timeout
            self._run_deadline = None if timeout is None else time.monotonic() + timeout
        threading.Thread(target=self._watch_run, args=(process, generation), daemon=True,
                         name=f"{self.name}-run-watch").start()
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
        script_name = step.script_name(self.name)
        if step.requires_privilege:
            user = getpass.getuser()
            self.log.event("WARN", "privilege-not-applied",
                           f"RequiresPrivilege is not applied locally; running as {user}",
                           self._state.value, scriptName=script_name)
            logger.warning("%s: %s: RequiresPrivilege not applied locally (running as %s)",
                           self.name, step.name, user)
        work_dir = Path(self.spec.work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        process = ScriptProcess(step.script, script_name, env, work_dir, self.log,
                                lambda: self._state, self.settings.output_drain_timeout)
        self.log.event("INFO", "shell-runner-start", None, self._state.value,
                       scriptName=script_name, command=f'["{step.script}"]')
        try:
            process.start()
        except OSError as exc:
            self.log.event("ERROR", "shell-runner-error", str(exc), self._state.value,
                           scriptName=script_name)
            logger.error("%s: can't start %s: %s", self.name, step.name, exc)
            return None
        return process

    def _run_foreground(self, name: str, abort: Callable[[], bool] | None) -> StepResult:
        """Run a step to completion (Install, Startup, Shutdown...), with its timeout."""
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
        timeout = step.effective_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            code = process.wait(self.settings.poll_interval)
            if code is not None:
                break
            if abort is not None:
                with self._cond:
                    aborting = abort()
                if aborting:
                    process.terminate(self.settings.grace_period)
                    return StepResult.ABORTED
            if deadline is not None and time.monotonic() >= deadline:
                self.log.event("WARN", "shell-runner-timeout",
                               f"{name} timed out after {timeout:g} seconds", self._state.value,
                               scriptName=step.script_name(self.name))
                process.terminate(self.settings.grace_period)
                return StepResult.TIMEOUT
        self._last_exit = code
        if code != 0:
            self.log.event("WARN", "shell-runner-error", None, self._state.value,
                           scriptName=step.script_name(self.name), exitCode=code)
            return StepResult.FAILED
        return StepResult.OK


# --- many components --------------------------------------------------------------------------


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

    def wait_until_settled(self, timeout: float | None = None) -> bool:
        """Wait until every component is RUNNING, FINISHED or BROKEN."""
        settled = {State.RUNNING, State.FINISHED, State.BROKEN}
        return self.wait_for(lambda s: all(v in settled for v in s.values()), timeout)

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
