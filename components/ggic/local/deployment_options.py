"""greengrass-cli's ``deployment create -g/--groupId --runWith --systemLimits -fp`` as
CreateLocalDeployment fields (no IPC here: cli_commands sends them)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


class OptionError(ValueError):
    """An option greengrass-cli would refuse; the message says why."""


def _json_or_file(value: str, flag: str) -> Any:
    path = Path(value).expanduser()
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else value
    except OSError as exc:
        raise OptionError(f"{flag}: can't read {path}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise OptionError(f"{flag} parameter is not a properly formatted JSON file or a JSON "
                       f"string: {exc}") from None


def deployment_options(args: argparse.Namespace) -> dict[str, Any]:
    """``-g``, ``--runWith NAME:posixUser=USER[:GROUP]`` / ``NAME:windowsUser=USER``,
    ``--systemLimits {"NAME": {"cpus": N, "memory": KB}}`` and ``-fp`` as the model's fields."""
    from awsiot.greengrasscoreipc.model import RunWithInfo, SystemResourceLimits

    options: dict[str, Any] = {}
    if getattr(args, "group_id", None):
        options["group_name"] = args.group_id
    if getattr(args, "failure_policy", None):
        options["failure_handling_policy"] = args.failure_policy
    run_with: dict[str, Any] = {}
    for item in getattr(args, "run_with", None) or []:
        name, sep, setting = item.partition(":")
        key, eq, value = setting.partition("=")
        if not sep or not eq or not name or key not in ("posixUser", "windowsUser") \
                or (key == "windowsUser" and not value):  # an empty posixUser removes it
            raise OptionError(f"--runWith {item!r}: expected NAME:posixUser=USER[:GROUP] or "
                           "NAME:windowsUser=USER")
        info = run_with.setdefault(name, RunWithInfo())
        if key == "posixUser":
            info.posix_user = value
        else:
            info.windows_user = value
    if getattr(args, "system_limits", None):
        limits = _json_or_file(args.system_limits, "systemLimits")
        if not isinstance(limits, dict) or not all(isinstance(v, dict) for v in limits.values()):
            raise OptionError('--systemLimits: expected {"<name>": {"cpus": N, "memory": KB}}')
        for name, limit in limits.items():
            info = run_with.setdefault(name, RunWithInfo())
            info.system_resource_limits = SystemResourceLimits(
                memory=limit.get("memory"), cpus=limit.get("cpus"))
    if run_with:
        options["component_to_run_with_info"] = run_with
    return options
