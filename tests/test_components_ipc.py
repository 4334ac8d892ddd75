"""The classifier and the requester as separate processes, talking through the REAL awsiotsdk
client over a Unix socket served by ggic.local's IPC server, classifying real photos with a
real DLR model through libdlr.so.

Configuration and access control come from the real recipes' DefaultConfiguration.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from ggic.classifier.inputs import InputLimits
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline
from ggic.classifier.profiles import resolve_profile
from ggic.local.ipc_server import IpcServer
from ggic.messages import ImageSource, SourceKind
from ggic.modelgen.testnets import write_modelstore_like, write_neo_like

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER = "com.custom.ImageClassifier"
REQUESTER = "com.custom.requester"
POISON = -3.5


def recipe_defaults(name: str) -> dict:
    recipe = yaml.safe_load((REPO / "recipes" / f"{name}.yaml").read_text())
    return recipe["ComponentConfiguration"]["DefaultConfiguration"]


def register_from_recipe(server: IpcServer, name: str, **settings: object) -> dict:
    """Register ``name`` with its recipe's default configuration and accessControl, with
    ``settings`` changed; the configuration registered."""
    config = {**recipe_defaults(name), **settings}
    server.register_component(name, configuration=config, access_control=config["accessControl"])
    return config


def component_env(server: IpcServer, name: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(server.component_env(name))
    env["PYTHONPATH"] = str(REPO / "components")
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT dumps every thread's stack (see stop_within)
    return env


def stop_within(process: subprocess.Popen, seconds: float, log_path: Path) -> int:
    """SIGTERM ``process`` and return its exit code; if it has not exited within ``seconds``,
    fail with its log, after SIGABRT made it write every thread's stack there."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
        pytest.fail(f"no exit within {seconds} s of SIGTERM:\n{log_path.read_text()[-8000:]}")


class Results:
    """A server-side subscriber to local/result: what the classifier published."""

    def __init__(self, server: IpcServer, topic: str = "local/result") -> None:
        self.queue: queue.Queue = queue.Queue()
        self.unsubscribe = server.subscribe(topic, lambda _t, m: self.queue.put(m))

    def take(self, n: int, timeout: float = 20.0) -> list[dict]:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            out.append(self.queue.get(timeout=max(0.01, deadline - time.monotonic())))
        return out


