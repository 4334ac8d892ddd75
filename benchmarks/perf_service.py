"""The classifier component as it runs on a device, measured through the real awsiotsdk client.

The classifier runs in its own process (``python -m ggic classifier``) against ``ggic.local``'s
IPC server, configured from its recipe's defaults; requests are 640x480 JPEG ``image_path``
requests published by real SDK clients in this process, results come back through a real SDK
subscription. :meth:`ClassifierUnderTest.cpu_s` counts the CPU of the classifier process, of the
IPC server's thread and of the rest of this process (the SDK clients).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import awsiot.greengrasscoreipc
import yaml
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage
from perf_cpu import process_cpu_s, threads_and_rest_cpu_s, threads_started_by

from ggic.local.ipc_server import IpcServer

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER = "com.custom.ImageClassifier"
REQUEST_TOPIC = "local/inference"
RESULT_TOPIC = "local/result"
CLIENT_ACL = {"aws.greengrass.ipc.pubsub": {"bench": {
    "operations": ["aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"],
    "resources": [REQUEST_TOPIC, RESULT_TOPIC]}}}


def recipe_defaults() -> dict[str, Any]:
    recipe = yaml.safe_load((REPO / "recipes" / f"{CLASSIFIER}.yaml").read_text())
    return recipe["ComponentConfiguration"]["DefaultConfiguration"]


class Results:
    """One SDK subscription to the result topic; waiters keyed by request id."""

    def __init__(self, client: GreengrassCoreIPCClientV2) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[threading.Event, dict[str, Any]]] = {}
        client.subscribe_to_topic(topic=RESULT_TOPIC, on_stream_event=self._on_event)

    def _on_event(self, event: Any) -> None:
        arrived = time.perf_counter()
        message = event.json_message.message
        with self._lock:
            waiter = self._waiting.pop(message.get("request_id", ""), None)
        if waiter is not None:
            waiter[1].update(message=message, arrived=arrived)
            waiter[0].set()

    def expect(self, request_id: str) -> tuple[threading.Event, dict[str, Any]]:
        waiter = (threading.Event(), {})
        with self._lock:
            self._waiting[request_id] = waiter
        return waiter


class ClassifierUnderTest:
    """A classifier process on a fresh IPC server, with ``clients`` SDK connections."""

    def __init__(self, model_dir: Path, image_dir: Path, clients: int = 4,
                 **settings: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ggic-bench-"))
        self.server = IpcServer(self.root / "ipc.socket")
        config = {**recipe_defaults(), "ModelDir": str(model_dir), "ModelProfile": "auto",
                  "AllowedImageDirs": [str(image_dir)], "ScoreThreshold": "0", **settings}
        self.config = config
        self.server.register_component(CLASSIFIER, configuration=config,
                                       access_control=config["accessControl"])
        # its event loop's thread: the IPC server's CPU (the nucleus's, on a device)
        self.server_threads = threads_started_by(self.server.start)
        env = dict(os.environ)
        env.update(self.server.component_env(CLASSIFIER))
        env["PYTHONPATH"] = str(REPO / "components")
        self.log = open(self.root / "classifier.log", "w")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen([sys.executable, "-m", "ggic", "classifier"], env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        if not self.server.wait_for_state(CLASSIFIER, "RUNNING", 60):
            self.close()
            raise RuntimeError("the classifier did not start: "
                               + (self.root / "classifier.log").read_text()[-2000:])
        self.clients = [self._connect(f"bench.client{i}") for i in range(clients)]
        self.results = Results(self._connect("bench.results"))
        self._count = 0
        self._count_lock = threading.Lock()

    def _connect(self, name: str) -> GreengrassCoreIPCClientV2:
        token = self.server.register_component(name, access_control=CLIENT_ACL)
        connection = awsiot.greengrasscoreipc.connect(
            ipc_socket=str(self.server.socket_path), authtoken=token)
        return GreengrassCoreIPCClientV2(client=connection)

    def request(self, client: int, image: Path, timeout: float = 30.0) -> tuple[float, dict]:
        """Publish one image_path request and wait for its result: (seconds, result)."""
        with self._count_lock:
            self._count += 1
            request_id = f"c{client}-{self._count}"
        event, box = self.results.expect(request_id)
        started = time.perf_counter()
        self.clients[client].publish_to_topic(topic=REQUEST_TOPIC, publish_message=PublishMessage(
            json_message=JsonMessage(message={"request_id": request_id,
                                              "image_path": str(image)})))
        if not event.wait(timeout):
            raise RuntimeError(f"no result for {request_id} within {timeout} s")
        message = box["message"]
        if message.get("status") != "ok":
            raise RuntimeError(f"request {request_id} failed: {message}")
        return box["arrived"] - started, message

    def cpu_s(self) -> dict[str, float | None]:
        """CPU seconds so far of the classifier process, of the IPC server's thread and of
        the rest of this process (the SDK clients; also whatever else this process runs)."""
        server_s, rest_s = threads_and_rest_cpu_s(self.server_threads)
        clients = None if server_s is None else rest_s
        return {"classifier": process_cpu_s(self.process.pid), "ipc_server": server_s,
                "clients": clients}

    def close(self) -> None:
        for client in getattr(self, "clients", []):
            client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()
        self.server.stop()


def overhead_ms(service: ClassifierUnderTest, images: list[Path], count: int,
                warmup: int = 10) -> tuple[list[float], list[float], list[float]]:
    """One request at a time: (round trip, the service's inference, round trip - inference)."""
    trips, inference, overhead = [], [], []
    for index in range(count + warmup):
        seconds, result = service.request(0, images[index % len(images)])
        if index < warmup:
            continue
        trip = seconds * 1000.0
        model = float(result["timing_ms"]["inference"])
        trips.append(trip)
        inference.append(model)
        overhead.append(trip - model)
    return trips, inference, overhead


def pipelined_images_per_s(service: ClassifierUnderTest, images: list[Path],
                           per_client: int) -> float:
    """Each of the service's clients sends its next request when its last result arrived."""
    clients = len(service.clients)
    errors: list[BaseException] = []

    def client_loop(client: int) -> None:
        try:
            for index in range(per_client):
                service.request(client, images[(index + client) % len(images)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return clients * per_client / elapsed


def cpu_ms_per_image(before: dict[str, float | None], after: dict[str, float | None],
                     images: int) -> dict[str, float]:
    """CPU milliseconds per image of each process between two :meth:`ClassifierUnderTest.cpu_s`
    readings (processes /proc could not tell about are left out)."""
    out = {}
    for name, start in before.items():
        end = after.get(name)
        if start is not None and end is not None:
            out[name] = (end - start) * 1000.0 / images
    return out
