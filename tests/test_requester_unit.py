"""Unit tests of the requester's own logic, with an IPC double (pytest-mock)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from ggic.config import RequesterConfig
from ggic.ipc import IpcClient, IpcError, IpcErrorKind
from ggic.requester.service import RequesterService, build_request, list_inputs


class FakeClassifier:
    """Answers each published request on the result topic, from another thread."""

    def __init__(self, mocker, answer: bool = True, config: dict | None = None) -> None:
        self.answer = answer
        self.result_handler = None
        self.sent: list[dict] = []
        self.config = config or {}
        self.ipc = mocker.Mock(spec=IpcClient)
        self.ipc.get_configuration.side_effect = lambda *a, **k: dict(self.config)
        self.ipc.subscribe.side_effect = self._subscribe
        self.ipc.publish.side_effect = self._publish

    def _subscribe(self, topic, handler, on_error=None):
        self.result_handler = handler
        return type("Sub", (), {"close": lambda self: None})()

    def _publish(self, topic, message):
        self.sent.append(message)
        if not self.answer:
            return
        # first a result for someone else, then ours
        other = {"request_id": "not-ours", "status": "ok", "predictions": []}
        ours = {"request_id": message["request_id"], "status": "ok",
                "predictions": [{"label": "tabby", "class_id": 281, "score": 0.8}],
                "timing_ms": {"inference": 3.0, "total": 5.0}}
        for payload in (other, ours):
            threading.Thread(target=self.result_handler, args=("local/result", payload)).start()


@pytest.fixture
def image_dir(tmp_path):
    for name in ("b.jpg", "a.png", "c.npy", "notes.txt"):
        (tmp_path / name).write_bytes(b"data")
    return tmp_path


def test_lists_images_and_tensors_sorted(image_dir):
    assert [p.name for p in list_inputs(image_dir)] == ["a.png", "b.jpg", "c.npy"]


def test_requests_by_kind(image_dir):
    config = RequesterConfig(top_k=2)
    assert build_request(image_dir / "a.png", config).to_dict()["image_path"].endswith("a.png")
    assert "tensor_path" in build_request(image_dir / "c.npy", config).to_dict()
    inline = RequesterConfig(send_inline=True)
    assert build_request(image_dir / "a.png", inline).source.data == b"data"
    assert build_request(image_dir / "a.png", config).top_k == 2


def test_round_correlates_results_and_logs_one_line_each(mocker, image_dir, caplog):
    fake = FakeClassifier(mocker, config={"ImageDirectory": str(image_dir)})
    service = RequesterService(fake.ipc)
    service.start()
    with caplog.at_level(logging.INFO):
        outcomes = service.run_round()
    assert [o.image.name for o in outcomes] == ["a.png", "b.jpg", "c.npy"]
    assert all(o.ok for o in outcomes)
    assert {o.request_id for o in outcomes} == {m["request_id"] for m in fake.sent}
    lines = [r.getMessage() for r in caplog.records if "tabby 0.80" in r.getMessage()]
    assert len(lines) == 3 and lines[0].startswith("a.png: tabby 0.80 (inference 3.0 ms")


def test_round_times_out_when_the_classifier_is_down_and_keeps_going(mocker, image_dir, caplog):
    fake = FakeClassifier(mocker, answer=False,
                          config={"ImageDirectory": str(image_dir), "ResultTimeout": "0.2"})
    service = RequesterService(fake.ipc)
    service.start()
    with caplog.at_level(logging.WARNING):
        outcomes = service.run_round()
    assert [o.ok for o in outcomes] == [False, False, False]
    assert "timed out after 0.2 s" in caplog.text
    fake.answer = True
    assert all(o.ok for o in service.run_round())


def test_stop_ends_a_round_waiting_for_results_at_once(mocker, image_dir, caplog):
    fake = FakeClassifier(mocker, answer=False,
                          config={"ImageDirectory": str(image_dir), "ResultTimeout": "60"})
    service = RequesterService(fake.ipc)
    service.start()
    outcomes: list = []
    worker = threading.Thread(target=lambda: outcomes.extend(service.run_round()))
    worker.start()
    while len(fake.sent) < 3:
        time.sleep(0.01)
    service.stop()
    worker.join(10)
    assert not worker.is_alive()  # it would wait ResultTimeout (60 s) otherwise
    assert [o.problem for o in outcomes] == ["stopped before the result came"] * 3


def test_publish_failure_is_reported_not_raised(mocker, image_dir):
    fake = FakeClassifier(mocker, config={"ImageDirectory": str(image_dir)})
    fake.ipc.publish.side_effect = IpcError(IpcErrorKind.UNAUTHORIZED, "not allowed")
    service = RequesterService(fake.ipc)
    service.start()
    outcomes = service.run_round()
    assert all("not sent: UnauthorizedError" in o.problem for o in outcomes)


def test_serve_stops_between_rounds(mocker, image_dir):
    fake = FakeClassifier(mocker, config={"ImageDirectory": str(image_dir),
                                          "InferenceInterval": "30"})
    service = RequesterService(fake.ipc)
    service.start()
    thread = threading.Thread(target=service.serve)
    thread.start()
    while len(fake.sent) < 3:
        pass
    service.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert len(fake.sent) == 3  # one round; the 30 s wait was interrupted


def test_closing_logs_the_messages_ignored_since_the_last_line(mocker, image_dir, caplog):
    """The count of ignored result-topic messages is logged when the requester closes, not by a
    timer after it is gone (or never, when the process exits first)."""
    fake = FakeClassifier(mocker, config={"ImageDirectory": str(image_dir)})
    service = RequesterService(fake.ipc)
    service.start()
    with caplog.at_level(logging.WARNING, "ggic.requester.service"):
        fake.result_handler("local/result", b"\xff not json")
        fake.result_handler("local/result", b"\xff again")  # counted, not logged yet
        service.close()
    lines = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert [line.split(" message")[0] for line in lines] == ["ignored 1", "ignored 1"]
