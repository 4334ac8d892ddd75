"""``ggic local`` commands through the REAL awsiotsdk client against a running runtime (in this
process, or ``ggic local start`` as a process), as greengrass-cli users would type them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ggic.cli import main
from ggic.local.deployment import DeploymentRequest
from ggic.local.lifecycle import State
from ggic.local.recipe import load_recipe
from ggic.local.runtime import LocalRuntime
from ggic.local.stand_ins import MODELSTORE_COMPONENT, model_folder_name, this_architecture
from local_components import TICKER, fast_runtime, run_ggic, write_ticker
from waiting import wait_until

REPO = Path(__file__).resolve().parents[1]


def ggic(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_ggic(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture()
def running(tmp_path: Path) -> Iterator[LocalRuntime]:
    write_ticker(tmp_path / "recipes")
    with fast_runtime(tmp_path / "root") as runtime:
        yield runtime


def test_without_a_runtime_every_client_command_says_so(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "nothing"
    for args in (["component", "list"], ["deployment", "list"],
                 ["pubsub", "pub", "-t", "a", "-m", "b"]):
        code, _out, err = ggic(capsys, "local", *args, "--root", str(root))
        assert code == 1
        assert f"no ggic local runtime is running at {root}" in err
        assert f"ggic local start --root {root}" in err
    root.mkdir()  # a token file left behind by a runtime that died
    (root / "cli.token").write_text(json.dumps({"cli_auth_token": "x",
                                                "domain_socket_path": str(root / "ipc.socket")}))
    code, _out, err = ggic(capsys, "local", "component", "list", "--root", str(root))
    assert code == 1 and "no ggic local runtime is running" in err
    code, _out, err = ggic(capsys, "local", "stop", "--root", str(root))
    assert code == 1 and "no ggic local runtime is running" in err


def test_deploy_wait_status_and_list(running: LocalRuntime, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    root = str(running.root)
    update = tmp_path / "update.json"
    update.write_text(json.dumps({TICKER: {"MERGE": {"Greeting": "hello"}}}))
    code, out, err = ggic(capsys, "local", "deploy", "--root", root,
                          "--recipeDir", str(tmp_path / "recipes"),
                          "--merge", f"{TICKER}=1.0.0", "--update-config", str(update), "--wait")
    assert code == 0, err
    deployment_id = out.split("Deployment Id: ")[1].split()[0]
    assert f"{deployment_id}: SUCCEEDED" in out
    assert running.state(TICKER) == State.RUNNING
    assert running.server.get_configuration(TICKER) == {"Greeting": "hello"}

    code, out, _ = ggic(capsys, "local", "deployment", "status", "--root", root,
                        "-i", deployment_id)
    assert code == 0 and out.strip() == f"{deployment_id}: SUCCEEDED"

    code, out, err = ggic(capsys, "local", "deployment", "create", "--root", root,
                          "-r", str(tmp_path / "recipes"), "-m", f"{TICKER}=2.0.0", "--wait")
    assert code == 1
    failed_id = out.split("Deployment Id: ")[1].split()[0]
    assert f"{failed_id}: FAILED" in out
    assert f"{TICKER} 2.0.0: no recipe for this version" in out

    code, out, _ = ggic(capsys, "local", "deployment", "list", "--root", root)
    assert code == 0
    assert f"{deployment_id}: SUCCEEDED" in out and f"{failed_id}: FAILED" in out

    code, _out, err = ggic(capsys, "local", "deployment", "status", "--root", root, "-i", "x")
    assert code == 1 and "ResourceNotFoundError" in err and "Cannot find deployment" in err
    code, _out, err = ggic(capsys, "local", "deploy", "--root", root, "-m", "a=not-a-version")
    assert code == 1 and "--merge 'a=not-a-version'" in err


def test_component_list_details_restart_and_stop(running: LocalRuntime, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    root = str(running.root)
    code, _, err = ggic(capsys, "local", "deploy", "--root", root, "-r",
                        str(tmp_path / "recipes"), "-m", f"{TICKER}=1.0.0", "--wait")
    assert code == 0, err
    code, out, _ = ggic(capsys, "local", "component", "list", "--root", root)
    assert code == 0
    assert out.splitlines() == ["Components currently running in Greengrass:",
                                f"Component Name: {TICKER}", "    Version: 1.0.0",
                                "    State: RUNNING", "    Configuration: {}"]
    code, out, _ = ggic(capsys, "local", "component", "details", "--root", root, "-n", TICKER)
    assert code == 0 and "    State: RUNNING" in out
    code, _, err = ggic(capsys, "local", "component", "details", "--root", root, "-n", "no.Such")
    assert code == 1
    assert "ResourceNotFoundError: Component with name no.Such not found in Greengrass" in err

    log = running.log_path(TICKER)
    starts = log.read_text().count("shell-runner-start")
    code, out, _ = ggic(capsys, "local", "component", "restart", "--root", root, "-n", TICKER)
    assert code == 0 and out.strip() == f"{TICKER}: restart SUCCEEDED"
    wait_until(lambda: log.read_text().count("shell-runner-start") == starts + 1)
    assert running.wait_for_state(TICKER, State.RUNNING, 10)

    code, out, _ = ggic(capsys, "local", "component", "stop", "--root", root, "-n", TICKER)
    assert code == 0 and out.strip() == f"{TICKER}: stop SUCCEEDED"
    assert running.state(TICKER) == State.FINISHED
    assert "bye" in log.read_text()  # it got SIGTERM


def test_pubsub_sub_prints_what_pub_sends(running: LocalRuntime,
                                          capsys: pytest.CaptureFixture) -> None:
    root = str(running.root)
    subscriptions = running.server.subscription_count()
    result: list[int] = []
    subscriber = threading.Thread(target=lambda: result.append(run_ggic([
        "local", "pubsub", "sub", "--root", root, "-t", "demo/+", "--count", "2",
        "--timeout", "20", "--json"])))
    subscriber.start()
    wait_until(lambda: running.server.subscription_count() > subscriptions)
    assert run_ggic(["local", "pubsub", "pub", "--root", root, "-t", "demo/a",
                "-m", '{"n": 1}']) == 0
    running.publish("demo/b", {"n": 2})  # a jsonMessage from someone else
    subscriber.join(20)
    assert result == [0]
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    # (the SDK runs stream callbacks on a thread pool: arrival order is not guaranteed)
    assert sorted(lines, key=lambda m: m["topic"]) == [
        {"topic": "demo/a", "message": {"n": 1}}, {"topic": "demo/b", "message": {"n": 2}}]
    assert run_ggic(["local", "pubsub", "sub", "--root", root, "-t", "quiet", "--count", "1",
                "--timeout", "0.3"]) == 1


def test_pubsub_sub_ends_when_the_runtime_stops(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    runtime = fast_runtime(tmp_path / "root").start()
    try:
        subscriptions = runtime.server.subscription_count()
        result: list[int] = []
        subscriber = threading.Thread(target=lambda: result.append(run_ggic([
            "local", "pubsub", "sub", "--root", str(runtime.root), "-t", "local/result"])))
        subscriber.start()
        wait_until(lambda: runtime.server.subscription_count() > subscriptions)
    finally:
        runtime.close()
    subscriber.join(20)
    assert not subscriber.is_alive(), "`pubsub sub` kept waiting on a runtime that had stopped"
    assert result == [1]
    assert "subscription to local/result was closed by the runtime" in capsys.readouterr().err


def test_logs_prints_the_runtime_and_component_logs(running: LocalRuntime, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    root = str(running.root)
    assert ggic(capsys, "local", "deploy", "--root", root, "-r", str(tmp_path / "recipes"),
                "-m", f"{TICKER}=1.0.0", "--wait")[0] == 0
    wait_until(lambda: running.log_path(TICKER).read_text().count("tick") >= 3)
    code, out, _ = ggic(capsys, "local", "logs", "--root", root, TICKER, "--lines", "2")
    assert code == 0 and len(out.splitlines()) == 2 and "stdout. tick" in out
    code, out, _ = ggic(capsys, "local", "logs", "--root", root)
    assert code == 0 and "local deployment" in out and "SUCCEEDED" in out
    code, _, err = ggic(capsys, "local", "logs", "--root", root, "no.Such")
    assert code == 1 and "no log" in err and TICKER in err and "greengrass" in err


def test_start_and_stop_as_processes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "root"
    env = dict(os.environ, PYTHONPATH=str(REPO / "components"))
    process = subprocess.Popen(
        [sys.executable, "-m", "ggic", "local", "start", "--root", str(root),
         "--thing-name", "cli-test-thing"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until(lambda: (root / "cli.token").exists() and (root / "ggic-local.pid").exists()
                   or process.poll() is not None, timeout=20)
        assert process.poll() is None, process.communicate()
        assert (root / "cli.token").stat().st_mode & 0o777 == 0o600
        code, out, _ = ggic(capsys, "local", "component", "list", "--root", str(root))
        assert code == 0 and out.strip() == "Components currently running in Greengrass:"
        code, _, err = ggic(capsys, "local", "start", "--root", str(root))
        assert code == 1 and "already running" in err
        code, out, _ = ggic(capsys, "local", "stop", "--root", str(root))
        assert code == 0 and "stopped the ggic local runtime" in out
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert "ggic local runtime stopped" in out
        assert not (root / "cli.token").exists() and not (root / "ggic-local.pid").exists()
        assert "cli-test-thing" in (root / "logs" / "greengrass.log").read_text()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(20)


def test_stand_in_modelstore_writes_a_deployable_component(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "compiled.so").write_bytes(b"\x7fELF")
    code, out, _ = ggic(capsys, "local", "stand-in", "modelstore", "--out",
                        str(tmp_path / "with"), "--model", str(model))
    assert code == 0 and "ggic local start --stand-in" in out
    recipes = sorted((tmp_path / "with" / "recipes").iterdir())
    # the ModelStore's, and variant.DLR's (the classifier depends on both)
    assert [p.name for p in recipes] == ["variant.DLR-1.6.0.yaml",
                                         f"{MODELSTORE_COMPONENT}-2.1.0.yaml"]
    recipe_path = recipes[1]
    recipe = load_recipe(recipe_path)
    assert recipe.name == MODELSTORE_COMPONENT and recipe.version.startswith("2.1.")
    folder = (tmp_path / "with" / "artifacts" / MODELSTORE_COMPONENT / recipe.version
              / model_folder_name(this_architecture()))
    assert (folder / "compiled.so").read_bytes() == b"\x7fELF"
    uris = [a["URI"] for m in yaml.safe_load(recipe_path.read_text())["Manifests"]
            for a in m["Artifacts"]]
    assert any(uri.endswith(f"/{model_folder_name(this_architecture())}.zip") for uri in uris)

    assert ggic(capsys, "local", "stand-in", "modelstore", "--out",
                str(tmp_path / "without"))[0] == 0
    document = yaml.safe_load((tmp_path / "without" / "recipes" /
                               f"{MODELSTORE_COMPONENT}-2.1.0.yaml").read_text())
    assert all("Artifacts" not in m for m in document["Manifests"])
    code, _, err = ggic(capsys, "local", "stand-in", "modelstore", "--out", str(tmp_path / "x"),
                        "--model", str(tmp_path / "missing"))
    assert code == 2 and "is not a directory" in err


def test_help_lists_every_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["local", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("start", "stop", "deploy", "deployment", "component", "pubsub", "logs",
                    "iotcore", "stand-in"):
        assert command in out
    with pytest.raises(SystemExit):
        main(["local", "deploy", "--help"])
    out = capsys.readouterr().out
    for option in ("--recipeDir", "--artifactDir", "--merge", "--update-config", "--remove",
                   "--wait"):
        assert option in out


def test_start_refuses_a_root_whose_runtime_is_running(running: LocalRuntime,
                                                       capsys: pytest.CaptureFixture) -> None:
    code, _, err = ggic(capsys, "local", "start", "--root", str(running.root), "--no-resume")
    assert code == 1 and "another server is listening" in err
    assert running.cli_token_file.exists()  # the running runtime's credentials stay
    assert ggic(capsys, "local", "component", "list", "--root", str(running.root))[0] == 0


def test_deployment_cancel(running: LocalRuntime, tmp_path: Path,
                           capsys: pytest.CaptureFixture) -> None:
    """#9.4: CancelLocalDeployment as the greengrass-cli answers it: a QUEUED deployment never
    runs, one IN_PROGRESS stops where it is, a finished one is left as it is."""
    root = str(running.root)
    recipes = tmp_path / "slow"
    recipes.mkdir()
    (recipes / "slow.json").write_text(json.dumps({
        "RecipeFormatVersion": "2020-01-25", "ComponentName": "com.example.Slow",
        "ComponentVersion": "1.0.0", "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {
            "Install": {"Script": "sleep 60", "Timeout": 120}, "Run": "sleep 60"}}]}))
    slow = running.submit_deployment(DeploymentRequest(recipe_dir=recipes,
                                                       merge={"com.example.Slow": "1.0.0"}))
    queued = running.submit_deployment(DeploymentRequest(recipe_dir=tmp_path / "recipes",
                                                         merge={TICKER: "1.0.0"}))
    wait_until(lambda: running.deployment(slow.deployment_id).status == "IN_PROGRESS")
    code, out, err = ggic(capsys, "local", "deployment", "cancel", "--root", root,
                          "-i", queued.deployment_id)
    assert code == 0, err
    assert f"Cancel request submitted. Deployment ID: {queued.deployment_id}" in out
    code, out, err = ggic(capsys, "local", "deployment", "cancel", "--root", root,
                          "-i", slow.deployment_id)
    assert code == 0, err
    assert running.wait_for_deployment(slow.deployment_id, 20).status == "CANCELED"
    assert running.deployment(queued.deployment_id).status == "CANCELED"
    code, out, _ = ggic(capsys, "local", "deployment", "status", "--root", root,
                        "-i", queued.deployment_id)
    assert f"{queued.deployment_id}: CANCELED" in out
    assert TICKER not in [c.name for c in running.components()]  # the queued one never ran
    code, out, _ = ggic(capsys, "local", "deployment", "cancel", "--root", root,
                        "-i", slow.deployment_id)
    assert code == 0 and "deployment is already finished" in out
    code, _out, err = ggic(capsys, "local", "deployment", "cancel", "--root", root,
                           "-i", "not-a-uuid")
    assert code == 1 and "DeploymentId is a UUID" in err
    code, _out, err = ggic(capsys, "local", "deployment", "cancel", "--root", root,
                           "-i", "0b9e6a34-6f8c-4a4e-9b43-0a4d8c0f6c1e")
    assert code == 1 and "Cannot find the deployment id provided" in err


def test_create_debug_password(running: LocalRuntime) -> None:
    """#9.4: CreateDebugPassword as the CLI answers it: user 'debug', a fresh random password
    valid for 8 hours, no certificate hashes (no local debug console)."""
    import datetime

    from ggic.local.cli_commands import connect

    with connect(running.root) as client:
        first = client.create_debug_password()
        second = client.create_debug_password()
    assert first.username == "debug"
    assert len(first.password) >= 32 and first.password != second.password
    left = first.password_expiration - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=7, minutes=59) < left <= datetime.timedelta(hours=8)
    assert first.certificate_sha256_hash is None and first.certificate_sha1_hash is None
