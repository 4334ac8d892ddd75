"""Unit tests of the classifier service's own logic, with an IPC double (pytest-mock)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest

from ggic.classifier.pipeline import ModelRun, PreparedInput
from ggic.classifier.service import ClassifierService
from ggic.ipc import IpcClient, IpcError, IpcErrorKind
from ggic.messages import ClassificationError, ErrorCode, Prediction
from intake_harness import ACCESS, RecordedIpc, stub_ipc_callbacks


class FakeInfo:
    def __init__(self, name: str = "fake") -> None:
        self.name = name

    def summary(self) -> dict[str, str]:
        return {"name": self.name, "profile": "fake"}


class FakePipeline:
    """Stands in for ClassificationPipeline; records which threads did what."""

    def __init__(self, infer_gate: threading.Event | None = None,
                 warm_up_error: Exception | None = None, name: str = "fake") -> None:
        self.info = FakeInfo(name)
        self.infer_gate = infer_gate
        self.warm_up_error = warm_up_error
        self.prepare_threads: list[str] = []
        self.infer_threads: list[str] = []
        self.events: list[str] = []
        self.prediction_args: list[tuple[int, float]] = []
        self.closed = False
        self.lock = threading.Lock()

    def warm_up(self) -> float:
        with self.lock:
            self.infer_threads.append(threading.current_thread().name)
            self.events.append("warm-up")
        if self.warm_up_error is not None:
            raise self.warm_up_error
        return 1.0

    def close(self) -> None:
        self.closed = True

    def prepare(self, source, limits) -> PreparedInput:
        with self.lock:
            self.prepare_threads.append(threading.current_thread().name)
            self.events.append(f"prepare {source.path}")
        if source.path.endswith("missing.jpg"):
            raise ClassificationError(ErrorCode.IMAGE_NOT_FOUND, f"{source.path} does not exist")
        return PreparedInput(np.zeros(1), {"load": 1.0, "preprocess": 1.0})

    def run_model(self, prepared) -> ModelRun:
        with self.lock:
            self.infer_threads.append(threading.current_thread().name)
            self.events.append("infer")
        if self.infer_gate is not None:
            assert self.infer_gate.wait(10), "test gate never opened"
        return ModelRun(np.array([0.1, 0.6, 0.3]), 1.0)

    def predictions(self, scores, k, threshold) -> list[Prediction]:
        self.prediction_args.append((k, threshold))
        order = np.argsort(-scores)[:k]
        return [Prediction(f"c{i}", int(i), float(scores[i])) for i in order
                if scores[i] >= threshold]


class Harness(RecordedIpc):
    wait_timeout = 5.0

    def __init__(self, mocker, config: dict[str, Any], pipeline: FakePipeline | None = None,
                 load_error: Exception | None = None) -> None:
        super().__init__()
        self.config = dict(config)
        self.on_closed: dict[str, Any] = {}
        self.config_handler = None
        self.ipc = mocker.Mock(spec=IpcClient)
        self.ipc.get_configuration.side_effect = lambda *a, **k: dict(self.config)
        self.ipc.subscribe.side_effect = self._subscribe
        self.ipc.subscribe_configuration.side_effect = self._subscribe_config
        self.ipc.publish.side_effect = self._publish
        self.ipc.publish_async.side_effect = self._publish_async
        self.ipc.publish_to_iot_core_async.side_effect = self._publish_to_iot_core_async
        stub_ipc_callbacks(self.ipc)
        self.pipeline = pipeline or FakePipeline()

        self.loaded_dirs: list[str] = []

        def loader(cfg):
            self.loaded_dirs.append(cfg.model_dir)
            if load_error is not None:
                raise load_error
            if cfg.model_dir in self.models:
                return self.models[cfg.model_dir]()
            return self.pipeline

        self.models: dict[str, Any] = {}  # ModelDir -> () -> a pipeline (or raises)

        self.service = ClassifierService(self.ipc, model_loader=loader)

    def _subscribe(self, topic, handler, on_error=None, on_closed=None):
        self.handlers[topic] = handler
        self.on_closed[topic] = on_closed
        return mocker_sub()

    def _subscribe_config(self, on_update, key_path=(), on_closed=None):
        self.config_handler = on_update
        self.on_closed["configuration"] = on_closed
        return mocker_sub()

    def _publish_async(self, topic, message):
        """Publishes through ``ipc.publish`` (which tests may make fail); a finished future."""
        return self._finished(self.ipc.publish, topic, message)

    def _publish_to_iot_core_async(self, topic, message):
        return self._finished(self.ipc.publish_to_iot_core, topic, message)

    @staticmethod
    def _finished(call, topic, message) -> Future:
        future = Future()
        try:
            call(topic, message)
        except IpcError as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)
        return future

    def by_id(self) -> dict[str, dict]:
        return {m["request_id"]: m for _, m in self.published}


class _Sub:
    def close(self, timeout: float = 5.0) -> None:
        pass

    def begin_close(self) -> Future:
        closed: Future = Future()
        closed.set_result(None)
        return closed


def mocker_sub() -> _Sub:
    return _Sub()


@pytest.fixture
def harness(mocker):
    made = []

    def make(config=None, **kwargs) -> Harness:
        h = Harness(mocker, {"accessControl": ACCESS, **(config or {})}, **kwargs)
        h.service.start()
        made.append(h)
        return h

    yield make
    for h in made:
        h.service.shutdown()


def test_valid_request_gets_one_ok_result(harness):
    """The service asks the model for the configured (or requested) top-k and threshold and
    publishes exactly what it answered, with the model's summary and every stage's timing."""
    h = harness({"TopK": "2", "ScoreThreshold": "0.25"})
    h.send({"request_id": "a", "image_path": "/img/cat.jpg"})
    (topic, result), = h.wait_results(1)
    h.send({"request_id": "b", "image_path": "/img/dog.jpg", "top_k": 1, "threshold": 0.5})
    h.wait_results(2)
    assert h.pipeline.prediction_args == [(2, 0.25), (1, 0.5)]
    assert topic == "local/result"
    assert result["status"] == "ok" and result["request_id"] == "a"
    assert result["predictions"] == [
        {"label": "c1", "class_id": 1, "score": pytest.approx(0.6)},
        {"label": "c2", "class_id": 2, "score": pytest.approx(0.3)}]
    assert [p["class_id"] for p in h.by_id()["b"]["predictions"]] == [1]
    assert result["model"] == {"name": "fake", "profile": "fake"}
    timing = result["timing_ms"]
    assert set(timing) >= {"load", "preprocess", "inference", "total"}
    assert timing["inference"] == 1.0 and timing["total"] > 0
    h.ipc.update_state.assert_called_with("RUNNING")


def test_bad_requests_get_typed_errors_and_the_service_keeps_answering(harness):
    h = harness()
    h.send(b"\xff not json")
    h.send({"request_id": "b", "image_path": "relative.jpg"})
    h.send({"request_id": "c", "image_path": "/img/missing.jpg"})
    h.send({"request_id": "d", "image_path": "/img/ok.jpg"})
    results = h.wait_results(4)
    by_id = h.by_id()
    assert by_id["b"]["error"]["code"] == "INVALID_REQUEST"
    assert by_id["c"]["error"]["code"] == "IMAGE_NOT_FOUND"
    assert by_id["d"]["status"] == "ok"
    anonymous = [m for _, m in results if m["request_id"] not in "bcd"]
    assert anonymous[0]["error"]["code"] == "INVALID_REQUEST"


def test_reply_to_is_honoured_only_where_the_policy_allows(harness):
    h = harness()
    h.send({"request_id": "ok", "image_path": "/a.jpg", "reply_to": "replies/me"})
    h.send({"request_id": "no", "image_path": "/a.jpg", "reply_to": "elsewhere"})
    h.wait_results(2)
    topics = {m["request_id"]: t for t, m in h.published}
    assert topics == {"ok": "replies/me", "no": "local/result"}
    assert h.by_id()["no"]["error"]["code"] == "INVALID_REQUEST"


def test_full_queue_answers_busy_and_loses_nothing(harness):
    gate = threading.Event()
    h = harness({"QueueSize": "1", "Workers": "1"}, pipeline=FakePipeline(infer_gate=gate))
    n = 8
    for i in range(n):
        h.send({"request_id": f"r{i}", "image_path": f"/img/{i}.jpg"})
    busy = h.wait_results(1)  # while inference is blocked, the next ones are refused at once
    assert all(m["error"]["code"] == "BUSY" for _, m in busy)
    gate.set()
    h.wait_results(n)
    codes = [m.get("error", {}).get("code", "ok") for _, m in h.published]
    assert len(h.by_id()) == n  # exactly one result per request
    assert codes.count("ok") >= 1 and codes.count("BUSY") >= 1
    assert set(codes) <= {"ok", "BUSY"}


def test_inference_runs_on_one_thread_never_on_the_callback(harness):
    h = harness({"Workers": "2"})
    callers = []
    for i in range(6):
        callers.append(threading.current_thread().name)
        h.send({"request_id": f"r{i}", "image_path": f"/img/{i}.jpg"})
    h.wait_results(6)
    assert h.pipeline.events[0] == "warm-up"  # before any request, on the same thread
    assert set(h.pipeline.infer_threads) == {"ggic-inference"}
    assert not set(h.pipeline.prepare_threads) & set(callers)


def test_preprocessing_of_the_next_request_overlaps_inference(harness):
    gate = threading.Event()
    h = harness({"Workers": "1"}, pipeline=FakePipeline(infer_gate=gate))
    h.send({"request_id": "first", "image_path": "/img/1.jpg"})
    h.send({"request_id": "second", "image_path": "/img/2.jpg"})
    deadline = time.monotonic() + 5
    while len(h.pipeline.events) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    # while the first inference is blocked, the second image has been prepared
    try:
        assert sorted(h.pipeline.events) == ["infer", "prepare /img/1.jpg", "prepare /img/2.jpg",
                                             "warm-up"]
        assert h.published == []
    finally:
        gate.set()
    h.wait_results(2)


def test_live_topk_update_and_invalid_update_refused(harness, caplog):
    h = harness({"TopK": "1", "ScoreThreshold": "0"})
    h.send({"request_id": "a", "image_path": "/a.jpg"})
    h.wait_results(1)
    h.config["TopK"] = "3"
    h.service.apply_config_update()
    h.send({"request_id": "b", "image_path": "/a.jpg"})
    h.wait_results(2)
    h.config["TopK"] = "lots"
    with caplog.at_level(logging.ERROR):
        h.service.apply_config_update()
    assert "refused configuration update: TopK must be an integer" in caplog.text
    h.send({"request_id": "c", "image_path": "/a.jpg"})
    h.wait_results(3)
    sizes = {k: len(v["predictions"]) for k, v in h.by_id().items()}
    assert sizes == {"a": 1, "b": 3, "c": 3}


def test_model_load_failure_reports_errored_and_answers_model_error(harness, caplog):
    from ggic.classifier.backends.base import ModelLoadError

    with caplog.at_level(logging.ERROR):
        h = harness(load_error=ModelLoadError("ModelDir /nope does not exist: set ModelDir"))
    h.ipc.update_state.assert_called_with("ERRORED")
    assert "set ModelDir" in caplog.text
    h.send({"request_id": "x", "image_path": "/a.jpg"})
    (_, result), = h.wait_results(1)
    assert result["error"]["code"] == "MODEL_ERROR"
    assert "/nope" in result["error"]["message"]


def test_a_failed_warm_up_reports_errored_closes_the_model_and_answers_model_error(harness):
    pipeline = FakePipeline(warm_up_error=RuntimeError("kernel crashed"))
    h = harness(pipeline=pipeline)
    h.ipc.update_state.assert_called_with("ERRORED")
    assert pipeline.closed
    assert pipeline.infer_threads == ["ggic-inference"]
    h.send({"request_id": "x", "image_path": "/a.jpg"})
    (_, result), = h.wait_results(1)
    assert result["error"]["code"] == "MODEL_ERROR"
    assert "warm-up inference failed: kernel crashed" in result["error"]["message"]


def test_a_model_dir_change_loads_and_warms_the_new_model_before_it_takes_over(harness):
    h = harness({"ModelDir": "/models/a"})
    new = FakePipeline(name="b")
    h.models["/models/b"] = lambda: new
    h.send({"request_id": "before", "image_path": "/a.jpg"})
    h.wait_results(1)
    h.config["ModelDir"] = "/models/b"
    h.service.apply_config_update()
    assert h.loaded_dirs == ["/models/a", "/models/b"]
    assert new.events == ["warm-up"] and new.infer_threads == ["ggic-inference"]
    h.send({"request_id": "after", "image_path": "/a.jpg"})
    h.wait_results(2)
    models = {k: v["model"]["name"] for k, v in h.by_id().items()}
    assert models == {"before": "fake", "after": "b"}
    assert h.service.config.model_dir == "/models/b"
    assert [c.args for c in h.ipc.update_state.call_args_list] == [("RUNNING",), ("RUNNING",)]


def test_a_backend_change_reloads_the_model(harness):
    h = harness({"ModelDir": "/models/a"})
    h.models["/models/a"] = lambda: FakePipeline(name="a-by-onnx")
    h.config["Backend"] = "onnx"
    h.service.apply_config_update()
    assert h.loaded_dirs == ["/models/a", "/models/a"]
    assert h.service.config.backend == "onnx"
    h.send({"request_id": "x", "image_path": "/a.jpg"})
    (_, result), = h.wait_results(1)
    assert result["model"]["name"] == "a-by-onnx"


def test_a_model_that_cannot_load_is_refused_and_the_old_one_keeps_serving(harness, caplog):
    from ggic.classifier.backends.base import ModelLoadError

    h = harness({"ModelDir": "/models/a"})

    def broken():
        raise ModelLoadError("no compiled model in /models/broken: check ModelDir")

    h.models["/models/broken"] = broken
    h.config["ModelDir"] = "/models/broken"
    with caplog.at_level(logging.ERROR):
        h.service.apply_config_update()
    assert "refused the new model settings" in caplog.text
    assert "check ModelDir" in caplog.text and "previous model (fake) keeps serving" in caplog.text
    assert h.service.config.model_dir == "/models/a"  # what is in force, for the next update
    h.ipc.update_state.assert_called_once_with("RUNNING")  # never ERRORED: it still works
    h.send({"request_id": "x", "image_path": "/a.jpg"})
    (_, result), = h.wait_results(1)
    assert result["status"] == "ok" and result["model"]["name"] == "fake"
    # a later fix of the same key is seen as a change again
    fixed = FakePipeline(name="broken-fixed")
    h.models["/models/broken"] = lambda: fixed
    h.service.apply_config_update()
    assert h.service.config.model_dir == "/models/broken"
    h.send({"request_id": "y", "image_path": "/a.jpg"})
    h.wait_results(2)
    assert h.by_id()["y"]["model"]["name"] == "broken-fixed"


def test_shutdown_answers_accepted_requests_then_refuses_new_ones(harness):
    gate = threading.Event()
    h = harness(pipeline=FakePipeline(infer_gate=gate))
    for i in range(3):
        h.send({"request_id": f"r{i}", "image_path": f"/img/{i}.jpg"})
    stopper = threading.Thread(target=h.service.shutdown)
    stopper.start()
    time.sleep(0.1)
    h.send({"request_id": "late", "image_path": "/img/late.jpg"})
    gate.set()
    stopper.join(10)
    assert not stopper.is_alive()
    by_id = h.by_id()
    assert {k: v["status"] for k, v in by_id.items() if k != "late"} == {
        "r0": "ok", "r1": "ok", "r2": "ok"}
    assert by_id["late"]["error"]["code"] == "UNAVAILABLE"


def test_what_cannot_be_classified_before_the_kill_is_answered_unavailable(harness, mocker):
    import ggic.classifier.service as service_module

    mocker.patch.object(service_module, "DRAIN_TIMEOUT_S", 0.2)
    gate = threading.Event()
    h = harness({"Workers": "1"}, pipeline=FakePipeline(infer_gate=gate))
    for i in range(5):
        h.send({"request_id": f"r{i}", "image_path": f"/img/{i}.jpg"})
    stopper = threading.Thread(target=h.service.shutdown)
    stopper.start()
    time.sleep(0.4)  # past the drain time, the first inference still running
    gate.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert len(h.published) == 5  # each request answered exactly once (the publisher ended)
    codes = {k: v.get("error", {}).get("code", v["status"]) for k, v in h.by_id().items()}
    assert codes == {"r0": "ok", "r1": "UNAVAILABLE", "r2": "UNAVAILABLE",
                     "r3": "UNAVAILABLE", "r4": "UNAVAILABLE"}
    assert "send it again" in h.by_id()["r1"]["error"]["message"]


def _failing_publish(h, fail: dict[str, list[IpcError]]):
    """ipc.publish raising the queued errors for a request id, then publishing."""
    calls: list[str] = []

    def publish(topic, message):
        calls.append(message["request_id"])
        errors = fail.get(message["request_id"], [])
        if errors:
            raise errors.pop(0)
        h._publish(topic, message)

    h.ipc.publish.side_effect = publish
    return calls


def test_a_retryable_publish_failure_is_retried_and_the_answer_arrives(harness, caplog):
    h = harness()
    calls = _failing_publish(h, {"a": [IpcError(IpcErrorKind.SERVICE, "transient")]})
    with caplog.at_level(logging.WARNING):
        h.send({"request_id": "a", "image_path": "/a.jpg"})
        (_, result), = h.wait_results(1)
    assert result["status"] == "ok"
    assert calls == ["a", "a"]
    assert "publishing the result of a on local/result failed (ServiceError: transient); " \
        "trying again" in caplog.text


def test_publish_gives_up_after_its_attempts_and_never_retries_unauthorized(harness, caplog):
    from ggic.classifier.publisher import PUBLISH_ATTEMPTS

    h = harness()
    calls = _failing_publish(h, {
        "flaky": [IpcError(IpcErrorKind.SERVICE, "down")] * PUBLISH_ATTEMPTS,
        "denied": [IpcError(IpcErrorKind.UNAUTHORIZED, "not allowed")] * PUBLISH_ATTEMPTS,
    })
    with caplog.at_level(logging.WARNING):
        h.send({"request_id": "flaky", "image_path": "/a.jpg"})
        h.send({"request_id": "denied", "image_path": "/a.jpg"})
        h.send({"request_id": "fine", "image_path": "/a.jpg"})
        h.wait_results(1)
        assert h.service.wait_idle(5)  # both failures are done with: nothing left pending
    assert calls.count("flaky") == PUBLISH_ATTEMPTS
    assert calls.count("denied") == 1
    assert "could not publish the result of flaky on local/result: ServiceError: down" \
        in caplog.text
    assert "could not publish the result of denied on local/result: UnauthorizedError: " \
        "not allowed" in caplog.text
    assert h.service.answered == 3 and h.service.delivered == 3


def test_iot_core_publish_when_enabled(harness):
    h = harness({"PublishToIoTCore": "true", "IoTCoreTopic": "ml/results"})
    h.send({"request_id": "a", "image_path": "/a.jpg"})
    h.wait_results(1)
    deadline = time.monotonic() + 5
    while not h.ipc.publish_to_iot_core.called and time.monotonic() < deadline:
        time.sleep(0.01)
    topic, payload = h.ipc.publish_to_iot_core.call_args[0]
    assert topic == "ml/results" and payload["request_id"] == "a"


def test_a_lone_request_is_prepared_on_the_inference_thread_and_busy_ones_by_the_workers(
        harness):
    """An idle pipeline takes a request with one thread hand-off (the inference thread prepares
    it); while the model is busy, the workers prepare what comes next and answers keep the
    order the requests came in."""
    gate = threading.Event()
    h = harness({"Workers": "1"}, pipeline=FakePipeline(infer_gate=gate))
    gate.set()
    h.send({"request_id": "alone", "image_path": "/img/0.jpg"})
    h.wait_results(1)
    assert h.pipeline.prepare_threads == ["ggic-inference"]
    gate.clear()
    for i in range(1, 4):
        h.send({"request_id": f"r{i}", "image_path": f"/img/{i}.jpg"})
    deadline = time.monotonic() + 5
    while len(h.pipeline.prepare_threads) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.set()
    results = h.wait_results(4)
    assert [m["request_id"] for _, m in results] == ["alone", "r1", "r2", "r3"]
    assert h.pipeline.prepare_threads[1] == "ggic-inference"  # r1 found the pipeline idle
    assert set(h.pipeline.prepare_threads[2:]) == {"ggic-preprocess-0"}
