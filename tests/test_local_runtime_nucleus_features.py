"""The nucleus's deployment-time conversations and lifecycle operations, through the real parts
(real processes, the runtime's IPC server, the real awsiotsdk clients): configuration validation
failing a deployment, component updates announced and deferred, Pause/ResumeComponent freezing
the process group, `ggic local iotcore pub/sub` against components, and a component written with
the older V1 client (`awsiot.greengrasscoreipc.connect()`) subscribing to IoT Core."""

from __future__ import annotations

import json
import queue
import sys
from pathlib import Path
from typing import Any

import awsiot.greengrasscoreipc
import pytest
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import InvalidArgumentsError

from ggic.local.deployment import DeploymentRequest, parse_update_config
from ggic.local.deployment_policies import DeploymentPolicies
from ggic.local.lifecycle import State
from ipc_clients import ipc_error
from local_components import PROBE_PRELUDE, fast_runtime, run_ggic, write_recipe
from waiting import wait_until

POLICY_PROBE = "com.example.PolicyProbe"
V1_LISTENER = "com.example.V1Listener"
TIMEOUT = 30.0

POLICY_SCRIPT = r'''
import json, os, signal, sys, threading
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import ConfigurationValidityReport
''' + PROBE_PRELUDE + r'''deferred = []

def on_validate(event):
    update = event.validate_configuration_update_event
    ok = update.configuration.get("TopK") != "0"
    note(event="validate", topk=update.configuration.get("TopK"))
    threading.Thread(target=client.send_configuration_validity_report, kwargs={
        "configuration_validity_report": ConfigurationValidityReport(
            status="ACCEPTED" if ok else "REJECTED", deployment_id=update.deployment_id,
            message=None if ok else "TopK must be at least 1")}).start()

def on_update(event):
    if event.pre_update_event is not None:
        deployment = event.pre_update_event.deployment_id
        recheck = 0 if deferred else 300
        deferred.append(deployment)
        note(event="pre-update", deployment=deployment, recheck=recheck)
        threading.Thread(target=client.defer_component_update, kwargs={
            "deployment_id": deployment, "recheck_after_ms": recheck,
            "message": "finishing accepted work"}).start()
    elif event.post_update_event is not None:
        note(event="post-update", deployment=event.post_update_event.deployment_id)

client.subscribe_to_validate_configuration_updates(on_stream_event=on_validate)
client.subscribe_to_component_updates(on_stream_event=on_update)
note(event="ready")
stop.wait(120)
note(event="stopping")
'''

V1_SCRIPT = r'''
import json, os, signal, threading
import awsiot.greengrasscoreipc
import awsiot.greengrasscoreipc.client as client
from awsiot.greengrasscoreipc.model import SubscribeToIoTCoreRequest, QOS

events = os.environ["PROBE_EVENTS"]
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())

class Handler(client.SubscribeToIoTCoreStreamHandler):
    def on_stream_event(self, event):
        with open(events, "a") as out:
            out.write(json.dumps({"topic": event.message.topic_name,
                                  "payload": event.message.payload.decode()}) + "\n")
    def on_stream_error(self, error):
        return True
    def on_stream_closed(self):
        pass

ipc_client = awsiot.greengrasscoreipc.connect()
request = SubscribeToIoTCoreRequest(topic_name="commands/#", qos=QOS.AT_LEAST_ONCE)
operation = ipc_client.new_subscribe_to_iot_core(Handler())
operation.activate(request).result(10)
with open(events, "a") as out:
    out.write(json.dumps({"subscribed": True}) + "\n")
stop.wait(120)
'''


