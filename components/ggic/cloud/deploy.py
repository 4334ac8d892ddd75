"""Cloud deployments: CreateDeployment to a thing or thing group, and waiting for a device.

Configuration updates use greengrass-cli's ``--update-config`` shape,
``{"<component>": {"MERGE": {...}, "RESET": ["/json/pointer", ...]}}``, turned into the
API's ``configurationUpdate`` ``{"merge": "<JSON text>", "reset": [...]}``.

A cloud deployment *replaces* the target's previous deployment: components it does not list
are removed from the devices. ``keep_existing`` starts from the target's latest deployment
(its components, without their old configuration updates, and its policies) instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .aws import AwsClients, Poller, aws_errors

log = logging.getLogger(__name__)

MAX_MERGE_BYTES = 10 * 1024 * 1024
SUCCEEDED = frozenset({"SUCCEEDED", "COMPLETED"})
FAILED = frozenset({"FAILED", "TIMED_OUT", "CANCELED", "REJECTED"})


class DeploymentInputError(ValueError):
    """A component list, target or --update-config value is malformed."""


@dataclass(frozen=True)
class DeploymentRef:
    deployment_id: str
    target_arn: str
    iot_job_id: str = ""


@dataclass(frozen=True)
class DeploymentOutcome:
    status: str
    reason: str
    error_stack: tuple[str, ...]
    error_types: tuple[str, ...]
    core_device_status: str

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCEEDED


# --- inputs ---------------------------------------------------------------------------------


def parse_update_config(value: str) -> dict[str, dict[str, Any]]:
    """greengrass-cli's ``--update-config``: a JSON file path or a JSON string, validated."""
    text = value
    path = Path(value).expanduser()
    try:
        is_file = path.is_file()
    except OSError:  # a JSON string too long to be a file name
        is_file = False
    if is_file:
        text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DeploymentInputError(
            f"--update-config is neither a JSON file nor valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DeploymentInputError(
            '--update-config must be an object: {"<component>": {"MERGE": {...}, '
            '"RESET": ["/Key"]}}')
    updates: dict[str, dict[str, Any]] = {}
    for component, update in data.items():
        if not isinstance(update, dict) or not update:
            raise DeploymentInputError(
                f"--update-config: {component} must map to {{\"MERGE\": {{...}}}} and/or "
                "{\"RESET\": [...]}")
        checked: dict[str, Any] = {}
        for key, item in update.items():
            op = key.upper()
            if op == "MERGE":
                if not isinstance(item, dict):
                    raise DeploymentInputError(
                        f"--update-config: {component}.MERGE must be an object")
                checked["MERGE"] = item
            elif op == "RESET":
                if not isinstance(item, list) or not all(
                        isinstance(p, str) and (p == "" or p.startswith("/")) for p in item):
                    raise DeploymentInputError(
                        f"--update-config: {component}.RESET must be a list of JSON pointers "
                        '("/Key", "/Parent/Key", or "" for the whole configuration)')
                checked["RESET"] = item
            else:
                raise DeploymentInputError(
                    f"--update-config: {component} has {key!r}; only MERGE and RESET exist")
        updates[component] = checked
    return updates


def configuration_update(update: Mapping[str, Any]) -> dict[str, Any]:
    """The API's ComponentConfigurationUpdate for one ``{"MERGE":..., "RESET":...}``."""
    out: dict[str, Any] = {}
    if "MERGE" in update:
        merge = json.dumps(update["MERGE"], separators=(",", ":"))
        if len(merge.encode("utf-8")) > MAX_MERGE_BYTES:
            raise DeploymentInputError("a MERGE document is larger than the API's 10 MiB")
        out["merge"] = merge
    if "RESET" in update:
        out["reset"] = list(update["RESET"])
    return out


def parse_component_versions(items: Iterable[str]) -> dict[str, str]:
    """``NAME=VERSION`` items (greengrass-cli's ``--merge`` form) as a mapping."""
    versions: dict[str, str] = {}
    for item in items:
        name, sep, version = item.partition("=")
        if not sep or not name.strip() or not version.strip():
            raise DeploymentInputError(f"{item!r} is not NAME=VERSION")
        if name.strip() in versions:
            raise DeploymentInputError(f"{name.strip()} is given twice")
        versions[name.strip()] = version.strip()
    return versions


