"""A live classifier process for tests: the real ``python -m ggic classifier`` on a real DLR
model, talking through the real awsiotsdk client to ggic.local's IPC server over a Unix
socket, configured from the recipe's DefaultConfiguration."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ggic.local.ipc_server import IpcServer
from ggic.modelgen.testnets import write_neo_like

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER = "com.custom.ImageClassifier"


@dataclass
class LiveClassifier:
    server: IpcServer
    process: subprocess.Popen
    root: Path
    log: Path
    results: queue.Queue

    def request(self, message: Any) -> None:
        self.server.publish("local/inference", message)

    def take(self, n: int, timeout: float = 20.0) -> list[dict]:
        """The next ``n`` results; queue.Empty if they do not all come within ``timeout``."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            out.append(self.results.get(timeout=max(0.01, deadline - time.monotonic())))
        return out

    def peak_rss_kib(self) -> int:
        """The classifier process's peak resident memory (VmHWM)."""
        for line in (Path("/proc") / str(self.process.pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")


@contextmanager
def live_classifier(root: Path, **settings: object) -> Iterator[LiveClassifier]:
    """Start a classifier whose AllowedImageDirs is ``root``; ``settings`` override recipe
    defaults."""
    recipe = yaml.safe_load((REPO / "recipes" / f"{CLASSIFIER}.yaml").read_text())
    net = write_neo_like(root / "model", seed=11)
    config = {**recipe["ComponentConfiguration"]["DefaultConfiguration"],
              "ModelDir": str(net.model_dir), "ModelProfile": "neo-vgg16",
              "LabelsPath": str(net.labels_path), "AllowedImageDirs": [str(root)],
              "ScoreThreshold": "0", **settings}
    server = IpcServer(root / "ipc.socket")
    server.register_component(CLASSIFIER, configuration=config,
                              access_control=config["accessControl"])
    server.start()
    results: queue.Queue = queue.Queue()
    unsubscribe = server.subscribe("local/result", lambda _t, m: results.put(m))
    env = {**os.environ, **server.component_env(CLASSIFIER),
           "PYTHONPATH": str(REPO / "components")}
    log_path = root / "classifier.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "ggic", "classifier"], env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        assert server.wait_for_state(CLASSIFIER, "RUNNING", 60), log_path.read_text()
        # RUNNING may come just before the request subscription is in place (issue #8.11)
        deadline = time.monotonic() + 30
        while "taking requests from" not in log_path.read_text():
            assert time.monotonic() < deadline and process.poll() is None, log_path.read_text()
            time.sleep(0.05)
        yield LiveClassifier(server, process, root, log_path, results)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        log.close()
        unsubscribe()
        server.stop()