@pytest.fixture(scope="module")
def world(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("ipc")
    net = write_neo_like(root / "vgg16", seed=11, poison_value=POISON)
    images = root / "images"
    images.mkdir()
    for photo in photos[:3]:
        (images / photo.name).write_bytes(photo.read_bytes())
    server = IpcServer(root / "ipc.socket")
    register_from_recipe(server, CLASSIFIER, ModelDir=str(net.model_dir),
                         ModelProfile="neo-vgg16", LabelsPath=str(net.labels_path),
                         AllowedImageDirs=[str(root)], TopK="5", ScoreThreshold="0")
    register_from_recipe(server, REQUESTER, ImageDirectory=str(images), ResultTimeout="20")
    server.start()
    results = Results(server)
    log = open(root / "classifier.log", "w")  # noqa: SIM115 - closed at teardown
    classifier = subprocess.Popen([sys.executable, "-m", "ggic", "classifier"],
                                  env=component_env(server, CLASSIFIER), stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        assert server.wait_for_state(CLASSIFIER, "RUNNING", 30), (root / "classifier.log"
                                                                  ).read_text()
        yield {"server": server, "net": net, "images": images, "root": root,
               "classifier": classifier, "results": results, "log": root / "classifier.log"}
    finally:
        if classifier.poll() is None:
            classifier.kill()
        classifier.wait(10)
        log.close()
        results.unsubscribe()
        server.stop()


def run_requester(world, *args: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "ggic", "requester", "--once", "--json", *args],
        env=component_env(world["server"], REQUESTER), capture_output=True, text=True,
        timeout=60)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout + done.stderr
    return lines


def drain(results: Results) -> None:
    while not results.queue.empty():
        results.queue.get_nowait()


def test_requests_and_results_between_two_processes(world, photos):
    outcomes = run_requester(world)
    assert [Path(o["image"]).name for o in outcomes] == sorted(
        p.name for p in photos[:3])
    net = world["net"]
    pipeline = ClassificationPipeline(load_model(net.model_dir, resolve_profile("neo-vgg16"),
                                                  str(net.labels_path)))
    for outcome in outcomes:
        assert outcome["status"] == "ok", outcome
        assert outcome["model"]["profile"] == "neo-vgg16"
        want, _ = pipeline.classify(ImageSource(SourceKind.PATH, path=outcome["image"]),
                                    InputLimits(), 5, 0.0)
        got = outcome["predictions"]
        assert [p["class_id"] for p in got] == [p.class_id for p in want]
        assert [p["label"] for p in got] == [p.label for p in want]
        np.testing.assert_allclose([p["score"] for p in got], [p.score for p in want],
                                   atol=1e-5)


def test_an_error_reply_reaches_the_requester(world, tmp_path_factory):
    folder = world["root"] / "mixed"
    folder.mkdir(exist_ok=True)
    (folder / "broken.jpg").write_text("this is not a JPEG")
    (folder / "good.png").write_bytes(next(world["images"].iterdir()).read_bytes())
    outcomes = {Path(o["image"]).name: o for o in run_requester(
        world, "--image-directory", str(folder))}
    assert outcomes["broken.jpg"]["status"] == "error"
    assert outcomes["broken.jpg"]["error"]["code"] == "UNSUPPORTED_IMAGE"
    assert outcomes["good.png"]["status"] == "ok"


def test_every_bad_request_gets_its_typed_error_and_the_service_keeps_answering(world):
    server, results, root = world["server"], world["results"], world["root"]
    drain(results)
    photo = next(world["images"].iterdir())
    outside = Path("/etc/hostname")
    poison = root / "poison.npy"
    np.save(poison, np.full(world["net"].input_shape, POISON, dtype=np.float32))
    wrong = root / "wrong.npy"
    np.save(wrong, np.zeros((1, 3, 10, 10), dtype=np.float32))
    big = root / "big.png"
    big.write_bytes(b"\x89PNG" + b"\x00" * (10 * 1024 * 1024 + 1))
    cases = {
        "invalid": {"request_id": "invalid", "image_path": "relative.png"},
        "missing": {"request_id": "missing", "image_path": str(root / "nope.jpg")},
        "outside": {"request_id": "outside", "image_path": str(outside)},
        "garbage": {"request_id": "garbage",
                    "image_b64": base64.b64encode(b"not an image at all").decode()},
        "big": {"request_id": "big", "image_path": str(big)},
        "tensor": {"request_id": "tensor", "tensor_path": str(wrong)},
        "poison": {"request_id": "poison", "tensor_path": str(poison)},
        "ok": {"request_id": "ok", "image_path": str(photo)},
    }
    expected = {"invalid": "INVALID_REQUEST", "missing": "IMAGE_NOT_FOUND",
                "outside": "PATH_NOT_ALLOWED", "garbage": "UNSUPPORTED_IMAGE",
                "big": "IMAGE_TOO_LARGE", "tensor": "BAD_TENSOR", "poison": "MODEL_ERROR"}
    for message in cases.values():
        server.publish("local/inference", message)
    server.publish("local/inference", b"{not json")  # binary, not JSON: still answered
    got = {m["request_id"]: m for m in results.take(len(cases) + 1)}
    for rid, code in expected.items():
        assert got[rid]["status"] == "error" and got[rid]["error"]["code"] == code, got[rid]
    assert got["ok"]["status"] == "ok"
    anonymous = [m for rid, m in got.items() if rid not in cases]
    assert anonymous[0]["error"]["code"] == "INVALID_REQUEST"
    # and afterwards the classifier still answers
    assert run_requester(world)[0]["status"] == "ok"


def test_busy_when_the_queue_is_full_and_nothing_is_lost(world):
    server, results = world["server"], world["results"]
    config = server.get_configuration(CLASSIFIER)
    server.set_configuration(CLASSIFIER, {**config, "QueueSize": "1"})
    try:
        time.sleep(1.0)  # the classifier re-reads its configuration
        drain(results)
        photo = str(next(world["images"].iterdir()))
        n = 120
        for i in range(n):
            server.publish("local/inference", {"request_id": f"burst-{i}", "image_path": photo})
        got = results.take(n, timeout=60)
        ids = [m["request_id"] for m in got]
        assert sorted(ids) == sorted(f"burst-{i}" for i in range(n))  # exactly one each
        codes = {m.get("error", {}).get("code", "ok") for m in got}
        assert codes <= {"ok", "BUSY"} and "BUSY" in codes and "ok" in codes
    finally:
        server.set_configuration(CLASSIFIER, config)


def test_topk_changes_while_running(world):
    server = world["server"]
    config = server.get_configuration(CLASSIFIER)
    server.set_configuration(CLASSIFIER, {**config, "TopK": "2"})
    try:
        deadline = time.monotonic() + 20
        while True:
            sizes = {len(o["predictions"]) for o in run_requester(world)}
            if sizes == {2} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sizes == {2}
        assert "configuration updated: TopK" in world["log"].read_text()
    finally:
        server.set_configuration(CLASSIFIER, config)


def test_a_new_model_takes_over_while_running_and_a_broken_one_is_refused(world):
    server = world["server"]
    config = server.get_configuration(CLASSIFIER)
    other = write_modelstore_like(world["root"] / "resnet", seed=5, num_classes=10)
    log = world["log"]

    def profiles() -> set[str]:
        return {o["model"]["profile"] for o in run_requester(world)}

    def until(predicate) -> bool:
        deadline = time.monotonic() + 20
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.2)
        return predicate()

    try:
        server.set_configuration(CLASSIFIER, {
            **config, "ModelDir": str(other.model_dir), "ModelProfile": "auto",
            "LabelsPath": ""})
        assert until(lambda: profiles() == {"modelstore-resnet50"}), log.read_text()
        outcome = run_requester(world)[0]
        assert {p["label"] for p in outcome["predictions"]} <= set(other.labels)
        assert "the new model takes over" in log.read_text()

        broken = world["root"] / "broken-model"
        broken.mkdir(exist_ok=True)
        (broken / "compiled.params").write_bytes(b"not params")
        server.set_configuration(CLASSIFIER, {
            **config, "ModelDir": str(broken), "ModelProfile": "auto", "LabelsPath": ""})
        assert until(lambda: "refused the new model settings" in log.read_text())
        assert profiles() == {"modelstore-resnet50"}  # the working model still answers
        assert server.component_state(CLASSIFIER) == "RUNNING"
    finally:
        server.set_configuration(CLASSIFIER, config)
    assert until(lambda: profiles() == {"neo-vgg16"})


