"""The greengrass-cli IPC operations, answered by the runtime (anything shaped like
:class:`RuntimeControl`; ``runtime.LocalRuntime`` is one, and imports this module, not the other
way round).

Requests and responses have the operations' real JSON shapes (``awsiot.greengrasscoreipc.model``):
``CreateLocalDeployment`` takes ``recipeDirectoryPath``, ``artifactsDirectoryPath``,
``rootComponentVersionsToAdd``, ``rootComponentsToRemove`` and ``componentToConfiguration``
(``{name: {"MERGE": {...}, "RESET": [...]}}``, what ``--update-config`` becomes) and answers
a ``deploymentId`` at once; the deployment runs on the runtime's deployment thread and
``GetLocalDeploymentStatus``/``ListLocalDeployments`` report QUEUED, IN_PROGRESS, SUCCEEDED or
FAILED (with ``deploymentStatusDetails.deploymentFailureCause`` saying why).

Stand-in components can't travel in the request (the real client only sends the model's
fields): the runtime offers its ``--stand-in`` folders to every deployment.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from .control_api import ControlHandler
from .deployment_request import (
    DeploymentError,
    DeploymentRequest,
    parse_merge_arguments,
    parse_update_config,
)
from .ipc_errors import InvalidArgumentsError, ResourceNotFoundError, ServiceError
from .lifecycle import State
from .runtime_records import ComponentStatus, LocalDeploymentRecord, NoSuchDeployment

log = logging.getLogger("ggic.local.control")

LOCAL_DEPLOYMENT_RESOURCE = "LocalDeployment"
CREATED_ON_FORMAT = "%m/%d/%Y %H:%M:%S"  # the model's "MM/dd/yyyy hh:mm:ss"
FAILURE_POLICIES = ("ROLLBACK", "DO_NOTHING")
STOP_TIMEOUT_S = 25.0  # the greengrass-cli waits 30 s for an answer
DEBUG_USERNAME = "debug"
DEBUG_PASSWORD_BYTES = 32
DEBUG_PASSWORD_LIFETIME_S = 8 * 3600.0


def deployment_request_from_ipc(request: Mapping[str, Any]) -> DeploymentRequest:
    """A CreateLocalDeployment request as a :class:`DeploymentRequest` (shape errors raise
    InvalidArgumentsError now; recipe and dependency problems fail the deployment later)."""
    recipe_dir = _optional_path(request, "recipeDirectoryPath")
    artifact_dir = _optional_path(request, "artifactsDirectoryPath")
    to_add = request.get("rootComponentVersionsToAdd") or {}
    if not isinstance(to_add, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in to_add.items()):
        raise InvalidArgumentsError("rootComponentVersionsToAdd must map component names to "
                                    "version strings")
    to_remove = request.get("rootComponentsToRemove") or []
    if not isinstance(to_remove, list) or not all(isinstance(n, str) for n in to_remove):
        raise InvalidArgumentsError("rootComponentsToRemove must be a list of component names")
    configuration = request.get("componentToConfiguration") or {}
    if not isinstance(configuration, Mapping):
        raise InvalidArgumentsError("componentToConfiguration must map component names to "
                                    "{MERGE, RESET}")
    policy = request.get("failureHandlingPolicy")
    if policy is not None and policy not in FAILURE_POLICIES:
        raise InvalidArgumentsError(f"failureHandlingPolicy must be one of "
                                    f"{', '.join(FAILURE_POLICIES)}")
    if policy == "ROLLBACK":
        log.warning("failureHandlingPolicy ROLLBACK: the local runtime does not roll back a "
                    "failed deployment")
    run_with = _run_with_info(request.get("componentToRunWithInfo") or {})
    if request.get("groupName"):
        log.info("groupName %s ignored: the local runtime has one group", request["groupName"])
    try:
        merge = parse_merge_arguments(f"{name}={version}" for name, version in to_add.items())
        update_config = parse_update_config(configuration) if configuration else {}
    except DeploymentError as exc:
        raise InvalidArgumentsError(str(exc)) from None
    return DeploymentRequest(recipe_dir=recipe_dir, artifact_dir=artifact_dir, merge=merge,
                             remove=tuple(to_remove), update_config=update_config,
                             run_with=run_with)


def _run_with_info(info: Any) -> dict[str, str]:
    """componentToRunWithInfo ``{name: {"posixUser": "user[:group]"}}`` -> name -> posixUser
    (windowsUser and systemResourceLimits are not applied here: logged)."""
    if not isinstance(info, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Mapping) for k, v in info.items()):
        raise InvalidArgumentsError("componentToRunWithInfo must map component names to "
                                    "{posixUser, ...}")
    users: dict[str, str] = {}
    for name, run_with in info.items():
        ignored = sorted(set(run_with) - {"posixUser"})
        if ignored:
            log.warning("componentToRunWithInfo %s: %s not applied by the local runtime",
                        name, ", ".join(ignored))
        user = run_with.get("posixUser")
        if user is not None:
            if not isinstance(user, str):
                raise InvalidArgumentsError(f"componentToRunWithInfo {name}: posixUser must "
                                            "be a string")
            users[name] = user
    return users


def _optional_path(request: Mapping[str, Any], key: str) -> Path | None:
    value = request.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidArgumentsError(f"{key} must be a string")
    return Path(value).expanduser().absolute()


def local_deployment_shape(record: LocalDeploymentRecord) -> dict[str, Any]:
    """A deployment record as the model's ``LocalDeployment``."""
    shape: dict[str, Any] = {
        "deploymentId": record.deployment_id,
        "status": record.status,
        "createdOn": record.created_on.strftime(CREATED_ON_FORMAT),
    }
    if record.finished and record.detailed_status is not None:  # CANCELED has no details
        details: dict[str, Any] = {"detailedDeploymentStatus": record.detailed_status}
        if record.error:
            details["deploymentFailureCause"] = record.error
            details["deploymentErrorStack"] = ["DEPLOYMENT_FAILURE", *record.error_types]
            details["deploymentErrorTypes"] = list(record.error_types)
        shape["deploymentStatusDetails"] = details
    return shape


