"""What the runtime reports: local deployment records (persisted in
``<root>/config/local_deployments.json``, 0600) and component statuses. Shared by the runtime
and the greengrass-cli operations it answers (``control``), which import this, not the runtime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .deployment_request import DeploymentRequest
from .lifecycle import State
from .private_files import read_json, write_private_json


class DeploymentStatus:
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


FINAL_STATUSES = frozenset({DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED,
                            DeploymentStatus.CANCELED})


@dataclass
class LocalDeploymentRecord:
    """One local deployment and what became of it."""

    deployment_id: str
    request: DeploymentRequest
    created_on: datetime
    status: str = DeploymentStatus.QUEUED
    detailed_status: str | None = None
    """The nucleus's DetailedDeploymentStatus once finished (SUCCESSFUL, FAILED_...)."""
    error: str | None = None
    error_types: tuple[str, ...] = ()
    components: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    def to_json(self) -> dict[str, Any]:
        return {
            "deploymentId": self.deployment_id,
            "createdOn": self.created_on.isoformat(),
            "status": self.status,
            "detailedStatus": self.detailed_status,
            "error": self.error,
            "errorTypes": list(self.error_types),
            "components": list(self.components),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LocalDeploymentRecord:
        return cls(
            deployment_id=str(data["deploymentId"]),
            request=DeploymentRequest(),
            created_on=datetime.fromisoformat(str(data["createdOn"])),
            status=str(data.get("status") or DeploymentStatus.FAILED),
            detailed_status=data.get("detailedStatus"),
            error=data.get("error"),
            error_types=tuple(data.get("errorTypes") or ()),
            components=tuple(data.get("components") or ()),
        )


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    version: str
    state: State
    reported_state: str | None
    """The last state the component itself reported with UpdateState in its current run."""
    configuration: Mapping[str, Any]


class NoSuchDeployment(KeyError):
    pass


def load_deployment_records(path: Path) -> list[LocalDeploymentRecord]:
    """The records saved at ``path``; one interrupted by the last shutdown is FAILED."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return []
    records = []
    for item in data if isinstance(data, list) else ():
        try:
            record = LocalDeploymentRecord.from_json(item)
        except (KeyError, TypeError, ValueError):
            continue
        if not record.finished:  # interrupted by the last shutdown
            record.status = DeploymentStatus.FAILED
            record.error = record.error or "the runtime stopped during the deployment"
        records.append(record)
    return records


def save_deployment_records(path: Path, records: Sequence[LocalDeploymentRecord]) -> None:
    write_private_json(path, [r.to_json() for r in records], indent=1)
