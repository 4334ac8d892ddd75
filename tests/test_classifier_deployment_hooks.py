"""Unit tests of the classifier's answers to deployment-time conversations (our own logic:
which configurations it rejects and why, when it defers an update and for how long, what it does
when the nucleus refuses a subscription). The same answers through the real runtime and SDK:
test_classifier_deployment_hooks_live.py."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from ggic.classifier import deployment_hooks
from ggic.classifier.deployment_hooks import (
    RECHECK_AFTER_MS,
    DeploymentHooks,
    UpdateNotice,
    ValidationRequest,
    configuration_problem,
)
from ggic.config import ClassifierConfig
from ggic.ipc import IpcError, IpcErrorKind


class RecordingIpc:
    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.refuse = refuse
        self.reports: list[tuple[str, bool, str | None]] = []
        self.deferrals: list[tuple[str, int, str | None]] = []
        self.subscribed: list[str] = []

    def _subscribe(self, what: str) -> Any:
        if what in self.refuse:
            raise IpcError(IpcErrorKind.OTHER_CLIENT_ERROR, "UnsupportedOperation")
        self.subscribed.append(what)
        return type("Sub", (), {"close": lambda _self, timeout=0: None})()

    def subscribe_validate_configuration(self, on_validate: Any, on_closed: Any = None) -> Any:
        return self._subscribe("validation")

    def subscribe_component_updates(self, on_pre: Any, on_post: Any = None,
                                    on_closed: Any = None) -> Any:
        return self._subscribe("updates")

    def send_configuration_validity_report(self, deployment_id: str, accepted: bool,
                                           message: str | None = None) -> None:
        self.reports.append((deployment_id, accepted, message))

    def defer_component_update(self, deployment_id: str, recheck_after_ms: int,
                               message: str | None = None) -> None:
        self.deferrals.append((deployment_id, recheck_after_ms, message))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def hooks(ipc: RecordingIpc, pending: list[int], timeout: float = 30.0,
          overrides: dict | None = None) -> DeploymentHooks:
    config = ClassifierConfig(update_deferral_timeout=timeout)
    return DeploymentHooks(ipc, overrides or {}, lambda: pending[0], lambda: config,  # type: ignore[arg-type]
                           lambda _event: None)


def test_a_valid_configuration_is_accepted_and_unknown_keys_only_warned(
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    assert configuration_problem({"TopK": "3", "ModelDir": str(tmp_path), "Tpok": "1",
                                  "accessControl": {}}) is None
    assert "unknown key Tpok" in caplog.text


@pytest.mark.parametrize("values, reason", [
    ({"TopK": "0"}, "TopK must be between 1 and 100, got 0"),
    ({"QueueSize": "many"}, "QueueSize must be an integer"),
    ({"ModelDir": "/nonexistent/model"}, 'ModelDir "/nonexistent/model" is not a directory'),
    ({"LabelsPath": "/nonexistent/labels.txt"}, 'LabelsPath "/nonexistent/labels.txt" is not'),
    ({"ModelProfile": "resnet9000"}, "ModelProfile 'resnet9000' is unknown"),
    ({"ModelProfile": '{"input_shape": "square"}'}, "ModelProfile has unknown key(s) input_shape"),
    ({"ModelProfile": "{not json"}, "ModelProfile is not valid JSON"),
    ([], "configuration must be a JSON object"),
])
def test_what_the_classifier_would_refuse_is_rejected_with_its_reason(values: Any,
                                                                      reason: str) -> None:
    problem = configuration_problem(values)
    assert problem is not None and reason in problem


def test_overrides_from_the_command_line_take_part_in_validation() -> None:
    assert configuration_problem({"TopK": "0"}, {"TopK": "4"}) is None


def test_the_report_carries_the_reason_escaped_and_capped() -> None:
    ipc = RecordingIpc()
    subject = hooks(ipc, [0])
    subject.handle([ValidationRequest({"ModelDir": "/x\n[ERROR] forged" + "y" * 5000}, "d-1"),
                    ValidationRequest({"TopK": "2"}, "d-2")])
    (first, accepted, message), second = ipc.reports
    assert (first, accepted) == ("d-1", False)
    assert message is not None and "\n" not in message and "\\n[ERROR] forged" in message
    assert len(message) < 1200
    assert second == ("d-2", True, None)


def test_an_update_is_deferred_while_requests_are_owed_and_only_up_to_the_timeout(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    monkeypatch.setattr(deployment_hooks.time, "monotonic", clock.monotonic)
    ipc = RecordingIpc()
    pending = [3]
    subject = hooks(ipc, pending, timeout=2.0)
    subject.handle([UpdateNotice("d-1")])
    clock.now += 1.5
    subject.handle([UpdateNotice("d-1")])
    clock.now += 0.6  # 2.1 s after the first notice: the bound
    subject.handle([UpdateNotice("d-1")])
    assert [(d, ms) for d, ms, _m in ipc.deferrals] == [
        ("d-1", RECHECK_AFTER_MS), ("d-1", RECHECK_AFTER_MS), ("d-1", 0)]
    assert "3 requests still unanswered after 2 s (UpdateDeferralTimeout)" in caplog.text
    # a new deployment gets its own bound; once nothing is owed it goes ahead at once
    subject.handle([UpdateNotice("d-1", done=True), UpdateNotice("d-2")])
    pending[0] = 0
    subject.handle([UpdateNotice("d-2")])
    assert [(d, ms) for d, ms, _m in ipc.deferrals[3:]] == [("d-2", RECHECK_AFTER_MS), ("d-2", 0)]
    assert ipc.deferrals[-1][2] == "every accepted request is answered"


def test_a_zero_timeout_never_defers() -> None:
    ipc = RecordingIpc()
    hooks(ipc, [5], timeout=0.0).handle([UpdateNotice("d-1")])
    assert [(d, ms) for d, ms, _m in ipc.deferrals] == [("d-1", 0)]


def test_a_refused_subscription_is_logged_and_the_other_still_opens(
        caplog: pytest.LogCaptureFixture) -> None:
    ipc = RecordingIpc(refuse=("validation",))
    subject = hooks(ipc, [0])
    with caplog.at_level(logging.WARNING):
        subject.subscribe()
    assert ipc.subscribed == ["updates"]
    assert len(subject.subscriptions) == 1
    assert caplog.text.count("refused the subscription to configuration validation") == 1