def events_of(runtime: Any, name: str) -> list[dict[str, Any]]:
    path = runtime.root / "work" / name / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def write_script_component(recipes: Path, scripts: Path, name: str, script: str,
                           version: str = "1.0.0", *, lowercase: bool = False,
                           defaults: dict[str, Any] | None = None) -> None:
    scripts.mkdir(parents=True, exist_ok=True)
    path = scripts / f"{name}.py"
    path.write_text(script, encoding="utf-8")
    write_recipe(recipes, name, version, f"exec '{sys.executable}' '{path}'",
                 defaults=defaults, setenv={"PROBE_EVENTS": "{work:path}/events.jsonl"})
    if lowercase:  # the style of many public recipes: lowercase lifecycle keys
        recipe = recipes / f"{name}-{version}.yaml"
        text = recipe.read_text(encoding="utf-8")
        recipe.write_text(text.replace("Run:", "run:").replace("Setenv:", "setenv:"),
                          encoding="utf-8")


def request(recipes: Path, merge: dict[str, str], update: dict | None = None
            ) -> DeploymentRequest:
    return DeploymentRequest(recipe_dir=recipes, merge=merge,
                             update_config=parse_update_config(update) if update else {})


def test_a_rejected_configuration_fails_the_deployment_and_changes_nothing(
        tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    write_script_component(recipes, tmp_path / "scripts", POLICY_PROBE, POLICY_SCRIPT,
                           defaults={"TopK": "5"})
    policies = DeploymentPolicies(component_update_timeout=5.0)
    with fast_runtime(tmp_path / "root", policies=policies) as runtime:
        assert runtime.deploy(request(recipes, {POLICY_PROBE: "1.0.0"}), TIMEOUT).status \
            == "SUCCEEDED"
        wait_until(lambda: [e for e in events_of(runtime, POLICY_PROBE) if e["event"] == "ready"])
        record = runtime.deploy(request(recipes, {}, {POLICY_PROBE: {"MERGE": {"TopK": "0"}}}),
                                TIMEOUT)
        assert record.status == "FAILED"
        assert record.error == (
            "Components reported that their to-be-deployed configuration is invalid"
            f" {{ name = {POLICY_PROBE}, message = TopK must be at least 1 }}")
        assert record.error_types == ("COMPONENT_CONFIGURATION_NOT_VALID",)
        assert runtime.server.get_configuration(POLICY_PROBE)["TopK"] == "5"
        # a valid change is asked about too, and goes through
        record = runtime.deploy(request(recipes, {}, {POLICY_PROBE: {"MERGE": {"TopK": "3"}}}),
                                TIMEOUT)
        assert record.status == "SUCCEEDED", record.error
        assert runtime.server.get_configuration(POLICY_PROBE)["TopK"] == "3"
        asked = [e["topk"] for e in events_of(runtime, POLICY_PROBE) if e["event"] == "validate"]
        assert asked == ["0", "3"]


def test_an_update_is_announced_deferred_and_then_applied(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    scripts = tmp_path / "scripts"
    write_script_component(recipes, scripts, POLICY_PROBE, POLICY_SCRIPT)
    write_script_component(recipes, scripts, POLICY_PROBE, POLICY_SCRIPT, "1.1.0")
    policies = DeploymentPolicies(component_update_timeout=10.0)
    with fast_runtime(tmp_path / "root", policies=policies) as runtime:
        assert runtime.deploy(request(recipes, {POLICY_PROBE: "1.0.0"}), TIMEOUT).status \
            == "SUCCEEDED"
        ready = wait_until(lambda: [e for e in events_of(runtime, POLICY_PROBE)
                                    if e["event"] == "ready"])
        old_pid = ready[0]["pid"]
        record = runtime.deploy(request(recipes, {POLICY_PROBE: "1.1.0"}), TIMEOUT)
        assert record.status == "SUCCEEDED", record.error
        events = events_of(runtime, POLICY_PROBE)
        old = [e for e in events if e["pid"] == old_pid]
        pre = [e for e in old if e["event"] == "pre-update"]
        # deferred once by 300 ms, asked again, then let through; stopped only after that
        assert [(e["deployment"], e["recheck"]) for e in pre] == \
            [(record.deployment_id, 300), (record.deployment_id, 0)]
        assert [e["event"] for e in old][-1] == "stopping"
        wait_until(lambda: [e for e in events_of(runtime, POLICY_PROBE)
                            if e["event"] == "ready" and e["pid"] != old_pid])


def test_pause_and_resume_freeze_and_thaw_the_component_process(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    write_recipe(recipes, "com.example.Sleeper", "1.0.0", "exec sleep 120")
    with fast_runtime(tmp_path / "root") as runtime:
        assert runtime.deploy(request(recipes, {"com.example.Sleeper": "1.0.0"}), TIMEOUT) \
            .status == "SUCCEEDED"
        pid = runtime.supervisor.runner("com.example.Sleeper").run_process_id
        assert pid is not None
        token = runtime.server.register_component("com.example.Operator", access_control={
            "aws.greengrass.ipc.lifecycle": {"op:1": {
                "operations": ["aws.greengrass#PauseComponent",
                               "aws.greengrass#ResumeComponent"],
                "resources": ["com.example.Sleeper"]}}})
        client = GreengrassCoreIPCClientV2(client=awsiot.greengrasscoreipc.connect(
            ipc_socket=str(runtime.socket_path), authtoken=token))
        try:
            with ipc_error(InvalidArgumentsError, "Component com.example.Sleeper is not paused"):
                client.resume_component(component_name="com.example.Sleeper")
            client.pause_component(component_name="com.example.Sleeper")
            wait_until(lambda: process_state(pid) == "T")
            assert runtime.state("com.example.Sleeper") == State.RUNNING  # as the nucleus says
            client.resume_component(component_name="com.example.Sleeper")
            wait_until(lambda: process_state(pid) == "S")
            # a paused component still stops (it is thawed first)
            client.pause_component(component_name="com.example.Sleeper")
            wait_until(lambda: process_state(pid) == "T")
            assert runtime.stop_component("com.example.Sleeper", 15) == State.FINISHED
            with ipc_error(InvalidArgumentsError, "Component com.example.Sleeper is not running"):
                client.pause_component(component_name="com.example.Sleeper")
        finally:
            client.close()


def process_state(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return "gone"
    return next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_cli_iotcore_pub_reaches_a_v1_client_component_with_lowercase_lifecycle(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipes = tmp_path / "recipes"
    write_script_component(recipes, tmp_path / "scripts", V1_LISTENER, V1_SCRIPT,
                           lowercase=True, defaults={"accessControl": {
                               "aws.greengrass.ipc.mqttproxy": {"l:1": {
                                   "operations": ["aws.greengrass#SubscribeToIoTCore"],
                                   "resources": ["commands/#"]}}}})
    root = tmp_path / "root"
    with fast_runtime(root) as runtime:
        assert runtime.deploy(request(recipes, {V1_LISTENER: "1.0.0"}), TIMEOUT).status \
            == "SUCCEEDED"
        wait_until(lambda: events_of(runtime, V1_LISTENER))
        assert run_ggic(["local", "iotcore", "pub", "--root", str(root), "-t", "commands/lamp",
                         "-m", "on"]) == 0
        got = wait_until(lambda: [e for e in events_of(runtime, V1_LISTENER) if "topic" in e])
        assert got == [{"topic": "commands/lamp", "payload": "on"}]


def test_cli_iotcore_sub_shows_what_components_publish(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    root = tmp_path / "root"
    with fast_runtime(root) as runtime:
        token = runtime.server.register_component("com.example.Talker", access_control={
            "aws.greengrass.ipc.mqttproxy": {"t:1": {
                "operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["*"]}}})
        result: queue.Queue[int] = queue.Queue()
        sub = threading.Thread(target=lambda: result.put(run_ggic(
            ["local", "iotcore", "sub", "--root", str(root), "-t", "results/+",
             "--count", "1", "--timeout", "20"])))
        sub.start()
        wait_until(lambda: runtime.server.nucleus.iot_core.subscription_count() == 1)
        connection = awsiot.greengrasscoreipc.connect(ipc_socket=str(runtime.socket_path),
                                                      authtoken=token)
        client = GreengrassCoreIPCClientV2(client=connection)
        try:
            client.publish_to_iot_core(topic_name="results/cam1", qos="0", payload=b"cat 0.9")
        finally:
            client.close()
        sub.join(30)
        assert result.get(timeout=1) == 0
    assert "Received new message on topic results/cam1: cat 0.9" in capsys.readouterr().out


def test_a_component_with_a_cli_policy_may_call_the_cli_operations(tmp_path: Path) -> None:
    from awsiot.greengrasscoreipc.model import UnauthorizedError

    recipes = tmp_path / "recipes"
    write_recipe(recipes, "com.example.Sleeper", "1.0.0", "exec sleep 120")
    with fast_runtime(tmp_path / "root") as runtime:
        assert runtime.deploy(request(recipes, {"com.example.Sleeper": "1.0.0"}), TIMEOUT) \
            .status == "SUCCEEDED"
        token = runtime.server.register_component("com.example.Manager", access_control={
            "aws.greengrass.Cli": {"m:1": {
                "operations": ["aws.greengrass#ListComponents",
                               "aws.greengrass#RestartComponent"],
                "resources": ["*"]}}})
        client = GreengrassCoreIPCClientV2(client=awsiot.greengrasscoreipc.connect(
            ipc_socket=str(runtime.socket_path), authtoken=token))
        try:
            names = [c.component_name for c in client.list_components().components]
            assert "com.example.Sleeper" in names
            pid = runtime.supervisor.runner("com.example.Sleeper").run_process_id
            assert client.restart_component(component_name="com.example.Sleeper") \
                .restart_status == "SUCCEEDED"
            wait_until(lambda: runtime.supervisor.runner("com.example.Sleeper").run_process_id
                       not in (None, pid))
            with ipc_error(UnauthorizedError, "Principal com.example.Manager is not authorized "
                           "to perform aws.greengrass.Cli:aws.greengrass#StopComponent on "
                           "resource com.example.Sleeper"):
                client.stop_component(component_name="com.example.Sleeper")
        finally:
            client.close()


def test_without_notification_an_update_goes_ahead_unannounced(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    scripts = tmp_path / "scripts"
    write_script_component(recipes, scripts, POLICY_PROBE, POLICY_SCRIPT)
    write_script_component(recipes, scripts, POLICY_PROBE, POLICY_SCRIPT, "1.1.0")
    # what the nucleus does for greengrass-cli deployments (SKIP_NOTIFY_COMPONENTS)
    policies = DeploymentPolicies(notify_components=False)
    with fast_runtime(tmp_path / "root", policies=policies) as runtime:
        assert runtime.deploy(request(recipes, {POLICY_PROBE: "1.0.0"}), TIMEOUT).status \
            == "SUCCEEDED"
        wait_until(lambda: [e for e in events_of(runtime, POLICY_PROBE) if e["event"] == "ready"])
        assert runtime.deploy(request(recipes, {POLICY_PROBE: "1.1.0"}), TIMEOUT).status \
            == "SUCCEEDED"
        wait_until(lambda: len([e for e in events_of(runtime, POLICY_PROBE)
                                if e["event"] == "ready"]) == 2)
        assert not [e for e in events_of(runtime, POLICY_PROBE) if e["event"] == "pre-update"]


def test_accepted_component_metrics_are_written_to_the_metrics_log(tmp_path: Path) -> None:
    from awsiot.greengrasscoreipc.model import Metric

    with fast_runtime(tmp_path / "root") as runtime:
        token = runtime.server.register_component("aws.greengrass.StreamManager")
        client = GreengrassCoreIPCClientV2(client=awsiot.greengrasscoreipc.connect(
            ipc_socket=str(runtime.socket_path), authtoken=token))
        try:
            client.put_component_metric(metrics=[Metric(name="BytesAppended", unit="BYTES",
                                                        value=42.0)])
        finally:
            client.close()
        path = runtime.root / "logs" / "metrics.jsonl"
        wait_until(path.exists)
        (line,) = wait_until(lambda: path.read_text().splitlines())
        record = json.loads(line)
        assert (record["namespace"], record["name"], record["unit"], record["value"]) == \
            ("aws.greengrass.StreamManager", "BytesAppended", "BYTES", 42.0)
