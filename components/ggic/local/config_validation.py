"""Configuration validation by components (SubscribeToValidateConfigurationUpdates,
SendConfigurationValidityReport), following the nucleus's ConfigStoreIPCEventStreamAgent and
DynamicComponentConfigurationValidator.

A deployment that would change the configuration of a deployed component whose version stays
the same asks that component, if it subscribed, with ``{"validateConfigurationUpdateEvent":
{"configuration": <proposed>, "deploymentId"}}`` and waits up to 20 s (the nucleus's
DEFAULT_TIMEOUT_SECOND) for every report. A REJECTED report, or a missing one, fails the
deployment before anything changes (FAILED_NO_STATE_CHANGE, COMPONENT_CONFIGURATION_NOT_VALID),
with the nucleus's message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any, Callable

from .ipc_errors import InvalidArgumentsError

log = logging.getLogger("ggic.local.runtime")

Sender = Callable[[dict], None]
DEFAULT_VALIDATION_TIMEOUT_S = 20.0
REPORT_STATUSES = ("ACCEPTED", "REJECTED")
INVALID_MESSAGE = "Components reported that their to-be-deployed configuration is invalid"


class ConfigurationValidation:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._validators: dict[str, Sender] = {}
        self._reports: dict[tuple[str, str], Future] = {}

    def subscribe(self, name: str, send: Sender) -> Callable[[], None]:
        with self._lock:
            self._validators.setdefault(name, send)  # computeIfAbsent: the first one stays

        def unsubscribe() -> None:
            with self._lock:
                self._validators.pop(name, None)  # the nucleus removes the component's entry

        return unsubscribe

    def report(self, name: str, report: Any) -> None:
        if not isinstance(report, Mapping):
            raise InvalidArgumentsError("configurationValidityReport is required")
        deployment_id = report.get("deploymentId")
        if deployment_id is None:
            raise InvalidArgumentsError(
                "Cannot accept configuration validity report, the deployment ID provided was null")
        status = report.get("status")
        if status not in REPORT_STATUSES:
            raise InvalidArgumentsError(f"status must be one of {', '.join(REPORT_STATUSES)}")
        with self._lock:
            future = self._reports.pop((name, str(deployment_id)), None)
        if future is None:
            raise InvalidArgumentsError("Validation request either timed out or was never made")
        future.set_result((status, report.get("message")))

    def validate(self, deployment_id: str, proposals: Mapping[str, Mapping[str, Any]],
                 timeout: float = DEFAULT_VALIDATION_TIMEOUT_S) -> str | None:
        """Ask the subscribed components among ``proposals`` (name -> proposed configuration);
        None if the deployment may go on, else the failure message."""
        asked: dict[str, Future] = {}
        with self._lock:
            targets = [(n, self._validators[n]) for n in proposals if n in self._validators]
            for name, _send in targets:
                asked[name] = self._reports[(name, deployment_id)] = Future()
        try:
            for name, send in targets:
                log.info("deployment %s: asking %s to validate its configuration", deployment_id,
                         name)
                try:
                    send({"validateConfigurationUpdateEvent": {
                        "configuration": dict(proposals[name]), "deploymentId": deployment_id}})
                except Exception as exc:
                    return f"Error requesting validation from component {name}: {exc}"
            deadline = time.monotonic() + timeout
            reports = {}
            for name, future in asked.items():
                try:
                    reports[name] = future.result(max(0.0, deadline - time.monotonic()))
                except Exception:
                    missing = ", ".join(n for n, f in asked.items() if not f.done())
                    return ("Error while waiting for validation report for one or more "
                            f"components: no report from {missing} within {timeout:g} s")
            failure = INVALID_MESSAGE
            valid = True
            for name, (status, message) in reports.items():
                if status == "REJECTED":
                    failure += f" {{ name = {name}, message = {message} }}"
                    valid = False
            return None if valid else failure
        finally:
            with self._lock:
                for name in asked:
                    self._reports.pop((name, deployment_id), None)