def deployment_components(versions: Mapping[str, str],
                          updates: Mapping[str, Mapping[str, Any]] | None = None,
                          base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The CreateDeployment ``components`` map.

    ``base`` is a previous deployment's map: its components are kept (without their old
    configurationUpdate, which the devices already applied) unless ``versions`` names them.
    """
    components: dict[str, Any] = {}
    for name, spec in (base or {}).items():
        kept = {k: v for k, v in spec.items() if k in ("componentVersion", "runWith")}
        components[name] = kept
    for name, version in versions.items():
        kept = components.get(name, {})
        components[name] = {**kept, "componentVersion": version}
    for name, update in (updates or {}).items():
        if name not in components:
            raise DeploymentInputError(
                f"--update-config names {name}, which the deployment does not include: add "
                f"--component {name}=VERSION")
        components[name]["configurationUpdate"] = configuration_update(update)
    if not components:
        raise DeploymentInputError("a deployment needs at least one component")
    return components


def target_arn(target: str, clients: AwsClients) -> str:
    """An IoT thing or thing-group ARN from ``thing/NAME``, ``thinggroup/NAME``, a bare thing
    name, or an ARN (kept as given)."""
    if target.startswith("arn:"):
        if ":thing/" not in target and ":thinggroup/" not in target:
            raise DeploymentInputError(f"{target} is not an IoT thing or thing group ARN")
        return target
    kind, sep, name = target.partition("/")
    if not sep:
        kind, name = "thing", target
    if kind not in ("thing", "thinggroup") or not name:
        raise DeploymentInputError(
            f"target {target!r}: use thing/NAME, thinggroup/NAME, a thing name or an ARN")
    return f"arn:{clients.partition}:iot:{clients.region}:{clients.account()}:{kind}/{name}"


def thing_name_of(arn: str) -> str | None:
    marker = ":thing/"
    return arn.split(marker, 1)[1] if marker in arn else None


# --- calls ----------------------------------------------------------------------------------


def latest_deployment(clients: AwsClients, arn: str) -> dict[str, Any] | None:
    """The target's latest deployment (GetDeployment), or None if it has none."""
    greengrass = clients.client("greengrassv2")
    with aws_errors("ListDeployments", "greengrassv2"):
        listed = greengrass.list_deployments(targetArn=arn, historyFilter="LATEST_ONLY")
    deployments = listed.get("deployments") or []
    if not deployments:
        return None
    latest = next((d for d in deployments if d.get("isLatestForTarget")), deployments[0])
    with aws_errors("GetDeployment", "greengrassv2"):
        return greengrass.get_deployment(deploymentId=latest["deploymentId"])


_CREATE_HINTS = {
    "ResourceNotFoundException": "the target or a component version does not exist in this "
                                 "account and region: check the names, versions and --region",
    "ValidationException": "the deployment was refused: check the component names, versions "
                           "and configuration updates",
    "ConflictException": "another deployment for this target is being created: retry",
}


def create_deployment(clients: AwsClients, target: str, versions: Mapping[str, str],
                      updates: Mapping[str, Mapping[str, Any]] | None = None, *,
                      deployment_name: str | None = None,
                      keep_existing: bool = False) -> DeploymentRef:
    """CreateDeployment for ``target`` (see :func:`target_arn`)."""
    arn = target_arn(target, clients)
    request: dict[str, Any] = {"targetArn": arn}
    base = None
    if keep_existing:
        previous = latest_deployment(clients, arn)
        if previous is not None:
            base = previous.get("components") or {}
            for key in ("deploymentPolicies", "iotJobConfiguration"):
                if previous.get(key):
                    request[key] = previous[key]
            log.info("keeping %s from deployment %s", ", ".join(sorted(base)) or "nothing",
                     previous.get("deploymentId"))
    request["components"] = deployment_components(versions, updates, base)
    if deployment_name:
        request["deploymentName"] = deployment_name
    with aws_errors("CreateDeployment", "greengrassv2", _CREATE_HINTS):
        response = clients.client("greengrassv2").create_deployment(**request)
    ref = DeploymentRef(str(response["deploymentId"]), arn, str(response.get("iotJobId", "")))
    log.info("created deployment %s for %s", ref.deployment_id, arn)
    return ref


def _find_effective(greengrass: Any, thing: str, deployment_id: str) -> dict[str, Any] | None:
    token = None
    while True:
        kwargs: dict[str, Any] = {"coreDeviceThingName": thing}
        if token:
            kwargs["nextToken"] = token
        hints = {"ResourceNotFoundException": f"{thing} is not a Greengrass core device of "
                                              "this account and region"}
        with aws_errors("ListEffectiveDeployments", "greengrassv2", hints):
            page = greengrass.list_effective_deployments(**kwargs)
        for item in page.get("effectiveDeployments") or []:
            if item.get("deploymentId") == deployment_id:
                return item
        token = page.get("nextToken")
        if not token:
            return None


def wait_for_deployment(clients: AwsClients, thing: str, deployment_id: str,
                        poller: Poller) -> DeploymentOutcome:
    """Poll the core device ``thing`` until it has applied ``deployment_id`` (or failed)."""
    greengrass = clients.client("greengrassv2")
    found: dict[str, Any] = {}

    def poll() -> tuple[bool, str]:
        item = _find_effective(greengrass, thing, deployment_id)
        if item is None:
            return False, "not yet received by the device"
        found.clear()
        found.update(item)
        status = str(item.get("coreDeviceExecutionStatus", "UNKNOWN"))
        return status in SUCCEEDED or status in FAILED, status

    status = poller.until(f"deployment {deployment_id} on {thing}", poll)
    details = found.get("statusDetails") or {}
    hints = {"ResourceNotFoundException": f"{thing} is not a Greengrass core device"}
    with aws_errors("GetCoreDevice", "greengrassv2", hints):
        device = greengrass.get_core_device(coreDeviceThingName=thing)
    return DeploymentOutcome(
        status=status,
        reason=str(found.get("reason", "")),
        error_stack=tuple(details.get("errorStack") or ()),
        error_types=tuple(details.get("errorTypes") or ()),
        core_device_status=str(device.get("status", "UNKNOWN")),
    )


def describe_outcome(outcome: DeploymentOutcome) -> str:
    lines = [f"deployment status: {outcome.status}"]
    if outcome.reason:
        lines.append(f"reason: {outcome.reason}")
    if outcome.error_types:
        lines.append(f"error types: {', '.join(outcome.error_types)}")
    if outcome.error_stack:
        lines.append(f"error stack: {' > '.join(outcome.error_stack)}")
    lines.append(f"core device status: {outcome.core_device_status}")
    if outcome.succeeded and outcome.core_device_status == "UNHEALTHY":
        lines.append("the device reports a broken component: read "
                     "/greengrass/v2/logs/<component>.log on the device")
    return "\n".join(lines)

