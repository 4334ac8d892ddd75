"""greengrass-cli habits of `ggic local`, through the real runtime and the real awsiotsdk client:
`deployment cancel` (CancelLocalDeployment), `get-debug-password` (CreateDebugPassword), both
also from a component with an aws.greengrass.Cli policy, `logs get` with greengrass-cli's flags
(the older `logs NAME -n N` still works), `deployment create -g --runWith --systemLimits -fp`."""

from __future__ import annotations

import getpass
import json
import re
import sys
from pathlib import Path
from typing import Any

import awsiot.greengrasscoreipc
import pytest
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import UnauthorizedError

from ggic.local.deployment import DeploymentRequest
from ggic.local.deployment_policies import DeploymentPolicies
from ggic.local.lifecycle import State
from ipc_clients import ipc_error
from local_components import fast_runtime, run_ggic, write_recipe
from waiting import wait_until

DEFERRER = "com.example.Deferrer"
SLEEPER = "com.example.Sleeper"
TIMEOUT = 30.0

DEFER_SCRIPT = r'''
import json, os, signal, threading
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

events = os.environ["PROBE_EVENTS"]
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
client = GreengrassCoreIPCClientV2()

def on_update(event):
    if event.pre_update_event is not None:
        deployment = event.pre_update_event.deployment_id
        threading.Thread(target=client.defer_component_update, kwargs={
            "deployment_id": deployment, "recheck_after_ms": 60000}).start()
        kind = "pre-update"
    else:
        deployment, kind = event.post_update_event.deployment_id, "post-update"
    with open(events, "a") as out:
        out.write(json.dumps({"event": kind, "deployment": deployment}) + "\n")

client.subscribe_to_component_updates(on_stream_event=on_update)
with open(events, "a") as out:
    out.write(json.dumps({"event": "ready", "pid": os.getpid()}) + "\n")
stop.wait(120)
'''


def events_of(runtime: Any) -> list[dict[str, Any]]:
    path = runtime.root / "work" / DEFERRER / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def write_deferrer(recipes: Path, scripts: Path, version: str) -> None:
    scripts.mkdir(parents=True, exist_ok=True)
    script = scripts / "deferrer.py"
    script.write_text(DEFER_SCRIPT, encoding="utf-8")
    write_recipe(recipes, DEFERRER, version, f"exec '{sys.executable}' '{script}'",
                 setenv={"PROBE_EVENTS": "{work:path}/events.jsonl"})