def _component_name(request: Mapping[str, Any]) -> str:
    name = request.get("componentName")
    if not isinstance(name, str) or not name:
        raise InvalidArgumentsError("Component name cannot be empty")
    return name


def _not_found(name: str) -> ResourceNotFoundError:
    return ResourceNotFoundError(f"Component with name {name} not found in Greengrass",
                                 resource_type="Component", resource_name=name)


class RuntimeControl(Protocol):
    """What the greengrass-cli operations need of the runtime."""

    def submit_deployment(self, request: DeploymentRequest) -> LocalDeploymentRecord: ...

    def cancel_deployment(self, deployment_id: str) -> str: ...

    def deployment(self, deployment_id: str) -> LocalDeploymentRecord: ...

    def deployments(self) -> list[LocalDeploymentRecord]: ...

    def components(self) -> list[ComponentStatus]: ...

    def component(self, name: str) -> ComponentStatus: ...

    def restart(self, name: str) -> bool: ...

    def state(self, name: str) -> State: ...

    def stop_component(self, name: str, timeout: float | None = 30.0) -> State: ...


class LocalControlHandler(ControlHandler):
    """Answers the greengrass-cli operations from the runtime (on an IPC worker thread)."""

    def __init__(self, runtime: RuntimeControl) -> None:
        self.runtime = runtime

    # deployments

    def create_local_deployment(self, request: dict[str, Any]) -> dict[str, Any]:
        deployment = deployment_request_from_ipc(request)
        try:
            record = self.runtime.submit_deployment(deployment)
        except RuntimeError as exc:
            raise ServiceError(str(exc)) from None
        return {"deploymentId": record.deployment_id}

    def get_local_deployment_status(self, request: dict[str, Any]) -> dict[str, Any]:
        deployment_id = request.get("deploymentId")
        if not isinstance(deployment_id, str) or not deployment_id:
            raise InvalidArgumentsError("deploymentId is required")
        try:
            record = self.runtime.deployment(deployment_id)
        except NoSuchDeployment:
            raise ResourceNotFoundError("Cannot find deployment",
                                        resource_type=LOCAL_DEPLOYMENT_RESOURCE,
                                        resource_name=deployment_id) from None
        return {"deployment": local_deployment_shape(record)}

    def list_local_deployments(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"localDeployments": [local_deployment_shape(r)
                                     for r in self.runtime.deployments()]}

    def cancel_local_deployment(self, request: dict[str, Any]) -> dict[str, Any]:
        """As the CLI's CancelLocalDeploymentHandler: the id must be a UUID."""
        deployment_id = request.get("deploymentId")
        try:
            uuid.UUID(str(deployment_id))
        except ValueError:
            raise InvalidArgumentsError(
                "Invalid deploymentId format received. DeploymentId is a UUID") from None
        try:
            message = self.runtime.cancel_deployment(str(deployment_id))
        except NoSuchDeployment:
            raise ResourceNotFoundError(
                f"Cannot find the deployment id provided {deployment_id}",
                resource_type=LOCAL_DEPLOYMENT_RESOURCE,
                resource_name=str(deployment_id)) from None
        return {"message": message}

    def create_debug_password(self, request: dict[str, Any]) -> dict[str, Any]:
        """As the CLI's CreateDebugPasswordHandler: user ``debug``, a random password valid
        for 8 hours. No local debug console uses it, so there are no certificate hashes (the
        CLI answers them null without the LocalDebugConsole plugin)."""
        password = base64.urlsafe_b64encode(
            hashlib.sha256(secrets.token_bytes(DEBUG_PASSWORD_BYTES)).digest()
        ).decode("ascii").rstrip("=")
        expiration = time.time() + DEBUG_PASSWORD_LIFETIME_S
        return {"username": DEBUG_USERNAME, "password": password,
                "passwordExpiration": expiration}

    # components

    def list_components(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"components": [self._details(s) for s in self.runtime.components()]}

    def get_component_details(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _component_name(request)
        try:
            status = self.runtime.component(name)
        except KeyError:
            raise _not_found(name) from None
        return {"componentDetails": self._details(status)}

    def restart_component(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _component_name(request)
        try:
            restarted = self.runtime.restart(name)
        except KeyError:
            raise _not_found(name) from None
        if restarted:
            log.info("%s restart requested (greengrass-cli)", name)
            return {"restartStatus": "SUCCEEDED"}
        state = self.runtime.state(name)
        message = (f"{name} is BROKEN: a new deployment reinstalls it" if state == State.BROKEN
                   else f"{name} can't be restarted in state {state.value}")
        return {"restartStatus": "FAILED", "message": message}

    def stop_component(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _component_name(request)
        try:
            state = self.runtime.stop_component(name, STOP_TIMEOUT_S)
        except KeyError:
            raise _not_found(name) from None
        log.info("%s stopped (greengrass-cli): %s", name, state.value)
        if state in (State.FINISHED, State.BROKEN, State.NEW):
            return {"stopStatus": "SUCCEEDED"}
        return {"stopStatus": "FAILED",
                "message": f"{name} is still {state.value} after {STOP_TIMEOUT_S:g} s"}

    @staticmethod
    def _details(status: ComponentStatus) -> dict[str, Any]:
        return {"componentName": status.name, "version": status.version,
                "state": status.state.value, "configuration": dict(status.configuration)}