def test_sigterm_stops_cleanly(world):
    classifier = world["classifier"]
    classifier.send_signal(signal.SIGTERM)
    assert classifier.wait(30) == 0
    assert "stopped after answering" in world["log"].read_text()


def test_the_requester_keeps_running_while_the_classifier_is_down(tmp_path, photos):
    """Rounds time out while no classifier runs; the requester stays up, and once a classifier
    starts, the next rounds get results: both real processes, the real client, real socket."""
    net = write_neo_like(tmp_path / "vgg16", seed=3)
    images = tmp_path / "images"
    images.mkdir()
    (images / photos[0].name).write_bytes(photos[0].read_bytes())
    server = IpcServer(tmp_path / "ipc.socket")
    register_from_recipe(server, CLASSIFIER, ModelDir=str(net.model_dir),
                         ModelProfile="neo-vgg16", LabelsPath=str(net.labels_path),
                         ScoreThreshold="0", AllowedImageDirs=[str(tmp_path)])
    register_from_recipe(server, REQUESTER, ImageDirectory=str(images),
                         InferenceInterval="0.3", ResultTimeout="0.5")
    server.start()
    requester_log = tmp_path / "requester.log"
    processes: list[subprocess.Popen] = []
    try:
        with open(requester_log, "w") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "ggic", "requester"], env=component_env(server, REQUESTER),
                stdout=log, stderr=subprocess.STDOUT))

        def log_has(text: str, count: int = 1, timeout: float = 30.0) -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if requester_log.read_text().count(text) >= count:
                    return True
                time.sleep(0.1)
            return False

        assert log_has("timed out after 0.5 s", count=2), requester_log.read_text()
        assert processes[0].poll() is None  # still running, still sending rounds
        assert " ok " not in requester_log.read_text()

        with open(tmp_path / "classifier.log", "w") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "ggic", "classifier"],
                env=component_env(server, CLASSIFIER), stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answered = [line for line in requester_log.read_text().splitlines()
                        if f"{photos[0].name}: " in line and "no result" not in line]
            if answered:
                break
            time.sleep(0.1)
        assert answered, requester_log.read_text() + (tmp_path / "classifier.log").read_text()
        line = answered[0].split(" INFO ggic.requester.service: ")[-1]
        top = re.match(rf"{re.escape(photos[0].name)}: (.+?) (\d\.\d\d)[,(]", line)
        assert top and top.group(1) in net.labels, answered[0]  # a real result: a label, a score
        assert processes[0].poll() is None
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            assert process.wait(30) == 0
        server.stop()


def test_sigterm_stops_the_requester_mid_round(tmp_path, photos):
    """Greengrass gives a component 5 s after SIGTERM: a requester waiting for results (here
    ResultTimeout 60 s, no classifier) stops waiting and exits 0 at once."""
    images = tmp_path / "images"
    images.mkdir()
    (images / photos[0].name).write_bytes(photos[0].read_bytes())
    server = IpcServer(tmp_path / "ipc.socket")
    register_from_recipe(server, REQUESTER, ImageDirectory=str(images), ResultTimeout="60")
    requests = queue.Queue()
    server.start()
    unsubscribe = server.subscribe("local/inference", lambda _t, m: requests.put(m))
    try:
        requester = subprocess.Popen([sys.executable, "-m", "ggic", "requester"],
                                     env=component_env(server, REQUESTER),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            requests.get(timeout=30)  # the round has started and waits for its result
            requester.send_signal(signal.SIGTERM)
            out, _ = requester.communicate(timeout=10)
        finally:
            if requester.poll() is None:
                requester.kill()
        assert requester.returncode == 0, out
        assert "stopped before the result came" in out
    finally:
        unsubscribe()
        server.stop()
