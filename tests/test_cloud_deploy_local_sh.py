"""scripts/deploy-local.sh against a fake greengrass-cli that records its arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "deploy-local.sh"
DEPLOYMENT_ID = "5a1f9c2e-0b7d-4c1e-9f3a-2d8e6b4c1a07"

# Prints what the real one prints (plus the IPC client's log lines on stderr), records each
# call as one JSON line, and reports IN_PROGRESS for the first FAKE_PENDING status calls.
FAKE_CLI = """#!/bin/sh
python3 - "$@" <<'PY'
import json, os, sys
args = sys.argv[1:]
log = os.environ["FAKE_LOG"]
with open(log, "a") as f:
    f.write(json.dumps(args) + "\\n")
print("INFO: Connection established with event stream RPC server", file=sys.stderr)
if args[:2] == ["deployment", "create"]:
    print("Local deployment submitted! Deployment Id: %s" % os.environ["FAKE_ID"])
elif args[:2] == ["deployment", "status"]:
    calls = sum(1 for line in open(log) if '"status"' in line)
    pending = int(os.environ.get("FAKE_PENDING", "1"))
    status = "IN_PROGRESS" if calls <= pending else os.environ.get("FAKE_FINAL", "SUCCEEDED")
    print("%s: %s" % (args[3], status))
    print("Created on: 2024-05-01 10:00:00")
elif args[:2] == ["component", "list"]:
    print("Component Name: com.custom.ImageClassifier")
    print("    Version: 1.0.0")
    print("    State: RUNNING")
else:
    sys.exit(3)
PY
"""


@pytest.fixture
def device(tmp_path):
    root = tmp_path / "greengrass" / "v2"
    (root / "bin").mkdir(parents=True)
    fake = root / "bin" / "greengrass-cli"
    fake.write_text(FAKE_CLI)
    fake.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GREENGRASS_ROOT": str(root),
        "GGIC": str(Path(sys.executable).with_name("ggic")),
        "SUDO": "",
        "POLL_INTERVAL": "0",
        "FAKE_LOG": str(tmp_path / "calls.jsonl"),
        "FAKE_ID": DEPLOYMENT_ID,
    }
    return env, tmp_path


def run(env: dict, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SCRIPT), *args], env={**env, **extra}, text=True,
                          capture_output=True, timeout=60, check=False)


def calls(env: dict) -> list[list[str]]:
    path = Path(env["FAKE_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_builds_deploys_follows_and_lists(device):
    env, tmp = device
    build = tmp / "greengrass-build"
    update = tmp / "classifier-config.json"
    update.write_text('{"com.custom.ImageClassifier": {"MERGE": {"TopK": "3"}}}')
    result = run(env, "--build-dir", str(build), "--update-config", str(update),
                 FAKE_PENDING="2")
    assert result.returncode == 0, result.stderr
    recorded = calls(env)
    assert recorded[0] == [
        "deployment", "create",
        "--recipeDir", str(build / "recipes"), "--artifactDir", str(build / "artifacts"),
        "--merge", "com.custom.ImageClassifier=1.0.0", "--merge", "com.custom.requester=1.0.0",
        "--update-config", str(update)]
    assert recorded[1:4] == [["deployment", "status", "-i", DEPLOYMENT_ID]] * 3
    assert recorded[4:] == [["component", "list"]]
    assert (build / "recipes" / "com.custom.ImageClassifier.yaml").is_file()
    assert (build / "artifacts" / "com.custom.requester" / "1.0.0" / "ggic.zip").is_file()
    assert f"deployment {DEPLOYMENT_ID} SUCCEEDED" in result.stdout
    assert "State: RUNNING" in result.stdout


def test_given_components_and_a_json_update(device):
    env, tmp = device
    build = tmp / "greengrass-build"
    assert run(env, "--build-dir", str(build)).returncode == 0
    Path(env["FAKE_LOG"]).unlink()
    update = '{"com.custom.requester": {"RESET": ["/InferenceInterval"]}}'
    result = run(env, "--build-dir", str(build), "--no-build",
                 "--component", "com.custom.requester=1.0.0", "--update-config", update,
                 FAKE_PENDING="0")
    assert result.returncode == 0, result.stderr
    assert calls(env)[0][-4:] == ["--merge", "com.custom.requester=1.0.0",
                                  "--update-config", update]


def test_a_failed_deployment_exits_1_with_the_status(device):
    env, tmp = device
    result = run(env, "--build-dir", str(tmp / "b"), FAKE_FINAL="FAILED", FAKE_PENDING="0")
    assert result.returncode == 1
    assert f"{DEPLOYMENT_ID}: FAILED" in result.stderr
    assert "logs/greengrass.log" in result.stderr
    assert ["component", "list"] not in calls(env)


def test_a_deployment_that_does_not_end_times_out(device):
    env, tmp = device
    result = run(env, "--build-dir", str(tmp / "b"), "--timeout", "1", FAKE_PENDING="100000",
                 POLL_INTERVAL="0.2")
    assert result.returncode == 1
    assert "still IN_PROGRESS after 1s" in result.stderr


@pytest.mark.parametrize("args", [["--bogus"], ["--component", "no-version"],
                                  ["--timeout", "soon"], ["--update-config"]])
def test_usage_errors_exit_2_without_calling_greengrass_cli(device, args):
    env, _ = device
    result = run(env, *args)
    assert result.returncode == 2
    assert calls(env) == []


def test_missing_greengrass_cli_exits_2(device, tmp_path):
    env, _ = device
    result = run(env, GREENGRASS_ROOT=str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "aws.greengrass.Cli" in result.stderr


def test_help(device):
    env, _ = device
    result = run(env, "--help")
    assert result.returncode == 0
    assert "GREENGRASS_ROOT" in result.stdout and "--update-config" in result.stdout
