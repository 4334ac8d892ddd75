"""Where a local runtime lives and how it is set up: its root, its socket path, its settings."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .deployment import DEFAULT_THING_NAME
from .deployment_policies import DeploymentPolicies
from .lifecycle import RunnerSettings

ROOT_ENV = "GGIC_LOCAL_ROOT"
DEFAULT_ROOT = Path(".ggic") / "local"
SOCKET_NAME = "ipc.socket"
#: sun_path is 108 bytes on Linux and 104 on macOS (IpcServer refuses longer paths).
MAX_SOCKET_PATH_BYTES = 103


def default_root() -> Path:
    """``$GGIC_LOCAL_ROOT``, else ``.ggic/local`` (relative to the current directory)."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


@dataclass(frozen=True)
class RuntimeSettings:
    thing_name: str = DEFAULT_THING_NAME
    region: str = "us-east-1"
    platform_overrides: Mapping[str, str] = field(default_factory=dict)
    stand_ins: tuple[Path, ...] = ()
    """Folders of stand-in components offered to every deployment (public components such as
    variant.DLR.ImageClassification.ModelStore that can't be downloaded here)."""
    reuse_venv: str | None = sys.prefix
    """Given to Install steps as $GGIC_REUSE_VENV (link this environment instead of building a
    virtual environment: seconds instead of minutes); None builds real ones."""
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    deployment_timeout: float = 1800.0
    """How long a deployment waits for its components to settle (RUNNING/FINISHED/BROKEN)."""
    stable_seconds: float = 1.0
    """How long the components must then stay RUNNING/FINISHED without an error for the
    deployment to succeed (a component that crashes right after starting fails it)."""
    resume: bool = True
    """Start the root's last deployment again on start (as the nucleus does after a reboot)."""
    policies: DeploymentPolicies = field(default_factory=DeploymentPolicies)  # update, validation
    default_user: str | None = None
    """``--default-user`` "user[:group]": as root, who runs the components' steps (the
    nucleus's runWithDefault.posixUser; see run_with.py for what happens without it)."""


def choose_socket_path(root: Path, shared: bool = False) -> tuple[Path, Path | None]:
    """``<root>/ipc.socket`` when it fits in sun_path, else a short temp folder (private, or
    enterable by all when ``shared``: components running as other users connect)."""
    preferred = root / SOCKET_NAME
    if len(os.fsencode(preferred)) <= MAX_SOCKET_PATH_BYTES:
        return preferred, None
    folder = Path(tempfile.mkdtemp(prefix="ggic-", dir="/tmp" if os.path.isdir("/tmp") else None))
    if shared:
        os.chmod(folder, 0o755)
    return folder / SOCKET_NAME, folder
