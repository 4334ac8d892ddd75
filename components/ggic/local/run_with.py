"""Which user runs each lifecycle step, as the nucleus decides it (POSIX only).

The nucleus (UnixRunWithGenerator.generate) takes the component's ``runWith.posixUser``, else
``services.aws.greengrass.Nucleus.configuration.runWithDefault.posixUser`` ("user[:group]"; the
installer sets ggc_user:ggc_group), else -- only when the nucleus itself is not root -- the
nucleus's own user; a user without a group gets its primary group. Steps with
``RequiresPrivilege: true`` run as root (GenericExternalService.addUser). The nucleus switches
with ``sudo -n -E -H -u USER -g GROUP`` (UnixPlatform.SudoDecorator): the environment is kept,
HOME is the user's home. Before a component's first step it makes the run-with user the owner of
its work folder and of everything inside its artifact folders (not the folders themselves, so
the user cannot add files there) (RunWithPathOwnershipHandler.updateOwner).

Here, without sudo: ``subprocess`` switches user, group and supplementary groups itself.

* Runtime as root: steps run as the component's user, the ``--default-user``, else
  ggc_user:ggc_group when that user exists; when none of these exists the nucleus refuses to
  run the component (it goes ERRORED, then BROKEN). ggic runs it as root instead and warns once,
  so that a first ``sudo ggic local start`` works on a machine without ggc_user.
* Runtime as another user: every step runs as that user (it can't switch); said once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

try:
    import grp
    import pwd
except ImportError:  # pragma: no cover - Windows: no POSIX users (steps run as the runtime's)
    grp = pwd = None  # type: ignore[assignment]

logger = logging.getLogger(__name__.rsplit(".", 1)[0] + ".lifecycle")

#: The nucleus installer's default component user (GreengrassSetup.DEFAULT_POSIX_USER).
NUCLEUS_DEFAULT_USER = "ggc_user:ggc_group"


class RunWithError(ValueError):
    """A ``posixUser`` names a user or group this system does not have."""


@dataclass(frozen=True)
class RunWith:
    """A resolved POSIX user and group to run steps as."""

    user: str
    group: str
    uid: int
    gid: int
    home: str
    groups: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.user}:{self.group}"

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` as the step sees it under this user: HOME, USER and LOGNAME are the user's
        (sudo -E -H keeps the rest)."""
        env = dict(base)
        env.update(HOME=self.home, USER=self.user, LOGNAME=self.user)
        return env


def _lookup_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, OverflowError):
        raise RunWithError(f"no user {name!r} on this system") from None


def _lookup_group(name: str) -> grp.struct_group | None:
    try:
        return grp.getgrgid(int(name)) if name.isdigit() else grp.getgrnam(name)
    except (KeyError, OverflowError):
        if name.isdigit():
            return None  # a numeric gid without a name is still a gid
        raise RunWithError(f"no group {name!r} on this system") from None


def parse_posix_user(text: str) -> RunWith:
    """``"user[:group]"`` (names or numeric ids) resolved; the group defaults to the user's
    primary group (UnixRunWithGenerator). Raises :class:`RunWithError`."""
    user_text, _, group_text = str(text).strip().partition(":")
    if not user_text:
        raise RunWithError(f"posixUser {text!r}: a user is required (user[:group])")
    entry = _lookup_user(user_text)
    if group_text:
        group = _lookup_group(group_text)
        gid = group.gr_gid if group is not None else int(group_text)
        group_name = group.gr_name if group is not None else group_text
    else:
        gid = entry.pw_gid
        group_name = str(gid)
        with contextlib.suppress(KeyError):
            group_name = grp.getgrgid(gid).gr_name
    groups = tuple(sorted({g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem}
                          | {gid}))
    return RunWith(user=entry.pw_name, group=group_name, uid=entry.pw_uid, gid=gid,
                   home=entry.pw_dir, groups=groups)


def can_switch_users() -> bool:
    return pwd is not None and hasattr(os, "geteuid") and os.geteuid() == 0


def _current_user() -> str:
    if pwd is None:  # pragma: no cover - Windows
        return os.environ.get("USERNAME", "the current user")
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


