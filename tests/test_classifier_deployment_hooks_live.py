"""The classifier's deployment-time conversations, through the real parts: the classifier built
from its REAL recipe (``ggic build``) and deployed on ``ggic local`` with a real DLR model, the
real awsiotsdk client in every process.

* a deployment proposing an invalid classifier configuration FAILS with the classifier's own
  reason (SubscribeToValidateConfigurationUpdates), and the running classifier keeps its
  configuration and keeps answering;
* replacing the classifier by a new version while a client process streams requests at it:
  the classifier defers the update (DeferComponentUpdate) while requests it accepted are
  unanswered, and the client, which resends a request only when it is answered UNAVAILABLE
  ("send it again when it runs") or gets no answer at all (sent while no classifier was
  subscribed), ends with every request answered exactly once.

One runtime for the module; the tests run in order.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ggic.local.deployment import DeploymentRequest, parse_update_config
from ggic.local.deployment_policies import DeploymentPolicies
from ggic.local.runtime import LocalRuntime
from local_components import build_our_recipes, fast_runtime, write_recipe
from waiting import wait_until

CLASSIFIER = "com.custom.ImageClassifier"
STREAMER = "com.example.RequestStreamer"
BURST = 60

STREAM_SCRIPT = r'''
import json, os, signal, sys, threading, time
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

work = os.path.dirname(os.environ["PROBE_EVENTS"])
image = os.environ["STREAM_IMAGE"]
NO_ANSWER_S = 8.0  # longer than a stopping classifier takes to answer what it was given
lock = threading.Condition()
answers = {}  # request id -> statuses/codes, in arrival order
client = GreengrassCoreIPCClientV2()

def on_result(event):
    message = event.json_message.message
    with lock:
        answers.setdefault(str(message.get("request_id")), []).append(
            message.get("status") if message.get("status") == "ok"
            else (message.get("error") or {}).get("code"))
        lock.notify_all()

client.subscribe_to_topic(topic="local/result", on_stream_event=on_result)
sent = resent_unavailable = resent_silent = 0
ids = []
def status(note):
    with open(os.path.join(work, "progress.json"), "w") as out:
        json.dump({"answered": len(ids), "note": note}, out)

while not os.path.exists(os.path.join(work, "stop")):
    rid = f"s-{len(ids)}"
    while True:
        with lock:  # answers so far: wait for a new one (not the UNAVAILABLE of the last send)
            seen = len(answers.get(rid, []))
        client.publish_to_topic(topic="local/inference", publish_message=PublishMessage(
            json_message=JsonMessage(message={"request_id": rid, "image_path": image})))
        sent += 1
        deadline = time.monotonic() + NO_ANSWER_S
        with lock:
            lock.wait_for(lambda: len(answers.get(rid, [])) > seen,
                          max(0.0, deadline - time.monotonic()))
            got = list(answers.get(rid, []))
        if len(got) > seen and got[-1] != "UNAVAILABLE":
            break
        if len(got) > seen:
            resent_unavailable += 1
            time.sleep(0.2)
        else:
            resent_silent += 1
    ids.append(rid)
    status("running")
time.sleep(NO_ANSWER_S)  # any late, duplicate answer arrives now
with lock:
    summary = {"ids": ids, "answers": answers, "publishes": sent,
               "resent_unavailable": resent_unavailable, "resent_silent": resent_silent}
with open(os.path.join(work, "summary.json.part"), "w") as out:
    json.dump(summary, out)
os.replace(os.path.join(work, "summary.json.part"), os.path.join(work, "summary.json"))
threading.Event().wait()
'''


class World:
    def __init__(self, runtime: LocalRuntime, build: Path, images: Path) -> None:
        self.runtime, self.build, self.images = runtime, build, images

    def deploy(self, merge: dict[str, str], update: dict | None = None,
               recipe_dir: Path | None = None, artifact_dir: Path | None = None) -> Any:
        return self.runtime.deploy(DeploymentRequest(
            recipe_dir=recipe_dir or self.build / "recipes",
            artifact_dir=artifact_dir or self.build / "artifacts", merge=merge,
            update_config=parse_update_config(update) if update else {}), 90)

    def classify(self, request_id: str) -> dict:
        got: list[Any] = []
        self.runtime.subscribe("local/result", lambda _t, m: got.append(
            json.loads(m) if isinstance(m, bytes) else m))
        self.runtime.publish("local/inference", {"request_id": request_id, "image_path": str(
            sorted(self.images.iterdir())[0])})
        return wait_until(lambda: [m for m in got if m.get("request_id") == request_id])[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> Iterator[World]:
    base = tmp_path_factory.mktemp("hooks")
    ours = build_our_recipes(base, photos[:1], seed=7)
    images = ours.images
    policies = DeploymentPolicies(component_update_timeout=20.0)
    with fast_runtime(base / "root", stand_ins=(ours.stand_in,), policies=policies) as runtime:
        world = World(runtime, ours.build, images)
        record = world.deploy({CLASSIFIER: "1.0.0"}, {CLASSIFIER: {"MERGE": {
            "AllowedImageDirs": [str(images)], "ScoreThreshold": "0", "TopK": "3",
            "QueueSize": "128"}}})
        assert record.status == "SUCCEEDED", record.error
        assert runtime.wait_for_report(CLASSIFIER, "RUNNING", 30), \
            runtime.log_path(CLASSIFIER).read_text()[-3000:]
        yield world


def test_an_invalid_classifier_configuration_fails_the_deployment_with_its_reason(
        world: World) -> None:
    runtime = world.runtime
    record = world.deploy({}, {CLASSIFIER: {"MERGE": {"TopK": "0"}}})
    assert record.status == "FAILED"
    assert record.error == (
        "Components reported that their to-be-deployed configuration is invalid"
        f" {{ name = {CLASSIFIER}, message = TopK must be between 1 and 100, got 0 }}")
    assert record.error_types == ("COMPONENT_CONFIGURATION_NOT_VALID",)
    # a model directory that is not there fails the deployment too, before anything changes
    record = world.deploy({}, {CLASSIFIER: {"MERGE": {"ModelDir": "/nonexistent/model"}}})
    assert record.status == "FAILED"
    assert 'ModelDir "/nonexistent/model" is not a directory' in record.error
    assert runtime.server.get_configuration(CLASSIFIER)["TopK"] == "3"
    assert runtime.server.get_configuration(CLASSIFIER)["ModelDir"] == ""
    result = world.classify("after-rejections")
    assert result["status"] == "ok" and len(result["predictions"]) == 3
    # a valid change is validated and applied
    record = world.deploy({}, {CLASSIFIER: {"MERGE": {"TopK": "2"}}})
    assert record.status == "SUCCEEDED", record.error
    assert wait_until(lambda: len(world.classify(f"topk-{time.monotonic_ns()}")
                                  ["predictions"]) == 2)
    log = runtime.log_path(CLASSIFIER).read_text()
    assert "rejected the proposed configuration: TopK must be between 1 and 100" in log


def new_version(world: World, base: Path, version: str) -> tuple[Path, Path]:
    """The classifier's built recipe and artifacts as another version."""
    recipe = yaml.safe_load((world.build / "recipes" / f"{CLASSIFIER}.yaml").read_text())
    recipe["ComponentVersion"] = version
    recipes = base / "recipes"
    recipes.mkdir(parents=True)
    (recipes / f"{CLASSIFIER}-{version}.yaml").write_text(yaml.safe_dump(recipe))
    artifacts = base / "artifacts"
    shutil.copytree(world.build / "artifacts" / CLASSIFIER / "1.0.0",
                    artifacts / CLASSIFIER / version)
    return recipes, artifacts


