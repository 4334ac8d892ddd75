"""The classifier's side of the nucleus's deployment-time conversations.

* **Configuration validation** (SubscribeToValidateConfigurationUpdates): before a deployment
  changes the classifier's configuration, the nucleus sends the proposed configuration; it is
  checked exactly as :meth:`ClassifierService.apply_config_update` would read it (plus cheap
  checks a deployment should fail on: a ModelDir or LabelsPath that does not exist, a custom
  ModelProfile that does not describe a model) and answered ACCEPTED, or REJECTED with the
  reason, so the deployment itself FAILS with it instead of the update being refused only in
  the classifier's log.
* **Component updates** (SubscribeToComponentUpdates): before a deployment disrupts components,
  the nucleus announces it; while requests the classifier accepted are unanswered, it answers
  DeferComponentUpdate with ``recheckAfterMs`` = :data:`RECHECK_AFTER_MS` (the nucleus asks again
  then), for at most ``UpdateDeferralTimeout`` seconds from the first announcement of that
  deployment; otherwise (or then) with 0, which lets the update go ahead. Requests keep being
  taken and classified normally meanwhile; whatever is still owed when the update stops the
  component is answered by the SIGTERM path.

The IPC callbacks only put a :class:`ValidationRequest` or :class:`UpdateNotice` on the
service's control queue; :meth:`DeploymentHooks.handle` answers them on the service's main
thread. A nucleus that refuses either subscription (an older one, or no permission) is logged
once and the classifier carries on without it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from ..config import ClassifierConfig, ConfigError, config_from_mapping, unknown_keys
from ..ipc import IpcClient, IpcError, Subscription
from ..log_text import escape, quote
from .profiles import resolve_profile

log = logging.getLogger(__name__)

#: How soon the nucleus asks again after a deferral.
RECHECK_AFTER_MS = 500
#: The longest reason sent in a REJECTED report (the deployment's status detail).
REASON_LIMIT = 1000


@dataclass(frozen=True)
class ValidationRequest:
    """A deployment's proposed configuration, to be answered ACCEPTED or REJECTED."""

    configuration: Mapping[str, Any]
    deployment_id: str


@dataclass(frozen=True)
class UpdateNotice:
    """A deployment is about to disrupt components (``done``: it has been applied)."""

    deployment_id: str
    done: bool = False


def configuration_problem(values: Mapping[str, Any],
                          overrides: Mapping[str, Any] | None = None) -> str | None:
    """Why the classifier would refuse ``values`` as its configuration, or None if it would
    take it. Unknown keys are only warned about, as when the configuration is read."""
    if not isinstance(values, Mapping):
        return "configuration must be a JSON object"
    merged = {**values, **(overrides or {})}
    for key in unknown_keys(ClassifierConfig, merged):
        log.warning("the proposed configuration has an unknown key %s (a typo?)", escape(key))
    try:
        config = config_from_mapping(ClassifierConfig, merged)
    except ConfigError as exc:
        return str(exc)
    if config.model_dir and not os.path.isdir(config.model_dir):
        return f"ModelDir {quote(config.model_dir)} is not a directory the classifier can see"
    if config.labels_path and not os.path.isfile(config.labels_path):
        return f"LabelsPath {quote(config.labels_path)} is not a file the classifier can see"
    try:
        resolve_profile(config.model_profile)
    except ConfigError as exc:
        return str(exc)
    return None


class DeploymentHooks:
    """Subscribes to both conversations and answers them (see the module docstring)."""

    def __init__(self, ipc: IpcClient, overrides: Mapping[str, Any],
                 pending: Callable[[], int], config: Callable[[], ClassifierConfig],
                 put: Callable[[Any], None]) -> None:
        self.ipc = ipc
        self.overrides = overrides
        self._pending = pending
        self._config = config
        self._put = put
        self._deferring: dict[str, float] = {}  # deployment id -> first announcement
        self.subscriptions: list[Subscription] = []
        self.deferrals = 0

    def subscribe(self) -> None:
        """Open both subscriptions; one the nucleus refuses is logged and skipped."""
        opened = (
            ("configuration validation", lambda: self.ipc.subscribe_validate_configuration(
                lambda values, deployment: self._put(ValidationRequest(values, deployment)),
                on_closed=lambda: log.warning("the configuration validation stream ended; "
                                              "deployments are no longer checked first"))),
            ("component updates", lambda: self.ipc.subscribe_component_updates(
                lambda deployment: self._put(UpdateNotice(deployment)),
                lambda deployment: self._put(UpdateNotice(deployment, done=True)),
                on_closed=lambda: log.warning("the component update stream ended; updates are "
                                              "no longer deferred"))),
        )
        for name, subscribe in opened:
            try:
                self.subscriptions.append(subscribe())
            except IpcError as exc:
                log.warning("the nucleus refused the subscription to %s (%s); carrying on "
                            "without it", name, exc)

    def handle(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, ValidationRequest):
                self._validate(event)
            elif isinstance(event, UpdateNotice):
                self._announced(event)

    def close(self) -> None:
        for subscription in self.subscriptions:
            subscription.close(timeout=0.5)

    def _validate(self, request: ValidationRequest) -> None:
        problem = configuration_problem(request.configuration, self.overrides)
        deployment = escape(request.deployment_id)
        if problem is None:
            log.info("deployment %s: the proposed configuration is valid", deployment)
        else:
            log.error("deployment %s: rejected the proposed configuration: %s", deployment,
                      escape(problem, REASON_LIMIT))
        try:
            self.ipc.send_configuration_validity_report(
                request.deployment_id, problem is None,
                None if problem is None else escape(problem, REASON_LIMIT))
        except IpcError as exc:
            log.error("could not answer the validation of deployment %s: %s", deployment, exc)

    def _announced(self, notice: UpdateNotice) -> None:
        if notice.done:
            self._deferring.pop(notice.deployment_id, None)
            return
        now = time.monotonic()
        first = self._deferring.setdefault(notice.deployment_id, now)
        for other in [d for d in self._deferring if d != notice.deployment_id]:
            del self._deferring[other]  # only the latest deployment is being asked about
        pending = self._pending()
        limit = self._config().update_deferral_timeout
        deployment = escape(notice.deployment_id)
        recheck = RECHECK_AFTER_MS if pending > 0 and now - first < limit else 0
        if recheck:
            if first == now:
                log.info("deployment %s: deferring it while %d accepted requests are answered "
                         "(at most %g s)", deployment, pending, limit)
            self.deferrals += 1
            message = f"answering {pending} accepted requests"
        elif pending > 0:
            log.warning("deployment %s: %d requests still unanswered after %g s "
                        "(UpdateDeferralTimeout); letting the update go ahead", deployment,
                        pending, limit)
            message = "UpdateDeferralTimeout reached"
        else:
            message = "every accepted request is answered"
        try:
            self.ipc.defer_component_update(notice.deployment_id, recheck, message)
        except IpcError as exc:
            log.warning("could not answer the update notice of deployment %s: %s", deployment,
                        exc)
