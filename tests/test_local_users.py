"""Users (#9.8): as root, ``ggic local`` runs each lifecycle step as the component's user (the
``--default-user``), ``RequiresPrivilege`` steps as root, and gives the component its work
folder; the component reaches the IPC socket but not the CLI token or the runtime's records.
Real processes as the real ``nobody`` user: the tests that switch users need root (CI runs the
suite as root) and are skipped with a message otherwise."""

from __future__ import annotations

import os
import pwd
import stat
import time
from pathlib import Path

import pytest
import yaml

from ggic.local.deployment import DeploymentRequest
from ggic.local.lifecycle import State
from ggic.local.run_with import (
    RunWithError,
    UserPolicy,
    parse_posix_user,
    unreachable_folder,
)
from local_components import fast_runtime, run_ggic

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="switching users needs root (CI runs the suite as root)")
NOBODY = pwd.getpwnam("nobody")


def write_lifecycle_recipe(folder: Path, name: str, lifecycle: dict) -> None:
    recipe = {"RecipeFormatVersion": "2020-01-25", "ComponentName": name,
              "ComponentVersion": "1.0.0",
              "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": lifecycle}]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}-1.0.0.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")


# --- resolving users (no root needed) ---------------------------------------------------------


def test_posix_user_resolves_names_ids_and_the_primary_group() -> None:
    by_name = parse_posix_user("nobody")
    assert (by_name.uid, by_name.gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert by_name.home == NOBODY.pw_dir
    by_id = parse_posix_user(f"{NOBODY.pw_uid}:0")
    assert (by_id.user, by_id.gid, by_id.group) == ("nobody", 0, "root")
    assert by_id.env({"HOME": "/root", "X": "1"}) == {
        "HOME": NOBODY.pw_dir, "USER": "nobody", "LOGNAME": "nobody", "X": "1"}


@pytest.mark.parametrize("text", ["no-such-user-ggic", "nobody:no-such-group-ggic", ":root", ""])
def test_an_unknown_user_or_group_is_a_clear_error(text: str) -> None:
    with pytest.raises(RunWithError):
        parse_posix_user(text)


def test_a_folder_the_user_cannot_enter_is_named(shared_dir: Path) -> None:
    nobody = parse_posix_user("nobody")
    closed = shared_dir / "closed"
    (closed / "inside").mkdir(parents=True)
    os.chmod(closed, 0o700)
    assert unreachable_folder(closed / "inside", nobody) == closed
    os.chmod(closed, 0o711)
    assert unreachable_folder(closed / "inside", nobody) is None


def test_without_root_every_step_runs_as_the_runtime_user(monkeypatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    policy = UserPolicy.for_runtime("nobody")
    assert not policy.switching and policy.default is None
    assert "not root" in policy.decision
    assert policy.step_user(policy.component_user(None), False) is None


# --- real processes as nobody ----------------------------------------------------------------


@needs_root
def test_privileged_steps_run_as_root_the_others_as_the_default_user(shared_dir: Path) -> None:
    recipes = shared_dir / "recipes"
    ids = "$(id -u):$(id -g):$HOME"
    write_lifecycle_recipe(recipes, "com.example.Users", {
        "Install": {"RequiresPrivilege": True, "Script": f"echo install={ids}"},
        "Run": f"echo run={ids}; touch '{{work:path}}/written-by-run'",
    })
    with fast_runtime(shared_dir / "root", default_user="nobody") as runtime:
        record = runtime.deploy(DeploymentRequest(recipe_dir=recipes,
                                                  merge={"com.example.Users": "1.0.0"}), 30)
        assert record.status == "SUCCEEDED", record.error
        log = runtime.log_path("com.example.Users").read_text()
        work = runtime.root / "work" / "com.example.Users"
    assert "install=0:0:" in log, log
    assert f"run={NOBODY.pw_uid}:{NOBODY.pw_gid}:{NOBODY.pw_dir}" in log, log
    # the work folder is the component's (RunWithPathOwnershipHandler): Run could write there
    assert work.stat().st_uid == NOBODY.pw_uid
    assert (work / "written-by-run").stat().st_uid == NOBODY.pw_uid


@needs_root
def test_a_component_user_reaches_the_socket_but_not_the_token_or_records(
        shared_dir: Path) -> None:
    recipes = shared_dir / "recipes"
    private = ("cli.token", "config", "config/configuration.json",
               "config/local_deployments.json", "logs/greengrass.log",
               "logs/com.example.Snoop.log")
    probe = ("for f in " + " ".join(f"'{{kernel:rootPath}}/{p}'" for p in private) + "; do "
             "if { [ -d \"$f\" ] && ls \"$f\" || cat \"$f\"; } >/dev/null 2>&1; "
             "then echo \"read:$f\"; else echo \"refused:$f\"; fi; done; "
             "test -w \"$AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT\" "
             "&& echo socket-writable")
    write_lifecycle_recipe(recipes, "com.example.Snoop", {"Run": probe})
    with fast_runtime(shared_dir / "root", default_user="nobody") as runtime:
        record = runtime.deploy(DeploymentRequest(recipe_dir=recipes,
                                                  merge={"com.example.Snoop": "1.0.0"}), 30)
        assert record.status == "SUCCEEDED", record.error
        assert runtime.wait_for_state("com.example.Snoop", State.FINISHED, 30)
        log = runtime.log_path("com.example.Snoop").read_text()
        socket_mode = stat.S_IMODE(runtime.socket_path.stat().st_mode)
        token_mode = stat.S_IMODE(runtime.cli_token_file.stat().st_mode)
    for path in private:
        assert f"stdout. refused:{runtime.root / path}." in log, log
    assert "stdout. read:" not in log, log
    assert "stdout. socket-writable" in log, log
    # the nucleus's IPC socket is connectable by all (each component's token decides)
    assert socket_mode == 0o666 and token_mode == 0o600


@needs_root
def test_an_unknown_default_user_is_refused_at_start(shared_dir: Path) -> None:
    with pytest.raises(RunWithError, match="no-such-user-ggic"):
        fast_runtime(shared_dir / "root", default_user="no-such-user-ggic")


@needs_root
def test_a_deployments_run_with_user_is_applied_kept_and_removed(shared_dir: Path) -> None:
    """``--runWith NAME:posixUser=...`` (componentToRunWithInfo through the real SDK) runs the
    component as that user without a default user; later deployments keep it until an empty
    posixUser removes it (KernelConfigResolver.updateRunWith)."""
    recipes = shared_dir / "recipes"
    name = "com.example.RunWith"
    write_lifecycle_recipe(recipes, name, {"Run": "echo run-as=$(id -u)"})
    root = shared_dir / "root"

    def runs() -> list[str]:
        return [line.split("run-as=")[1].split(".")[0]
                for line in runtime.log_path(name).read_text().splitlines()
                if "stdout. run-as=" in line]

    def deploy(*args: str) -> None:
        assert run_ggic(["local", "deploy", "--root", str(root), "-r", str(recipes),
                         "-m", f"{name}=1.0.0", "--wait", "--timeout", "30", *args]) == 0

    def next_run(before: int) -> str:
        deadline = time.monotonic() + 30
        while len(runs()) <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        return runs()[before]

    with fast_runtime(root, default_user="root") as runtime:
        deploy("--runWith", f"{name}:posixUser=nobody")
        assert next_run(0) == str(NOBODY.pw_uid)
        deploy()  # no --runWith: the user is kept
        assert runtime.wait_for_state(name, State.FINISHED, 30)
        assert runtime.restart(name)
        assert next_run(1) == str(NOBODY.pw_uid)
        assert runtime.wait_for_state(name, State.FINISHED, 30)
        deploy("--runWith", f"{name}:posixUser=")  # removed: the default user (root here)
        assert next_run(2) == "0"
        assert run_ggic(["local", "deploy", "--root", str(root), "-m", f"{name}=1.0.0",
                         "--runWith", "nobody"]) == 1


@needs_root
def test_a_root_the_component_user_cannot_enter_fails_the_step_naming_the_folder(
        tmp_path: Path) -> None:
    closed = tmp_path / "closed"  # pytest's tmp folders are 0700 already; say it anyway
    closed.mkdir(mode=0o700)
    recipes = tmp_path / "recipes"
    write_lifecycle_recipe(recipes, "com.example.Closed", {"Run": "echo never"})
    with fast_runtime(closed / "root", default_user="nobody") as runtime:
        record = runtime.deploy(DeploymentRequest(recipe_dir=recipes,
                                                  merge={"com.example.Closed": "1.0.0"}), 30)
        log = runtime.log_path("com.example.Closed").read_text()
    assert record.status == "FAILED"
    assert "nobody can't reach the work folder" in log, log
    assert "stdout. never" not in log


@needs_root
def test_ggic_local_start_refuses_an_unknown_default_user(shared_dir: Path, capsys) -> None:
    assert run_ggic(["local", "start", "--root", str(shared_dir / "root"),
                     "--default-user", "no-such-user-ggic"]) == 2
    assert "--default-user: no user 'no-such-user-ggic'" in capsys.readouterr().err
