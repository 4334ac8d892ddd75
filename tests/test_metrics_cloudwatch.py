"""Metrics for CloudWatch: the classifier's and the stream requester's figures reach the
``aws.greengrass.Cloudwatch`` stand-in in the component's documented input format, with counts
equal to what was answered. Real processes, the real awsiotsdk client, ggic.local's IPC server,
a real DLR model; plus unit tests of the figures and of the format check."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from ggic.classifier.metrics import ClassifierMetrics
from ggic.cloudwatch_metrics import (
    Metric,
    MetricsPublisher,
    MetricsSettings,
    Unit,
    metric_message,
    percentile,
)
from ggic.local.cloudwatch_stand_in import (
    CLOUDWATCH_COMPONENT,
    read_records,
    validate_metric_message,
    write_cloudwatch_stand_in,
)
from ggic.local.ipc_server import IpcServer
from ggic.messages import ClassificationResult, ErrorCode, Prediction
from ggic.modelgen.testnets import write_neo_like
from test_components_ipc import CLASSIFIER, REQUESTER, Results, component_env, register_from_recipe
from test_stream_ipc import photo_frames, summary_counts, write_video

THING = "test-thing-7"

# --- the format and the figures (unit) ---------------------------------------------------------


def test_the_documented_example_is_valid_and_broken_messages_are_named():
    example = {"request": {"namespace": "Greengrass", "metricData": {
        "metricName": "latency", "dimensions": [{"name": "hostname", "value": "test_hostname"}],
        "timestamp": 1539027324, "value": 123.0, "unit": "Seconds"}}}
    assert validate_metric_message(example) == []
    data = example["request"]["metricData"]
    broken = {
        "value": {**data, "value": "12"}, "unit": {**data, "unit": "ms"},
        "timestamp": {**data, "timestamp": 1539027324000},
        "dimensions": {**data, "dimensions": [{"name": "a", "value": ""}]},
        "metricName": {**data, "metricName": ""}, "extra": {**data, "metricname": "x"}}
    for field, bad in broken.items():
        problems = validate_metric_message({"request": {"namespace": "G", "metricData": bad}})
        assert problems, field
    assert validate_metric_message({"request": {"namespace": "AWS/EC2", "metricData": data}})
    assert validate_metric_message({"request": {"namespace": "G", "metricData": [data]}})


def test_classifier_figures_become_per_interval_metrics_in_the_documented_format(monkeypatch):
    monkeypatch.setenv("AWS_IOT_THING_NAME", THING)
    depth = [3]
    metrics = ClassifierMetrics(lambda: depth[0])
    metrics.record_model_load(time.perf_counter() - 0.120, {"name": "efficientnet"})
    for i in range(10):
        metrics.record_result(ClassificationResult.success(
            f"r{i}", [Prediction("cat", 1, 0.9)], {"name": "efficientnet"},
            {"load": 1.0, "preprocess": 2.0, "inference": float(i + 1), "total": 10.0 + i}))
    metrics.record_result(ClassificationResult.failure("b", ErrorCode.BUSY, "full"))
    metrics.record_result(ClassificationResult.failure("c", ErrorCode.BUSY, "full"))
    metrics.record_result(ClassificationResult.failure("d", ErrorCode.IMAGE_NOT_FOUND, "gone"))
    taken = metrics.take()
    by_key = {(m.name, dict(m.dimensions).get("Status"), dict(m.dimensions).get("ErrorCode"),
               dict(m.dimensions).get("Stage"), dict(m.dimensions).get("Percentile")): m
              for m in taken}
    assert by_key[("Requests", "ok", None, None, None)].value == 10
    assert by_key[("Requests", "error", None, None, None)].value == 3
    assert by_key[("Errors", None, "BUSY", None, None)].value == 2
    assert by_key[("Errors", None, "IMAGE_NOT_FOUND", None, None)].value == 1
    assert by_key[("Latency", None, None, "inference", "p50")].value == 5.0
    assert by_key[("Latency", None, None, "inference", "p90")].value == 9.0
    assert by_key[("Latency", None, None, "total", "p99")].value == 19.0
    assert 120.0 <= by_key[("ModelLoadTime", None, None, None, None)].value < 10_000
    assert by_key[("QueueDepth", None, None, None, None)].value == 3
    for metric in taken:
        assert dict(metric.dimensions)["ThingName"] == THING
        assert dict(metric.dimensions)["Model"] == "efficientnet"
        assert validate_metric_message(metric_message("ggic", metric, time.time())) == []
    again = {(m.name, dict(m.dimensions).get("Status")): m.value for m in metrics.take()}
    assert again[("Requests", "ok")] == 0 and ("ModelLoadTime", None) not in again
    assert metrics.totals["ok"] == 10 and metrics.totals["BUSY"] == 2


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, p) for p in (50, 90, 99)] == [50.0, 90.0, 99.0]
    assert percentile([7.0], 99) == 7.0


def test_the_publisher_sends_one_message_per_metric_and_flushes_on_stop():
    sent: list[tuple[str, dict]] = []
    rounds = iter(range(1000))

    def collect():
        n = next(rounds)
        return [Metric("A", n, Unit.COUNT), Metric("B", 1.5, Unit.MILLISECONDS)]

    publisher = MetricsPublisher(lambda t, m: sent.append((t, m)), collect,
                                 lambda: MetricsSettings(3600, "cloudwatch/metric/put", "ns"))
    publisher.start()
    publisher.stop()  # well before the first interval: the last figures are still sent
    assert [(t, m["request"]["metricData"]["metricName"]) for t, m in sent] == [
        ("cloudwatch/metric/put", "A"), ("cloudwatch/metric/put", "B")]
    assert all(validate_metric_message(m) == [] for _, m in sent)
    off = MetricsPublisher(lambda t, m: sent.append((t, m)), collect,
                           lambda: MetricsSettings(0, "cloudwatch/metric/put", "ns"))
    off.start()
    off.stop()
    assert len(sent) == 2  # MetricsInterval 0: nothing is published


# --- through the real parts --------------------------------------------------------------------


def recorded(path: Path) -> list[dict]:
    return read_records(path)


def sums(records: list[dict], name: str, dimension: str) -> Counter:
    out: Counter = Counter()
    for record in records:
        data = record["message"]["request"]["metricData"]
        if data["metricName"] == name:
            dims = {d["name"]: d["value"] for d in data.get("dimensions", [])}
            out[dims.get(dimension, "")] += data["value"]
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("metrics")
    net = write_neo_like(root / "vgg16", seed=9)
    server = IpcServer(root / "ipc.socket")
    register_from_recipe(server, CLASSIFIER, ModelDir=str(net.model_dir),
                         ModelProfile="neo-vgg16", LabelsPath=str(net.labels_path),
                         AllowedImageDirs=[str(root / "images")], ScoreThreshold="0",
                         MetricsInterval="0.5", MetricsNamespace="ggic-test")
    stand_in = yaml.safe_load(write_cloudwatch_stand_in(root / "stand-in").read_text())
    defaults = stand_in["ComponentConfiguration"]["DefaultConfiguration"]
    server.register_component(CLOUDWATCH_COMPONENT, configuration=defaults,
                              access_control=defaults["accessControl"])
    server.start()
    record = root / "cloudwatch.jsonl"
    processes = []
    logs = []

    def start(name: str, args: list[str]) -> None:
        env = component_env(server, name)
        env["AWS_IOT_THING_NAME"] = THING
        logs.append(open(root / f"{name}.log", "w"))  # noqa: SIM115 - closed at teardown
        processes.append(subprocess.Popen([sys.executable, *args], env=env, stdout=logs[-1],
                                          stderr=subprocess.STDOUT))

    try:
        start(CLOUDWATCH_COMPONENT, ["-m", "ggic.local.cloudwatch_stand_in", "--record",
                                     str(record)])
        start(CLASSIFIER, ["-m", "ggic", "classifier"])
        assert server.wait_for_state(CLASSIFIER, "RUNNING", 60), (
            root / f"{CLASSIFIER}.log").read_text()
        deadline = time.monotonic() + 30
        while server.subscription_count() < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # the stand-in has subscribed
        yield {"server": server, "root": root, "record": record, "photos": photos}
    finally:
        for process in processes:
            process.kill()
            process.wait(10)
        for log in logs:
            log.close()
        server.stop()


def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_classifier_metrics_reach_the_stand_in_with_the_counts_answered(world):
    server, root = world["server"], world["root"]
    images = root / "images"
    images.mkdir()
    photo = images / world["photos"][0].name
    photo.write_bytes(world["photos"][0].read_bytes())
    results = Results(server)
    try:
        requests = [{"request_id": f"ok-{i}", "image_path": str(photo)} for i in range(4)]
        requests += [{"request_id": f"gone-{i}", "image_path": str(images / "nope.jpg")}
                     for i in range(2)]
        requests += [{"request_id": "bad", "image_path": "relative.jpg"},
                     {"request_id": "outside", "image_path": "/etc/hostname"}]
        for request in requests:
            server.publish("local/inference", request)
        answered = results.take(len(requests))
        config = server.get_configuration(CLASSIFIER)
        server.set_configuration(CLASSIFIER, {**config, "QueueSize": "1"})
        time.sleep(1.0)  # the classifier re-reads its configuration
        burst = 60
        for i in range(burst):
            server.publish("local/inference", {"request_id": f"burst-{i}",
                                               "image_path": str(photo)})
        answered += results.take(burst, timeout=60)
        server.set_configuration(CLASSIFIER, config)
    finally:
        results.unsubscribe()
    statuses = Counter(r["status"] for r in answered)
    codes = Counter(r["error"]["code"] for r in answered if r["status"] == "error")
    assert codes["BUSY"] > 0 and codes["IMAGE_NOT_FOUND"] == 2
    assert codes["INVALID_REQUEST"] == 1 and codes["PATH_NOT_ALLOWED"] == 1

    def counts_match() -> bool:
        records = recorded(world["record"])
        requests_by_status = sums(records, "Requests", "Status")
        return (requests_by_status == Counter(statuses)
                and sums(records, "Errors", "ErrorCode") == codes)

    assert wait_until(counts_match), (sums(recorded(world["record"]), "Requests", "Status"),
                                      statuses)
    records = [r for r in recorded(world["record"])
               if r["message"]["request"]["namespace"] == "ggic-test"]
    assert records and all(r["valid"] for r in records), [r for r in records if not r["valid"]]
    names = {r["message"]["request"]["metricData"]["metricName"] for r in records}
    assert {"Requests", "Errors", "Latency", "QueueDepth", "QueueDepthMax", "ModelLoads",
            "ModelLoadTime"} <= names
    dims = {d["name"]: d["value"] for d in
            records[0]["message"]["request"]["metricData"]["dimensions"]}
    assert dims["ThingName"] == THING and dims["Component"] == CLASSIFIER and dims["Model"]
    latency = [r["message"]["request"]["metricData"] for r in records
               if r["message"]["request"]["metricData"]["metricName"] == "Latency"]
    assert all(m["unit"] == "Milliseconds" and m["value"] > 0 for m in latency)
    assert sum(sums(records, "ModelLoads", "").values()) == 1


def test_the_stream_requesters_metrics_reach_the_stand_in(world):
    server, root = world["server"], world["root"]
    video = write_video(root / "metrics.avi", photo_frames(world["photos"][:2], 30), fps=300)
    register_from_recipe(server, REQUESTER, Source=str(video), FrameDirectory=str(
        root / "images" / "frames"), StreamName="metered", MetricsInterval="0.5",
        MetricsNamespace="ggic-test", ResultTimeout="20")
    env = component_env(server, REQUESTER)
    env["AWS_IOT_THING_NAME"] = THING
    done = subprocess.run([sys.executable, "-m", "ggic", "requester"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    counts = summary_counts(done.stdout + done.stderr)

    def stream_sums(name: str) -> float:
        return sum(sums([r for r in recorded(world["record"]) if {
            "name": "Stream", "value": "metered"} in r["message"]["request"]["metricData"].get(
                "dimensions", [])], name, "").values())

    assert wait_until(lambda: stream_sums("FramesCaptured") == counts["captured"] == 60)
    assert stream_sums("FramesSent") == counts["sent"]
    assert stream_sums("FramesDropped") == counts["dropped"]
    assert stream_sums("Results") == counts["results"]


def test_the_stand_in_deploys_under_ggic_local_and_records_and_refuses(tmp_path, capsys):
    """The stand-in as `ggic local` runs it: deployed from its written recipe (Run script,
    {kernel:rootPath} and {configuration:/…} interpolation, its accessControl), it records a
    valid message and answers an invalid one on the status topic; `ggic local metrics`
    prints them."""
    from ggic.local.deployment import DeploymentRequest
    from local_components import fast_runtime, run_ggic

    write_cloudwatch_stand_in(tmp_path / "stand-in")
    with fast_runtime(tmp_path / "root") as runtime:
        record = runtime.deploy(DeploymentRequest(
            recipe_dir=tmp_path / "stand-in" / "recipes",
            merge={CLOUDWATCH_COMPONENT: "3.0.0"}), 30)
        assert record.status == "SUCCEEDED", record.error
        statuses: list = []
        runtime.subscribe("cloudwatch/metric/put/status", lambda _t, m: statuses.append(m))
        assert wait_until(lambda: runtime.server.subscription_count() >= 2)
        good = metric_message("ggic", Metric("Requests", 3, Unit.COUNT, (("Status", "ok"),)),
                              time.time())
        bad = {"request": {"namespace": "ggic", "metricData": {"metricName": "X",
                                                               "value": "three"}}}
        runtime.publish("cloudwatch/metric/put", good)
        runtime.publish("cloudwatch/metric/put", bad)
        path = runtime.root / "logs" / "cloudwatch.jsonl"
        assert wait_until(lambda: len(read_records(path)) == 2), runtime.log_path(
            CLOUDWATCH_COMPONENT).read_text()
        assert [r["valid"] for r in read_records(path)] == [True, False]
        assert wait_until(lambda: statuses)
        assert statuses[0]["response"]["status"] == "fail"
        assert "value must be a number" in statuses[0]["response"]["error_message"]
    assert run_ggic(["local", "metrics", "--root", str(tmp_path / "root")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("ggic Requests 3 Count [Status=ok]") and out[1].startswith("INVALID")
