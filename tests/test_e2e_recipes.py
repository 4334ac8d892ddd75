"""Both components from the REAL recipes, built as for a device (``ggic build``), deployed on
the local runtime with a stand-in ModelStore that carries a real DLR model: the recipes'
Install steps (component-install.sh: model copy, venv link) and Run commands, the real
awsiotsdk client in both processes, real photos through libdlr.so.

One runtime for the module; the tests run in order (the last one changes TopK).
"""

from __future__ import annotations

import json
import queue
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ggic.cli import main
from ggic.local.deployment import DeploymentRequest, parse_update_config
from ggic.local.lifecycle import State
from ggic.local.runtime import LocalRuntime
from local_components import build_our_recipes, fast_runtime

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER = "com.custom.ImageClassifier"
REQUESTER = "com.custom.requester"
UNAUTHORIZED = "com.example.UnauthorizedRequester"


def run_starts(log: str) -> int:
    return sum("shell-runner-start" in line and "lifecycle.Run.Script" in line
               for line in log.splitlines())


class Topic:
    """A server-side subscription collecting decoded messages."""

    def __init__(self, runtime: LocalRuntime, topic: str) -> None:
        self.messages: queue.Queue[Any] = queue.Queue()
        self.seen: dict[str, dict] = {}  # taken by by_id while looking for another id
        runtime.subscribe(topic, lambda _t, m: self.messages.put(
            json.loads(m) if isinstance(m, bytes) else m))

    def take(self, n: int, timeout: float = 20.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        return [self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
                for _ in range(n)]

    def by_id(self, request_id: str, timeout: float = 20.0) -> dict:
        """The message for ``request_id``, whatever order results arrive in."""
        deadline = time.monotonic() + timeout
        while request_id not in self.seen:
            message = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            self.seen[str(message.get("request_id"))] = message
        return self.seen.pop(request_id)


class World:
    def __init__(self, runtime: LocalRuntime, build: Path, images: Path, photos: list[Path],
                 results: Topic) -> None:
        self.runtime, self.build, self.images, self.photos = runtime, build, images, photos
        self.results = results

    def deploy(self, merge: dict[str, str], update: dict | None = None,
               recipe_dir: Path | None = None, artifact_dir: Path | None = None) -> None:
        record = self.runtime.deploy(DeploymentRequest(
            recipe_dir=recipe_dir or self.build / "recipes",
            artifact_dir=artifact_dir or self.build / "artifacts", merge=merge,
            update_config=parse_update_config(update) if update else {}), 60)
        assert record.status == "SUCCEEDED", record.error


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> Iterator[World]:
    base = tmp_path_factory.mktemp("e2e")
    ours = build_our_recipes(base, photos[:3], seed=5)
    images = ours.images
    with fast_runtime(base / "root", stand_ins=(ours.stand_in,)) as runtime:
        world = World(runtime, ours.build, images, sorted(images.iterdir()),
                      Topic(runtime, "local/result"))
        world.deploy({CLASSIFIER: "1.0.0"}, {CLASSIFIER: {"MERGE": {
            "AllowedImageDirs": [str(images)], "ScoreThreshold": "0"}}})
        assert runtime.wait_for_report(CLASSIFIER, "RUNNING", 30), \
            runtime.log_path(CLASSIFIER).read_text()[-3000:]
        yield world


def test_both_components_install_and_run_from_the_real_recipes(world: World) -> None:
    runtime = world.runtime
    requests = Topic(runtime, "local/inference")
    world.deploy({REQUESTER: "1.0.0"}, {REQUESTER: {"MERGE": {
        "ImageDirectory": str(world.images), "InferenceInterval": "0"}}})
    sent = requests.take(len(world.photos))
    results = {r["request_id"]: r for r in world.results.take(len(world.photos))}
    assert sorted(Path(r["image_path"]).name for r in sent) == [p.name for p in world.photos]
    for request in sent:
        result = results[request["request_id"]]
        assert result["status"] == "ok", result
        assert len(result["predictions"]) == 5
        assert result["model"]["profile"] == "modelstore-resnet50"
    assert runtime.wait_for_state(REQUESTER, State.FINISHED, 30)

    # the recipes' Install step ran: the ModelStore model copied for this platform (the
    # classifier's ModelDir is empty), the venv linked to this environment
    work = runtime.root / "work"
    assert (work / CLASSIFIER / "model" / "compiled.so").is_file()
    for name in (CLASSIFIER, REQUESTER):
        assert (work / name / "venv").resolve() == Path(sys.prefix).resolve()
    log = runtime.log_path(REQUESTER).read_text()
    for photo in world.photos:
        assert f"{photo.name}: " in log
    assert "using the existing virtual environment" in log


def test_a_request_from_the_cli_gets_a_result_and_bad_ones_error_replies(world: World) -> None:
    root = str(world.runtime.root)
    photo = world.photos[0]
    for request_id, path in (("cli-ok", photo), ("cli-missing", world.images / "nope.jpg"),
                             ("cli-outside", REPO / "README.md")):
        message = json.dumps({"request_id": request_id, "image_path": str(path)})
        assert main(["local", "pubsub", "pub", "--root", root, "-t", "local/inference",
                     "-m", message]) == 0
    assert world.results.by_id("cli-ok")["status"] == "ok"
    missing = world.results.by_id("cli-missing")
    assert missing["status"] == "error" and missing["error"]["code"] == "IMAGE_NOT_FOUND"
    outside = world.results.by_id("cli-outside")
    assert outside["error"]["code"] == "PATH_NOT_ALLOWED"


def test_a_recipe_without_the_publish_policy_gets_unauthorized(world: World,
                                                               tmp_path: Path) -> None:
    recipe = yaml.safe_load((world.build / "recipes" / f"{REQUESTER}.yaml").read_text())
    recipe["ComponentName"] = UNAUTHORIZED
    policies = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"][
        "aws.greengrass.ipc.pubsub"]
    del policies[f"{REQUESTER}:pubsub:1"]  # the PublishToTopic policy
    recipe["ComponentConfiguration"]["DefaultConfiguration"].update(
        ImageDirectory=str(world.images), InferenceInterval="0", ResultTimeout="5")
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "unauthorized.yaml").write_text(yaml.safe_dump(recipe))
    artifacts = tmp_path / "artifacts" / UNAUTHORIZED / "1.0.0"
    shutil.copytree(world.build / "artifacts" / REQUESTER / "1.0.0", artifacts)

    world.deploy({UNAUTHORIZED: "1.0.0"}, recipe_dir=tmp_path / "recipes",
                 artifact_dir=tmp_path / "artifacts")
    assert world.runtime.wait_for_state(UNAUTHORIZED, State.FINISHED, 30)
    log = world.runtime.log_path(UNAUTHORIZED).read_text()
    assert "not sent: UnauthorizedError" in log
    assert (f"Principal {UNAUTHORIZED} is not authorized to perform "
            "aws.greengrass.ipc.pubsub:aws.greengrass#PublishToTopic on resource "
            "local/inference") in log
    runtime_log = world.runtime.log_path().read_text()
    assert (f"{UNAUTHORIZED} is not authorized to perform aws.greengrass#PublishToTopic on "
            "local/inference: add an aws.greengrass.ipc.pubsub policy with operation "
            "aws.greengrass#PublishToTopic and resource local/inference") in runtime_log


def test_a_deployment_changes_top_k_of_the_running_classifier(world: World) -> None:
    runtime = world.runtime
    starts = run_starts(runtime.log_path(CLASSIFIER).read_text())
    assert starts == 1
    world.deploy({}, {CLASSIFIER: {"MERGE": {"TopK": "2"}}})
    assert runtime.server.get_configuration(CLASSIFIER)["TopK"] == "2"
    deadline = time.monotonic() + 20
    predictions: list = []
    while time.monotonic() < deadline:  # the update reaches the classifier asynchronously
        request_id = f"topk-{time.monotonic_ns()}"
        runtime.publish("local/inference", {"request_id": request_id,
                                            "image_path": str(world.photos[1])})
        predictions = world.results.by_id(request_id)["predictions"]
        if len(predictions) == 2:
            break
        time.sleep(0.1)
    assert len(predictions) == 2
    log = runtime.log_path(CLASSIFIER).read_text()
    assert "configuration updated: TopK" in log
    assert run_starts(log) == starts  # applied live: no restart
    assert runtime.state(CLASSIFIER) == State.RUNNING