def test_deployment_cancel_abandons_a_deferred_update(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    write_deferrer(recipes, tmp_path / "scripts", "1.0.0")
    write_deferrer(recipes, tmp_path / "scripts", "2.0.0")
    policies = DeploymentPolicies(component_update_timeout=10.0)
    with fast_runtime(root, policies=policies) as runtime:
        first = runtime.deploy(DeploymentRequest(recipe_dir=recipes, merge={DEFERRER: "1.0.0"}),
                               TIMEOUT)
        assert first.status == "SUCCEEDED", first.error
        ready = wait_until(lambda: [e for e in events_of(runtime) if e["event"] == "ready"])
        second = runtime.submit_deployment(DeploymentRequest(recipe_dir=recipes,
                                                             merge={DEFERRER: "2.0.0"}))
        wait_until(lambda: [e for e in events_of(runtime) if e["event"] == "pre-update"])
        capsys.readouterr()
        assert run_ggic(["local", "deployment", "cancel", "--root", str(root),
                         "-i", second.deployment_id]) == 0
        assert capsys.readouterr().out.strip() == \
            f"Cancel request submitted. Deployment ID: {second.deployment_id}"
        record = runtime.wait_for_deployment(second.deployment_id, TIMEOUT)
        assert record.status == "CANCELED"
        # nothing was replaced; the subscriber heard the update is off
        assert runtime.state(DEFERRER) == State.RUNNING
        wait_until(lambda: [e for e in events_of(runtime) if e["event"] == "post-update"
                            and e["deployment"] == second.deployment_id])
        assert [e["pid"] for e in events_of(runtime) if e["event"] == "ready"] == \
            [ready[0]["pid"]]
        # a finished deployment is left alone; a malformed id is refused
        assert run_ggic(["local", "deployment", "cancel", "--root", str(root),
                         "-i", first.deployment_id]) == 0
        assert "already finished" in capsys.readouterr().out
        assert run_ggic(["local", "deployment", "cancel", "--root", str(root),
                         "-i", "not-a-uuid"]) == 1
        assert "DeploymentId is a UUID" in capsys.readouterr().err


def test_debug_password_from_the_cli_and_from_a_component_with_a_cli_policy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    with fast_runtime(root) as runtime:
        assert run_ggic(["local", "get-debug-password", "--root", str(root)]) == 0
        out = capsys.readouterr().out
        assert "Username: debug" in out
        assert re.search(r"Password: [A-Za-z0-9_-]{43}\n", out)
        assert "Password expires at: " in out and "no local debug console" in out
        tokens = {name: runtime.server.register_component(name, access_control=policy)
                  for name, policy in (
                      ("com.example.Admin", {"aws.greengrass.Cli": {"a:1": {
                          "operations": ["aws.greengrass#CreateDebugPassword"],
                          "resources": ["*"]}}}),
                      ("com.example.Nobody", None))}
        clients = {name: GreengrassCoreIPCClientV2(client=awsiot.greengrasscoreipc.connect(
            ipc_socket=str(runtime.socket_path), authtoken=token))
            for name, token in tokens.items()}
        try:
            answer = clients["com.example.Admin"].create_debug_password()
            assert answer.username == "debug" and len(answer.password) == 43
            with ipc_error(UnauthorizedError, "aws.greengrass.Cli:aws.greengrass#"
                                              "CreateDebugPassword on resource *"):
                clients["com.example.Nobody"].create_debug_password()
        finally:
            for client in clients.values():
                client.close()


def test_logs_get_filters_like_greengrass_cli_and_logs_name_still_works(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    logs = root / "logs"
    logs.mkdir(parents=True)
    lines = [
        "2024-01-19T21:46:03.514Z [INFO] (main) com.example.A: started. {serviceName=A}",
        "2024-01-19T21:46:04.514Z [WARN] (main) com.example.A: slow. {serviceName=A}",
        "2024-01-19T21:46:05.514Z [ERROR] (main) com.example.B: failed. {serviceName=B}",
    ]
    (logs / "a.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run_ggic(["local", "logs", "get", "--root", str(root), "-lf", str(logs / "a.log"),
                     "-f", "level=WARN"]) == 0
    assert capsys.readouterr().out.splitlines() == lines[1:]
    # comma: either; two -f: both
    assert run_ggic(["local", "logs", "get", "--root", str(root), "-ld", str(logs),
                     "-f", "started,failed", "-f", "serviceName=B"]) == 0
    assert capsys.readouterr().out.splitlines() == lines[2:]
    assert run_ggic(["local", "logs", "a", "--root", str(root), "-n", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == lines[2:]


def test_deployment_create_takes_greengrass_cli_options(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    write_recipe(recipes, SLEEPER, "1.0.0", "exec sleep 120")
    limits = tmp_path / "limits.json"
    limits.write_text(json.dumps({SLEEPER: {"cpus": 0.5, "memory": 102400}}))
    with fast_runtime(root):
        assert run_ggic(["local", "deployment", "create", "--root", str(root), "-r",
                         str(recipes), "-m", f"{SLEEPER}=1.0.0", "-g", "thinggroup/edge",
                         "--runWith", f"{SLEEPER}:posixUser={getpass.getuser()}",  # reachable root
                         "--systemLimits", str(limits), "-fp", "DO_NOTHING", "--wait",
                         "--timeout", "60"]) == 0
        log = (root / "logs" / "greengrass.log").read_text()
        assert "groupName thinggroup/edge" in log
        assert "componentToRunWithInfo" in log
        capsys.readouterr()
        assert run_ggic(["local", "deployment", "create", "--root", str(root),
                         "--runWith", "nonsense"]) == 1
        assert "expected NAME:posixUser=USER[:GROUP]" in capsys.readouterr().err
