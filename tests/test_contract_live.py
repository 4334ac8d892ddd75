"""Hostile messages through a LIVE classifier process (issue #8.3, #8.8): the real awsiotsdk
client over a real socket served by ggic.local's IPC server, a real DLR model through
libdlr.so. Hypothesis generates a few hundred jsonMessage and binaryMessage requests; each
gets exactly one answer, none INTERNAL_ERROR, and the service still classifies a good
request afterwards. Client text reaches the component's log escaped.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz_strategies import (
    binary_payloads,
    deep_json,
    fuzz_settings,
    json_values,
    request_like,
)
from ggic.local.ipc_server import IpcServer
from ggic.modelgen.testnets import write_neo_like
from test_components_ipc import (
    CLASSIFIER,
    component_env,
    recipe_defaults,
    register_from_recipe,
)
from test_log_safety import HOSTILE

REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class Answers:
    """Everything published on any topic but the request topic."""

    def __init__(self, server: IpcServer) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.unsubscribe = server.subscribe(
            "#", lambda topic, m: topic != "local/inference" and self.queue.put((topic, m)))

    def take(self, timeout: float = 20.0) -> tuple[str, dict]:
        return self.queue.get(timeout=timeout)


@pytest.fixture(scope="module")
def live(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("live")
    net = write_neo_like(root / "vgg16", seed=5)
    photo = root / photos[0].name
    photo.write_bytes(photos[0].read_bytes())
    access = recipe_defaults(CLASSIFIER)["accessControl"]
    pubsub = access["aws.greengrass.ipc.pubsub"]
    pubsub[f"{CLASSIFIER}:pubsub:2"]["resources"] = ["local/result", "replies/*"]
    server = IpcServer(root / "ipc.socket")
    register_from_recipe(server, CLASSIFIER, ModelDir=str(net.model_dir),
                         ModelProfile="neo-vgg16", LabelsPath=str(net.labels_path),
                         AllowedImageDirs=[str(root)], accessControl=access)
    server.start()
    answers = Answers(server)
    log_path = root / "classifier.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed at teardown
    classifier = subprocess.Popen([sys.executable, "-m", "ggic", "classifier"],
                                  env=component_env(server, CLASSIFIER), stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        assert server.wait_for_state(CLASSIFIER, "RUNNING", 30), log_path.read_text()
        deadline = time.monotonic() + 30  # (RUNNING may come just before the subscription)
        while "taking requests from" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield {"server": server, "answers": answers, "photo": photo, "log": log_path,
               "classifier": classifier}
    finally:
        if classifier.poll() is None:
            classifier.kill()
        classifier.wait(10)
        log.close()
        answers.unsubscribe()
        server.stop()


def exchange(live, payload) -> tuple[str, dict]:
    """Publish one message; its one answer."""
    live["server"].publish("local/inference", payload)
    try:
        return live["answers"].take()
    except queue.Empty:
        pytest.fail(f"no answer to {payload!r:.200}\n{live['log'].read_text()[-3000:]}")


def check_answer(payload, topic: str, answer: dict) -> None:
    assert answer["status"] == "error", answer  # nothing generated is a classifiable image
    assert answer["error"]["code"] != "INTERNAL_ERROR", answer
    assert len(json.dumps(answer)) < 16 * 1024
    assert REQUEST_ID.fullmatch(answer["request_id"]), answer
    given_id = payload.get("request_id") if isinstance(payload, dict) else None
    if isinstance(given_id, str) and REQUEST_ID.fullmatch(given_id):
        assert answer["request_id"] == given_id
    assert topic == "local/result" or topic.startswith("replies/"), topic


def test_hostile_text_reaches_the_component_log_escaped(live):
    answer = exchange(live, {"request_id": "evil", "image_path": "/a.jpg", HOSTILE: 1})[1]
    assert answer["error"]["code"] == "INVALID_REQUEST"
    deadline = time.monotonic() + 15  # (a rate-limited line may wait for its interval)
    while "evil" not in live["log"].read_text(encoding="utf-8") and time.monotonic() < deadline:
        time.sleep(0.1)
    text = live["log"].read_bytes().decode("utf-8")  # strict: every line was written whole
    line = next(line for line in text.splitlines() if "evil" in line)
    assert "\\n2026-01-01 00:00:00,000 ERROR ggic: FORGED\\r\\x1b[2J\\u2028\\ud800-\\udfff" in line
    assert not any(line.startswith("2026-01-01") for line in text.splitlines())
    assert "Logging error" not in text


@fuzz_settings(300)
@given(payload=st.one_of(
    json_values(12),
    request_like(json_values(4)),
    request_like(json_values(4)).map(json.dumps),  # JSON text in a jsonMessage
    binary_payloads(),
    deep_json().map(lambda text: text.encode("utf-8")),
))
def test_every_hostile_message_gets_exactly_one_typed_answer(live, payload):
    check_answer(payload, *exchange(live, payload))


def test_after_the_fuzz_nothing_more_is_answered_and_a_good_request_is_classified(live):
    time.sleep(1.0)
    assert live["answers"].queue.empty(), "an answer too many"
    topic, answer = exchange(live, {"request_id": "good", "image_path": str(live["photo"])})
    assert topic == "local/result" and answer["request_id"] == "good"
    assert answer["status"] == "ok", answer
    assert live["classifier"].poll() is None
    text = live["log"].read_text(encoding="utf-8")
    assert "INTERNAL_ERROR" not in text and "Traceback" not in text, text[-3000:]
