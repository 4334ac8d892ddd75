"""The classifier is never RUNNING and deaf: through the real awsiotsdk client, a real socket
(ggic.local's IPC server), a real classifier process and a real DLR model.

* RUNNING is reported only once requests are taken: a request published the instant the state
  changes is answered.
* A subscription event the SDK cannot read does not end the subscription; a stream the server
  ends is opened again; requests and configuration updates go on arriving.
* If the IPC connection itself is gone, the process exits non-zero (Greengrass restarts it);
  so does losing only the connection that carries the requests (see ggic.classifier.intake).
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ggic.local.ipc_errors import ServiceError
from ggic.local.ipc_server import IpcServer
from ggic.modelgen.testnets import write_neo_like
from test_components_ipc import CLASSIFIER, Results, component_env, register_from_recipe

SUBSCRIBE_TO_TOPIC = "aws.greengrass#SubscribeToTopic"
SUBSCRIBE_TO_CONFIGURATION = "aws.greengrass#SubscribeToConfigurationUpdate"


class Classifier:
    """A classifier process under a fresh IPC server; ``on_running`` runs on the server's
    callback thread the moment the classifier reports RUNNING."""

    def __init__(self, root: Path, photo: Path, on_running=None) -> None:
        self.root = root
        self.photo = root / photo.name
        self.photo.write_bytes(photo.read_bytes())
        net = write_neo_like(root / "vgg16", seed=7)

        def state_changed(component: str, state: str) -> None:
            if component == CLASSIFIER and state == "RUNNING" and on_running is not None:
                on_running(self)

        self.server = IpcServer(root / "ipc.socket", on_state_change=state_changed)
        self.config = register_from_recipe(
            self.server, CLASSIFIER, ModelDir=str(net.model_dir), ModelProfile="neo-vgg16",
            LabelsPath=str(net.labels_path), AllowedImageDirs=[str(root)], ScoreThreshold="0")
        self.server.start()
        self.results = Results(self.server)
        self.log_path = root / "classifier.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ggic", "classifier"],
                env=component_env(self.server, CLASSIFIER), stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_running(self) -> None:
        assert self.server.wait_for_state(CLASSIFIER, "RUNNING", 60), self.log()

    def request(self, rid: str) -> None:
        self.server.publish("local/inference", {"request_id": rid, "image_path": str(self.photo)})

    def answer(self, rid: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self.results.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no answer to {rid}:\n{self.log()}") from None
            if message.get("request_id") == rid:
                return message

    def end_streams(self, operation: str) -> int:
        """The server ends the classifier's ``operation`` streams with a ServiceError (as a
        nucleus does when it fails a stream); how many. Reaches into the server: it has no
        public way to do this, and production code needs none."""
        server = self.server
        with server._lock:
            streams = [stream for connection in server._connections
                       if connection.component == CLASSIFIER
                       for stream in connection.streams.values()
                       if stream.operation == operation]
        for stream in streams:
            server._loop.call_soon_threadsafe(stream.fail, ServiceError("stream ended by test"))
        return len(streams)

    def connections_with(self, operation: str) -> list:
        """The classifier's server-side connections that carry an ``operation`` stream."""
        with self.server._lock:
            return [connection for connection in self.server._connections
                    if connection.component == CLASSIFIER
                    and any(s.operation == operation for s in connection.streams.values())]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.results.unsubscribe()
        self.server.stop()


@pytest.fixture
def classifier(tmp_path, photos) -> Iterator[Classifier]:
    made = Classifier(tmp_path, photos[0])
    try:
        made.wait_running()
        yield made
    finally:
        made.close()


def test_a_request_sent_the_instant_running_is_reported_is_answered(tmp_path, photos):
    made = Classifier(tmp_path, photos[0], on_running=lambda c: c.request("first"))
    try:
        made.wait_running()
        answer = made.answer("first")
        assert answer["status"] == "ok", answer
    finally:
        made.close()


def test_an_event_the_sdk_cannot_read_does_not_end_the_request_subscription(classifier):
    # The real nucleus forwards any JSON; Python's json refuses integers over 4,300 digits
    # (CVE-2020-10735), so the classifier's SDK cannot deserialize this event. Lift the limit
    # here so that our own server can send it.
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        classifier.server.publish("local/inference", {"request_id": "huge", "n": 10 ** 5000})
    finally:
        sys.set_int_max_str_digits(limit)
    classifier.request("after")
    assert classifier.answer("after")["status"] == "ok"
    assert "DeserializeError" in classifier.log() and "skipped that event" in classifier.log()
    assert classifier.process.poll() is None


def test_a_request_stream_the_server_ends_is_opened_again(classifier):
    assert classifier.end_streams(SUBSCRIBE_TO_TOPIC) == 1
    deadline = time.monotonic() + 20
    while classifier.log().count("taking requests from local/inference") < 2 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    classifier.request("after")
    assert classifier.answer("after")["status"] == "ok"
    log = classifier.log()
    assert "the request subscription ended; opening it again" in log, log
    assert log.count("taking requests from local/inference") == 2


def test_requests_arrive_on_a_connection_of_their_own(classifier):
    """Two connections with the same token: one carries only the request subscription."""
    assert classifier.server.connection_count(CLASSIFIER) == 2
    (intake,) = classifier.connections_with(SUBSCRIBE_TO_TOPIC)
    assert {s.operation for s in intake.streams.values()} == {SUBSCRIBE_TO_TOPIC}
    assert classifier.connections_with(SUBSCRIBE_TO_CONFIGURATION) != [intake]


def exit_code_within_15_s(classifier, without: str) -> int:
    try:
        return classifier.process.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running without {without}:\n" + classifier.log())


def test_the_process_exits_non_zero_when_only_the_request_connection_is_gone(classifier):
    (intake,) = classifier.connections_with(SUBSCRIBE_TO_TOPIC)
    intake.close_threadsafe()
    assert exit_code_within_15_s(classifier, "its request connection") != 0
    assert "the IPC connection to the nucleus is gone" in classifier.log()


def test_a_configuration_stream_the_server_ends_is_opened_again(classifier):
    assert classifier.end_streams(SUBSCRIBE_TO_CONFIGURATION) == 1
    deadline = time.monotonic() + 20
    while "configuration subscription ended" not in classifier.log() \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # reopened after 0 s; then a change must still arrive
    classifier.server.set_configuration(CLASSIFIER, {**classifier.config, "TopK": "2"})
    deadline = time.monotonic() + 20
    while True:
        classifier.request("k")
        sizes = len(classifier.answer("k").get("predictions", []))
        if sizes == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sizes == 2, classifier.log()
    assert "configuration updated: TopK" in classifier.log()


def test_the_process_exits_non_zero_when_the_ipc_connection_is_gone(classifier):
    classifier.server.unregister_component(CLASSIFIER)  # closes its connection
    assert exit_code_within_15_s(classifier, "IPC") != 0
    assert "the IPC connection to the nucleus is gone" in classifier.log()