@dataclass(frozen=True)
class UserPolicy:
    """Who runs which step. ``default`` None: the runtime's own user runs everything (and, when
    ``switching``, RequiresPrivilege steps run as root, the runtime's user)."""

    default: RunWith | None = None
    switching: bool = False
    decision: str = ""  # what was decided, for the runtime's log (said once, at start)

    @classmethod
    def for_runtime(cls, default_user: str | None) -> UserPolicy:
        """The policy of a runtime started with ``--default-user`` (None if not given).
        Raises :class:`RunWithError` for an unknown user or group."""
        if not can_switch_users():
            me = _current_user()
            ignored = " and --default-user" if default_user else ""
            return cls(decision=f"the runtime runs as {me}, not root: every lifecycle step "
                                f"runs as {me} (RequiresPrivilege, posixUser{ignored} are not "
                                "applied)")
        if default_user:
            run_with = parse_posix_user(default_user)
        else:
            try:
                run_with = parse_posix_user(NUCLEUS_DEFAULT_USER)
            except RunWithError:
                return cls(switching=True, decision=(
                    f"no --default-user and no {NUCLEUS_DEFAULT_USER} on this system: "
                    "components run as root (the nucleus would refuse to run them); pass "
                    "--default-user USER[:GROUP]"))
        return cls(default=run_with, switching=True, decision=(
            f"lifecycle steps run as {run_with.label} (uid {run_with.uid}), RequiresPrivilege "
            "steps as root"))

    def log_decision(self) -> None:
        if self.decision:
            level = logging.INFO if self.default is not None else logging.WARNING
            logger.log(level, "%s", self.decision)

    def component_user(self, posix_user: str | None) -> RunWith | None:
        """Who runs a component's unprivileged steps (None: the runtime's own user)."""
        if not self.switching:
            return None
        if posix_user:
            return parse_posix_user(posix_user)
        return self.default

    def step_user(self, component: RunWith | None, requires_privilege: bool) -> RunWith | None:
        """Who runs one step: root (None, the runtime itself) for a privileged one."""
        if requires_privilege or not self.switching:
            return None
        return component


# --- ownership (RunWithPathOwnershipHandler) ---------------------------------------------------


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.lchown(path, uid, gid)
    if path.is_symlink() or not path.is_dir():
        return
    for current, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(current, name), uid, gid)


def give_ownership(run_with: RunWith, work_dir: Path, artifact_dirs: Iterable[Path]) -> None:
    """The work folder and everything in it, and everything inside the artifact folders (not
    the folders themselves), owned by ``run_with`` (RunWithPathOwnershipHandler.updateOwner)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    _chown_tree(work_dir, run_with.uid, run_with.gid)
    for folder in artifact_dirs:
        if folder.is_dir():
            for child in folder.iterdir():
                _chown_tree(child, run_with.uid, run_with.gid)


def unreachable_folder(path: Path, run_with: RunWith) -> Path | None:
    """The first folder on ``path``'s way (``path`` included) that ``run_with`` can't enter,
    judged from the mode bits; None if it can reach it."""
    current = Path(path).absolute()
    chain = [current, *current.parents]
    for folder in reversed(chain):
        try:
            info = folder.stat()
        except OSError:
            return folder
        if info.st_uid == run_with.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in run_with.groups or info.st_gid == run_with.gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return folder
    return None


def prepare_run_with(policy: UserPolicy, posix_user: str | None, work_dir: Path,
                     artifact_dirs: Iterable[Path]) -> RunWith | None:
    """Who runs a component's unprivileged steps (None: the runtime's user), with its work
    folder and artifacts given to that user (GenericExternalService.run ->
    updateComponentPathOwner). Raises :class:`RunWithError` for an unknown user (the nucleus:
    "Could not determine user/group to run with") or a work folder the user can't reach."""
    try:
        run_with = policy.component_user(posix_user)
    except RunWithError as exc:
        raise RunWithError(f"Could not determine user/group to run with: {exc}") from None
    if run_with is None:
        return None
    try:
        give_ownership(run_with, work_dir, artifact_dirs)
    except OSError as exc:  # the nucleus logs it and goes on
        logger.error("service artifacts may not be accessible to %s: %s", run_with.user, exc)
    blocked = unreachable_folder(work_dir, run_with)
    if blocked is not None:
        mode = blocked.stat().st_mode & 0o7777 if blocked.exists() else 0
        raise RunWithError(f"{run_with.user} can't reach the work folder {work_dir}: {blocked} "
                           f"is not searchable by it (mode {mode:o}); put the runtime's root "
                           "where that user can enter")
    return run_with


class ComponentUser:
    """Who runs one component's steps, resolved (and its files given to it) before its first
    step and kept for its life, as the nucleus keeps its runWith (GenericExternalService)."""

    def __init__(self, policy: UserPolicy, posix_user: str | None, work_dir: Path,
                 artifact_dirs: Iterable[Path] = ()) -> None:
        self.policy = policy
        self._args = (posix_user, Path(work_dir), tuple(artifact_dirs))
        self._resolved: tuple[RunWith | None] | None = None

    def for_step(self, requires_privilege: bool) -> RunWith | None:
        """The user for one step (None: the runtime's own). Raises :class:`RunWithError`."""
        if self._resolved is None:
            self._resolved = (prepare_run_with(self.policy, *self._args),)
        return self.policy.step_user(self._resolved[0], requires_privilege)