def test_replacing_the_classifier_during_a_stream_of_requests_loses_none(
        world: World, tmp_path: Path) -> None:
    runtime = world.runtime
    image = sorted(world.images.iterdir())[0]
    script = tmp_path / "streamer.py"
    script.write_text(STREAM_SCRIPT, encoding="utf-8")
    write_recipe(tmp_path / "streamer", STREAMER, "1.0.0", f"exec '{sys.executable}' '{script}'",
                 setenv={"PROBE_EVENTS": "{work:path}/events.jsonl", "STREAM_IMAGE": str(image)},
                 defaults={"accessControl": {"aws.greengrass.ipc.pubsub": {"s:1": {
                     "operations": ["aws.greengrass#PublishToTopic",
                                    "aws.greengrass#SubscribeToTopic"],
                     "resources": ["local/inference", "local/result"]}}}})
    assert world.deploy({STREAMER: "1.0.0"}, recipe_dir=tmp_path / "streamer").status \
        == "SUCCEEDED"
    work = runtime.root / "work" / STREAMER

    def answered() -> int:
        try:
            return int(json.loads((work / "progress.json").read_text())["answered"])
        except (OSError, ValueError):
            return 0

    wait_until(lambda: answered() >= 20, timeout=60)
    old_pid = runtime.supervisor.runner(CLASSIFIER).run_process_id
    recipes, artifacts = new_version(world, tmp_path / "v2", "1.0.1")
    # a burst just before the deployment: the old classifier has accepted requests to answer
    # when the update is announced
    burst: list[dict] = []
    runtime.subscribe("local/result", lambda _t, m: burst.append(m) if str(
        m.get("request_id")).startswith("burst-") else None)
    for i in range(BURST):
        runtime.publish("local/inference", {"request_id": f"burst-{i}", "image_path": str(image)})
    record = world.deploy({CLASSIFIER: "1.0.1"}, recipe_dir=recipes, artifact_dir=artifacts)
    assert record.status == "SUCCEEDED", record.error
    assert runtime.wait_for_report(CLASSIFIER, "RUNNING", 60)
    assert runtime.supervisor.runner(CLASSIFIER).run_process_id != old_pid
    replaced_at = answered()
    wait_until(lambda: answered() >= replaced_at + 20, timeout=60)  # the new one answers
    (work / "stop").write_text("")
    summary = wait_until(lambda: (work / "summary.json").exists()
                         and json.loads((work / "summary.json").read_text()), timeout=60)

    answers: dict[str, list[str]] = {rid: got for rid, got in summary["answers"].items()
                                     if not rid.startswith("burst-")}  # the test's own
    lost = [rid for rid in summary["ids"] if "ok" not in answers.get(rid, [])]
    duplicated = {rid: got for rid, got in answers.items() if got.count("ok") > 1
                  or any(code not in ("ok", "UNAVAILABLE") for code in got)}
    assert len(summary["ids"]) >= 40
    assert lost == []
    assert duplicated == {}
    assert set(answers) == set(summary["ids"])  # no answer to a request never sent
    # the burst: each classified once, by the old classifier, which deferred the update
    wait_until(lambda: len(burst) >= BURST)
    assert sorted(m["request_id"] for m in burst) == sorted(f"burst-{i}" for i in range(BURST))
    assert {m["status"] for m in burst} == {"ok"}
    assert f"{CLASSIFIER} defers deployment {record.deployment_id}" in \
        runtime.log_path().read_text()
