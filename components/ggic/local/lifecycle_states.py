"""The vocabulary of component lifecycles: the nucleus's states, what a runner is told about a
component (:class:`ComponentSpec`), its timing settings, and the nucleus's environment."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .recipe_lifecycle import ComponentLifecycle
from .run_with import UserPolicy


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


@dataclass(frozen=True)
class RunnerSettings:
    grace_period: float = 5.0  # SIGTERM -> SIGKILL, as the nucleus
    max_errors: int = 3  # the nucleus's MAXIMUM_CONTINUAL_ERROR
    error_reset_seconds: float = 3600.0  # errors older than this are forgotten
    output_drain_timeout: float = 2.0  # wait for a dead process's last output lines
    poll_interval: float = 0.05
    users: UserPolicy = field(default_factory=UserPolicy)
    """Who runs each step (the default: the runtime's own user runs everything)."""


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
    posix_user: str | None = None  # the deployment's runWith.posixUser ("user[:group]")
    artifact_dirs: tuple[Path, ...] = ()  # given to the run-with user with the work folder

    def same_service(self, other: ComponentSpec) -> bool:
        """Whether ``other`` runs the same way (ignoring one-off flags such as bootstrap)."""
        return (self.name, self.lifecycle, Path(self.work_dir), self.version,
                dict(self.dependencies), self.builtin, self.posix_user) == \
               (other.name, other.lifecycle, Path(other.work_dir), other.version,
                dict(other.dependencies), other.builtin, other.posix_user)


StateCallback = Callable[[str, State, State], None]


def nucleus_environment(thing_name: str, region: str = "us-east-1",
                        nucleus_version: str = "", root_ca_path: str = "") -> dict[str, str]:
    """The variables the nucleus sets for every lifecycle script (besides IPC ones):
    ``GG_ROOT_CA_PATH`` ("" without a root CA, as ShellRunner sets it), ``GGC_VERSION`` (the
    nucleus's version, Kernel's setenv)."""
    env = {"AWS_IOT_THING_NAME": thing_name, "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
           "GG_ROOT_CA_PATH": root_ca_path}
    if nucleus_version:
        env["GGC_VERSION"] = nucleus_version
    return env


class StepResult(str, enum.Enum):
    """How a foreground lifecycle step ended."""

    OK = "OK"
    SKIPPED = "SKIPPED"
    NOTHING = "NOTHING"  # step absent or empty
    FAILED = "FAILED"  # non-zero exit, or could not start
    TIMEOUT = "TIMEOUT"
    ABORTED = "ABORTED"  # stopped on request
    REPORTED_RUNNING = "REPORTED_RUNNING"  # Startup: the component said RUNNING (still runs)
    REPORTED_ERRORED = "REPORTED_ERRORED"  # Startup: the component said ERRORED
