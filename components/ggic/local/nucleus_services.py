"""What the local runtime adds around the nucleus's IPC services: the pauser behind
Pause/ResumeComponent, the metrics log behind PutComponentMetric (``<root>/logs/metrics.jsonl``),
and the deployment-time conversations (validation, update policy) with their cancellation."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from .component_pause import ComponentPauser
from .deployment import DeploymentPlan
from .deployment_cancel import Cancellations
from .deployment_policies import DeploymentPolicies, ask_components
from .ipc_nucleus import LocalNucleus
from .private_files import open_private_append
from .runtime_records import DeploymentStatus
from .supervisor import Supervisor

METRICS_LOG = "metrics.jsonl"


class NucleusServices:
    def __init__(self, nucleus: LocalNucleus, supervisor: Supervisor, settings: DeploymentPolicies,
                 logs_dir: Path) -> None:
        self._nucleus = nucleus
        self._supervisor = supervisor
        self._settings = settings
        self.metrics_log = logs_dir / METRICS_LOG
        self._metrics_lock = threading.Lock()
        self.pauser = ComponentPauser(
            supervisor.state, lambda name: supervisor.runner(name).run_process_id,
            lambda name: not supervisor.runner(name).spec.builtin)
        self.cancellations = Cancellations()
        nucleus.pauser = self.pauser
        nucleus.metric_sink = self._write_metric

    def _write_metric(self, record: Mapping[str, Any]) -> None:
        with self._metrics_lock, open_private_append(self.metrics_log) as out:
            out.write(json.dumps(dict(record)) + "\n")

    def ask_components(self, plan: DeploymentPlan, deployment_id: str,
                       deployed: Mapping[str, str], cancelled: Callable[[], bool]
                       ) -> tuple[str, str | None, str | None, tuple[str, ...]] | None:
        """Validation, then the update policy (deployment_policies): None to go on, else how
        the deployment ends (status, detailed status, error, error types). A cancellation ends
        the wait for deferrals (UpdateSystemPolicyService.discardPendingUpdateAction)."""
        failure = ask_components(self._nucleus, plan, deployment_id, deployed,
                                 self._supervisor.states(), self._settings,
                                 self.cancellations.waiter(deployment_id))
        if failure is not None:
            return (DeploymentStatus.FAILED, "FAILED_NO_STATE_CHANGE", failure,
                    ("COMPONENT_CONFIGURATION_NOT_VALID",))
        if cancelled():
            self.post_update(deployment_id)
            return DeploymentStatus.CANCELED, None, None, ()
        return None

    def post_update(self, deployment_id: str) -> None:
        self._nucleus.component_updates.send_post_update(deployment_id)

    def left_running(self, name: str) -> None:
        """A component left RUNNING: a paused one is thawed so it can stop."""
        self.pauser.forget(name)

    def close(self) -> None:
        self.cancellations.close()
