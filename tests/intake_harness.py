"""An in-process classifier service with an IPC double and a pipeline double, for unit tests
of what the intake answers and logs (the same parts run for real in test_contract_live.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any
from unittest import mock

import numpy as np

from ggic.classifier.pipeline import ModelRun, PreparedInput
from ggic.classifier.service import ClassifierService
from ggic.ipc import IpcClient
from ggic.messages import Prediction

ACCESS = {"aws.greengrass.ipc.pubsub": {"c:pubsub:1": {
    "operations": ["aws.greengrass#PublishToTopic"], "resources": ["local/result", "replies/*"]}}}


class GatedPipeline:
    """Classifies anything as class 0; inference waits for ``gate`` (to fill the queue)."""

    def __init__(self) -> None:
        self.info = type("Info", (), {"summary": lambda self: {"name": "fake", "profile": "p"}})()
        self.gate = threading.Event()
        self.gate.set()

    def warm_up(self) -> float:
        return 0.0

    def close(self) -> None:
        pass

    def prepare(self, source, limits) -> PreparedInput:
        return PreparedInput(np.zeros(1), {"load": 0.0, "preprocess": 0.0})

    def run_model(self, prepared) -> ModelRun:
        assert self.gate.wait(60), "test gate never opened"
        return ModelRun(np.array([1.0]), 0.0)

    def predictions(self, scores, k, threshold) -> list[Prediction]:
        return [Prediction("c0", 0, 1.0)]


class RecordedIpc:
    """The recording side of an IPC double: the handler of each subscribed topic (``send``
    delivers a request to it) and every publication, in order (``wait_results`` waits for the
    n-th)."""

    #: seconds ``wait_results`` waits by default
    wait_timeout = 60.0

    def __init__(self) -> None:
        self.published: list[tuple[str, dict]] = []
        self.cond = threading.Condition()
        self.handlers: dict[str, Any] = {}

    def _publish(self, topic, message):
        with self.cond:
            self.published.append((topic, message))
            self.cond.notify_all()

    def send(self, payload: Any, topic: str = "local/inference") -> None:
        self.handlers[topic](topic, payload)

    def wait_results(self, n: int, timeout: float | None = None) -> list[tuple[str, dict]]:
        deadline = time.monotonic() + (self.wait_timeout if timeout is None else timeout)
        with self.cond:
            while len(self.published) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"only {len(self.published)} of {n} results: {self.published}"
                self.cond.wait(left)
            return list(self.published)


def stub_ipc_callbacks(ipc: Any) -> None:
    """An IPC double's answers about its callback thread: all quiet."""
    ipc.callback_backlog_peak.return_value = 0


class Intake(RecordedIpc):
    """A started service whose published results are recorded."""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.config = {"accessControl": ACCESS, **config}
        self.pipeline = GatedPipeline()
        ipc = mock.Mock(spec=IpcClient)
        ipc.get_configuration.side_effect = lambda *a, **k: dict(self.config)
        ipc.subscribe.side_effect = self._subscribe
        ipc.subscribe_configuration.side_effect = lambda *a, **k: mock.Mock()
        ipc.publish.side_effect = self._publish
        ipc.publish_async.side_effect = self._publish_async
        stub_ipc_callbacks(ipc)
        self.service = ClassifierService(ipc, model_loader=lambda cfg: self.pipeline)
        self.service.start()

    def _subscribe(self, topic, handler, on_error=None, on_closed=None):
        self.handlers[topic] = handler
        return mock.Mock()

    def _publish_async(self, topic, message) -> Future:
        self._publish(topic, message)
        future: Future = Future()
        future.set_result(None)
        return future

    def close(self) -> None:
        self.pipeline.gate.set()
        self.service.shutdown()
