"""Lifecycle scripts as processes: ``sh -c`` in its own process group, output copied line by
line to the component's log, SIGTERM then SIGKILL after a grace period; and ``Skipif``."""

from __future__ import annotations

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
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Callable

from .component_logs import ComponentLog
from .lifecycle_states import State, StepResult
from .recipe_lifecycle import LifecycleStep
from .run_with import ComponentUser, RunWith, RunWithError

logger = logging.getLogger(__name__.rsplit(".", 1)[0] + ".lifecycle")


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
                 drain_timeout: float = 2.0, run_with: RunWith | None = None) -> None:
        self.script = script
        self.run_with = run_with
        """The user the script runs as; None: the runtime's own."""
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
        env = self._env
        if self.run_with is not None:  # as sudo -n -E -H -u USER -g GROUP (SudoDecorator)
            kwargs.update(user=self.run_with.uid, group=self.run_with.gid,
                          extra_groups=list(self.run_with.groups))
            env = self.run_with.env(env)
        self._proc = subprocess.Popen(  # noqa: S603 - running recipe scripts is the point
            _shell_command(self.script), cwd=str(self._cwd), env=env,
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


def wait_for_step(process: ScriptProcess, timeout: float | None, poll_interval: float,
                  grace: float, interrupt: Callable[[], StepResult | None]
                  ) -> StepResult | int:
    """Wait for a foreground step's process: its exit code; or TIMEOUT (terminated after
    ``timeout`` seconds); or what ``interrupt`` returns once it returns something (the process
    is terminated, except for REPORTED_RUNNING: a Startup that said RUNNING runs on)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        code = process.wait(poll_interval)
        if code is not None:
            return code
        why = interrupt()
        if why is not None:
            if why != StepResult.REPORTED_RUNNING:
                process.terminate(grace)
            return why
        if deadline is not None and time.monotonic() >= deadline:
            process.terminate(grace)
            return StepResult.TIMEOUT


def spawn_step(component: str, step: LifecycleStep, env: Mapping[str, str], work_dir: Path,
               log: ComponentLog, state: Callable[[], State], drain_timeout: float,
               user: ComponentUser | None = None) -> ScriptProcess | None:
    """Start a lifecycle step's script in the work folder (logged as the nucleus logs it) as
    ``user`` decides (None: as the runtime's user); None if it can't be started. When the
    runtime can't switch users (not root) ``RequiresPrivilege`` is not applied (warned)."""
    try:
        run_with = user.for_step(step.requires_privilege) if user is not None else None
    except RunWithError as exc:  # the step fails (GenericExternalService.run)
        log.event("ERROR", "generic-service-run", str(exc), state().value)
        logger.error("%s: %s", component, exc)
        return None
    switching = user is not None and user.policy.switching
    script_name = step.script_name(component)
    if step.requires_privilege and not switching:
        me = getpass.getuser()
        log.event("WARN", "privilege-not-applied",
                  f"RequiresPrivilege is not applied locally; running as {me}",
                  state().value, scriptName=script_name)
        logger.warning("%s: %s: RequiresPrivilege not applied locally (running as %s)",
                       component, step.name, me)
    work_dir.mkdir(parents=True, exist_ok=True)
    process = ScriptProcess(step.script, script_name, env, work_dir, log, state, drain_timeout,
                            run_with)
    running_as = run_with.label if run_with is not None else getpass.getuser()
    log.event("INFO", "shell-runner-start", None, state().value,
              scriptName=script_name, command=f'["{step.script}"]', user=running_as)
    try:
        process.start()
    except OSError as exc:
        log.event("ERROR", "shell-runner-error", str(exc), state().value,
                  scriptName=script_name)
        logger.error("%s: can't start %s: %s", component, step.name, exc)
        return None
    return process
