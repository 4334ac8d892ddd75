"""The local runtime's glue, through the real parts: real processes, the real IPC server, the
real awsiotsdk client inside the probe component, deployments, configuration both ways,
UpdateState(ERRORED), crashes, IoT Core recording, removal, resume and shutdown order."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from ggic.local.deployment import DeploymentRequest, parse_update_config
from ggic.local.lifecycle import State
from local_components import (
    CRASHER,
    PROBE,
    TICKER,
    fast_runtime,
    probe_access_control,
    probe_events,
    run_ggic,
    write_crasher,
    write_probe,
    write_recipe,
    write_ticker,
)
from waiting import wait_until

BASE = "com.example.Base"


def request(recipes: Path, merge: dict[str, str], update: dict | None = None,
            remove: tuple[str, ...] = ()) -> DeploymentRequest:
    return DeploymentRequest(recipe_dir=recipes, merge=merge, remove=remove,
                             update_config=parse_update_config(update) if update else {})


def test_configuration_flows_both_ways_between_deployments_and_components(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    write_probe(recipes, tmp_path / "scripts",
                defaults={"SetCounter": "7", "Counter": "0", "TopK": "5"})
    with fast_runtime(tmp_path / "root") as runtime:
        record = runtime.deploy(request(recipes, {PROBE: "1.0.0"}), 30)
        assert record.status == "SUCCEEDED", record.error
        assert runtime.wait_for_report(PROBE, "RUNNING", 15)
        first = wait_until(lambda: [e for e in probe_events(runtime) if e["event"] == "ready"])
        pid = first[0]["pid"]

        # the component's UpdateConfiguration is persisted (and survives a deployment)
        assert runtime.deployer.configuration.get(PROBE, ["Counter"]) == (True, "7")
        stored = json.loads((runtime.root / "config" / "configuration.json").read_text())
        assert "7" in json.dumps(stored[PROBE])

        # a deployment's --update-config reaches the running component as an event
        record = runtime.deploy(request(recipes, {}, {PROBE: {"MERGE": {"TopK": "3"}}}), 30)
        assert record.status == "SUCCEEDED", record.error
        events = wait_until(lambda: [e for e in probe_events(runtime)
                                     if e["event"] == "config" and e["key_path"] == ["TopK"]])
        assert events[0]["pid"] == pid  # not restarted: a configuration change only
        assert runtime.server.get_configuration(PROBE)["TopK"] == "3"
        assert runtime.server.get_configuration(PROBE)["Counter"] == "7"
        assert runtime.component(PROBE).configuration["Counter"] == "7"
        assert runtime.state(PROBE) == State.RUNNING


def test_a_component_reporting_errored_is_restarted_and_broken_on_the_third(
        tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    write_probe(recipes, tmp_path / "scripts", defaults={"ReportErrored": "true"})
    with fast_runtime(tmp_path / "root") as runtime:
        # RUNNING as soon as its process starts (as in the nucleus): the deployment may
        # succeed before the component reports ERRORED
        runtime.deploy(request(recipes, {PROBE: "1.0.0"}), 30)
        assert runtime.wait_for_state(PROBE, State.BROKEN, 20)
        starts = {e["pid"] for e in probe_events(runtime) if e["event"] == "start"}
        assert len(starts) == 3
        log = wait_until(lambda: "service-broken" in runtime.log_path(PROBE).read_text()
                         and runtime.log_path(PROBE).read_text())
        assert log.count("the component reported ERRORED (UpdateState)") == 3
        assert not runtime.wait_for_report(PROBE, "RUNNING", 0.1)


def test_a_crashing_component_is_restarted_then_broken_and_a_new_version_recovers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipes = tmp_path / "recipes"
    write_crasher(recipes)
    root = tmp_path / "root"
    with fast_runtime(root) as runtime:
        record = runtime.deploy(request(recipes, {CRASHER: "1.0.0"}), 30)
        assert record.status == "FAILED"
        assert record.detailed_status == "FAILED_ROLLBACK_NOT_REQUESTED"
        assert runtime.state(CRASHER) == State.BROKEN
        log = runtime.log_path(CRASHER).read_text()
        assert log.count("Run script exited. {exitCode=3") == 3
        assert "crashing on purpose" in log

        assert run_ggic(["local", "component", "list", "--root", str(root)]) == 0
        out = capsys.readouterr().out
        assert f"Component Name: {CRASHER}" in out and "State: BROKEN" in out
        assert run_ggic(["local", "deployment", "status", "--root", str(root),
                     "-i", record.deployment_id]) == 0
        out = capsys.readouterr().out
        assert f"{record.deployment_id}: FAILED" in out and f"{CRASHER} is BROKEN" in out
        assert run_ggic(["local", "component", "restart", "--root", str(root),
                     "-n", CRASHER]) == 1  # BROKEN: only a deployment helps
        assert "restart FAILED" in capsys.readouterr().out

        write_recipe(recipes, CRASHER, "1.0.1", "sleep 30")
        record = runtime.deploy(request(recipes, {CRASHER: "1.0.1"}), 30)
        assert record.status == "SUCCEEDED", record.error
        assert runtime.state(CRASHER) == State.RUNNING
        assert runtime.component(CRASHER).version == "1.0.1"


def test_iot_core_publishes_are_recorded_and_listed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipes = tmp_path / "recipes"
    topic = "ml/dlr/image-classification"
    write_probe(recipes, tmp_path / "scripts", defaults={
        "IotCoreTopic": topic, "accessControl": probe_access_control(topic)})
    root = tmp_path / "root"
    with fast_runtime(root) as runtime:
        assert runtime.deploy(request(recipes, {PROBE: "1.0.0"}), 30).status == "SUCCEEDED"
        wait_until(lambda: runtime.iot_core_messages())
        (message,) = runtime.iot_core_messages()
        assert message["topic"] == topic and message["component"] == PROBE
        assert json.loads(message["payload"]) == {"hello": "cloud"}
        assert message["qos"] == 1
        assert "AWS IoT Core <- ml/dlr/image-classification" in runtime.log_path().read_text()
    assert run_ggic(["local", "iotcore", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert f'{topic} (qos 1, from {PROBE}): {{"hello": "cloud"}}' in out


def test_removal_resume_and_shutdown_in_reverse_dependency_order(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    write_recipe(recipes, BASE, "1.0.0",
                 "trap 'exit 0' TERM; while true; do sleep 0.1; done")
    write_ticker(recipes, dependencies={BASE: "^1.0.0"})
    root = tmp_path / "root"
    with fast_runtime(root) as runtime:
        assert runtime.deploy(request(recipes, {TICKER: "1.0.0"}), 30).status == "SUCCEEDED"
        assert [c.name for c in runtime.components()] == [BASE, TICKER]
        token_file = runtime.cli_token_file
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    log = (root / "logs" / "greengrass.log").read_text()
    assert log.index(f"{TICKER}: RUNNING -> STOPPING") < log.index(f"{BASE}: RUNNING -> STOPPING")
    assert not (root / "cli.token").exists() and not (root / "ipc.socket").exists()

    with fast_runtime(root) as runtime:  # a restart resumes the last deployment
        wait_until(lambda: runtime.deployments() and runtime.deployments()[-1].finished)
        assert runtime.deployments()[-1].status == "SUCCEEDED"
        assert runtime.state(TICKER) == State.RUNNING
        record = runtime.deploy(request(recipes, {}, remove=(TICKER,)), 30)
        assert record.status == "SUCCEEDED", record.error
        assert [c.name for c in runtime.components()] == []
        assert TICKER not in runtime.server.components()
        assert "ERROR" not in runtime.log_path(TICKER).read_text()


def test_a_deployment_that_cannot_be_planned_fails_with_the_reason(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    write_ticker(recipes)
    with fast_runtime(tmp_path / "root") as runtime:
        record = runtime.deploy(request(recipes, {TICKER: "9.9.9"}), 30)
        assert record.status == "FAILED"
        assert record.detailed_status == "FAILED_NO_STATE_CHANGE"
        assert TICKER in record.error and "9.9.9" in record.error
        assert runtime.components() == []


def test_a_deep_root_gets_a_short_socket_and_its_token_file_says_where(tmp_path: Path) -> None:
    root = tmp_path / ("deep-" * 20) / "root"
    runtime = fast_runtime(root)
    with runtime:
        assert len(os.fsencode(root / "ipc.socket")) > 104
        assert len(os.fsencode(runtime.socket_path)) < 104
        assert runtime.socket_path.exists()
        info = json.loads((root / "cli.token").read_text())
        assert info["domain_socket_path"] == str(runtime.socket_path)
        assert info["cli_auth_token"] == runtime.cli_token
        assert "too long for a Unix socket path" in runtime.log_path().read_text()
    assert not runtime.socket_path.parent.exists()


def test_configuration_records_and_logs_are_private_to_the_runtime_user(tmp_path: Path) -> None:
    """#8.12: a component's configuration may hold secrets; the deployment records and logs
    say what ran. All are 0600 in 0700 folders (as cli.token), even under a 022 umask, while
    the components still reach the IPC socket."""
    recipes = tmp_path / "recipes"
    topic = "ml/secret"
    write_probe(recipes, tmp_path / "scripts", defaults={
        "ApiKey": "s3cr3t", "IotCoreTopic": topic,
        "accessControl": probe_access_control(topic)})
    root = tmp_path / "root"
    old_umask = os.umask(0o022)
    try:
        with fast_runtime(root) as runtime:
            assert runtime.deploy(request(recipes, {PROBE: "1.0.0"}), 30).status == "SUCCEEDED"
            assert runtime.wait_for_report(PROBE, "RUNNING", 15)  # it reached the socket
            wait_until(lambda: runtime.iot_core_messages())
            files = [root / "config" / "configuration.json", root / "config" / "deployment.json",
                     root / "config" / "local_deployments.json", root / "logs" / "greengrass.log",
                     root / "logs" / f"{PROBE}.log", root / "logs" / "iotcore.jsonl",
                     root / "cli.token"]
            modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
            assert modes == {p.name: "0o600" for p in files}
            folders = [root / "config", root / "logs"]
            modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in folders}
            assert modes == {"config": "0o700", "logs": "0o700"}
            assert "s3cr3t" in (root / "config" / "configuration.json").read_text()
    finally:
        os.umask(old_umask)


def test_a_recipe_without_artifacts_runs_from_the_whole_artifact_folder(tmp_path: Path) -> None:
    """#9.1: AWS's HelloWorld tutorial style: no Artifacts section, the script (and what it
    reads) only sits in --artifactDir/<name>/<version>/, which the nucleus copies whole."""
    name, version = "com.example.HelloWorld", "1.0.0"
    recipes, artifacts = tmp_path / "recipes", tmp_path / "artifacts"
    write_recipe(recipes, name, version,
                 f"'{sys.executable}' -u {{artifacts:path}}/hello_world.py")
    folder = artifacts / name / version
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "greeting.txt").write_text("Hello from the artifact folder")
    (folder / "hello_world.py").write_text(
        "import pathlib\n"
        "print((pathlib.Path(__file__).parent / 'data' / 'greeting.txt').read_text())\n")
    with fast_runtime(tmp_path / "root") as runtime:
        record = runtime.deploy(DeploymentRequest(recipe_dir=recipes, artifact_dir=artifacts,
                                                  merge={name: version}), 30)
        assert record.status == "SUCCEEDED", record.error
        assert runtime.wait_for_state(name, State.FINISHED, 15)
        assert "Hello from the artifact folder" in runtime.log_path(name).read_text()
        laid_out = runtime.root / "packages" / "artifacts" / name / version
        assert (laid_out / "data" / "greeting.txt").is_file()


STARTUP_REPORTER = r'''
import sys, time
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

client = GreengrassCoreIPCClientV2()
client.update_state(state=sys.argv[1])
print("reported", sys.argv[1], flush=True)
time.sleep(60)
'''


def write_startup_reporter(tmp_path: Path, state: str, timeout: int) -> tuple[Path, str]:
    """A component whose Startup process reports ``state`` through the real SDK, then stays."""
    name = "com.example.StartupReporter"
    script = tmp_path / "scripts" / "startup_reporter.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(STARTUP_REPORTER)
    recipes = tmp_path / "recipes"
    recipes.mkdir(parents=True, exist_ok=True)
    (recipes / f"{name}.json").write_text(json.dumps({
        "RecipeFormatVersion": "2020-01-25", "ComponentName": name, "ComponentVersion": "1.0.0",
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"Startup": {
            "Script": f"exec '{sys.executable}' '{script}' {state}", "Timeout": timeout}}}]}))
    return recipes, name


def test_update_state_running_from_startup_moves_to_running(tmp_path: Path) -> None:
    """#9.2: the nucleus moves STARTING -> RUNNING on UpdateState(RUNNING) from a Startup
    process, which runs on, and the startup timeout no longer applies (Lifecycle.reportState)."""
    recipes, name = write_startup_reporter(tmp_path, "RUNNING", timeout=4)
    with fast_runtime(tmp_path / "root") as runtime:
        record = runtime.deploy(request(recipes, {name: "1.0.0"}), 30)
        assert record.status == "SUCCEEDED", record.error
        assert runtime.state(name) == State.RUNNING
        wait_until(lambda: "reported RUNNING" in runtime.log_path(name).read_text())
        # past the 4 s startup timeout (counted from before the report): still RUNNING
        assert not runtime.wait_for_state(name, (State.ERRORED, State.BROKEN), 4.5)
        assert runtime.state(name) == State.RUNNING
        assert "timed out" not in runtime.log_path(name).read_text()


def test_update_state_errored_during_startup_is_an_error(tmp_path: Path) -> None:
    """#9.2: UpdateState(ERRORED) while STARTING counts as an error (restart; the third makes
    it BROKEN), long before the startup timeout."""
    recipes, name = write_startup_reporter(tmp_path, "ERRORED", timeout=120)
    with fast_runtime(tmp_path / "root") as runtime:
        runtime.submit_deployment(request(recipes, {name: "1.0.0"}))
        assert runtime.wait_for_state(name, State.BROKEN, 30)
        text = runtime.log_path(name).read_text()
        assert text.count("shell-runner-start") == 3  # started three times, errored three times
        assert "the component reported ERRORED (UpdateState)" in text


def test_components_get_the_nucleus_environment(tmp_path: Path) -> None:
    """#9.9: the variables the nucleus sets for every lifecycle script (IPCEventStreamService,
    ShellRunner, Kernel): both socket variables, the token for TES, the root CA path, the
    nucleus version."""
    names = ["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH",
             "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", "SVCUID",
             "AWS_CONTAINER_AUTHORIZATION_TOKEN", "GG_ROOT_CA_PATH", "GGC_VERSION"]
    out = tmp_path / "env.json"
    dump = (f"'{sys.executable}' -c \"import json, os; json.dump({{n: os.environ.get(n) for n "
            f"in {names!r}}}, open('{out}', 'w'))\"")
    recipes = tmp_path / "recipes"
    write_recipe(recipes, "com.example.Env", "1.0.0", dump)
    with fast_runtime(tmp_path / "root") as runtime:
        record = runtime.deploy(request(recipes, {"com.example.Env": "1.0.0"}), 30)
        assert record.status == "SUCCEEDED", record.error
        env = json.loads(wait_until(lambda: out.exists() and out.read_text()))
    socket_path = str(runtime.socket_path)
    assert env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH"] == socket_path
    assert env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"] == socket_path
    assert env["SVCUID"] and env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == env["SVCUID"]
    assert env["GG_ROOT_CA_PATH"] == ""  # no root CA here: the nucleus sets "" then
    assert env["GGC_VERSION"] == "2.12.0"
