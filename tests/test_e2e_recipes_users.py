"""Our two components from their REAL recipes under ``ggic local`` running as root with
``--default-user nobody``, as on a device (#9, "Done when"): the classifier's Install step runs
as root (it copies the ModelStore model, Read: OWNER, into its work folder and gives it to the
component's user), both Run steps run as ``nobody`` (read from /proc), connect to the IPC socket
with their tokens and classify real photos through libdlr.so as the in-process pipeline does.

The reused development environment (GGIC_REUSE_VENV) lives where ``nobody`` may not reach its
interpreter (here: Python under /root, mode 0700); the Install step then runs the packages
through an interpreter of the same version the user can run, or fails saying so."""

from __future__ import annotations

import os
import pwd
import queue
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ggic.classifier.inputs import InputLimits
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline
from ggic.classifier.profiles import resolve_profile
from ggic.local.deployment import DeploymentRequest, parse_update_config
from ggic.local.lifecycle import State
from ggic.messages import ImageSource, SourceKind
from local_components import build_our_recipes, fast_runtime
from test_e2e_recipes import CLASSIFIER, REQUESTER, Topic

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="running components as another user needs root (CI runs the suite as root)")
NOBODY = pwd.getpwnam("nobody")


def nobody_can_run_this_python() -> bool:
    """Whether ``nobody`` can run this interpreter or one of the same X.Y version that the
    Install step falls back to (``/usr/bin/pythonX.Y``, ``pythonX.Y`` on its PATH). Where it
    can't (e.g. the suite's second run, on a pyenv Python 3.9 under /root with no Debian
    python3.9), the Install step fails saying to use --build-venvs: nothing to classify."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    probe = (f"{sys.executable} -c pass || /usr/bin/{version} -c pass || "
             f"{version} -c pass")
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}", "--clear-groups",
         "sh", "-c", probe], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        timeout=30).returncode == 0


def processes_in(work: Path, module: str) -> list[int]:
    """Pids of ``python -m ggic <module>`` running in the folder ``work``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"ggic" in argv and module.encode() in argv and Path(cwd) == work:
            found.append(int(entry.name))
    return found


def status_ids(pid: int) -> tuple[int, int]:
    """The real uid and gid of a process, from /proc/<pid>/status."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


def test_our_recipes_run_as_nobody_under_a_root_runtime_and_classify(
        shared_dir: Path, photos: list[Path]) -> None:
    if not nobody_can_run_this_python():
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        pytest.skip(f"the user nobody can't run any Python {version} here (this one is not "
                    "reachable, and there is no system one)")
    ours = build_our_recipes(shared_dir, photos[:3], seed=5)
    build, images = ours.build, ours.images
    os.chmod(images, 0o755)
    with fast_runtime(shared_dir / "root", stand_ins=(ours.stand_in,),
                      default_user="nobody") as runtime:
        results = Topic(runtime, "local/result")
        requests = Topic(runtime, "local/inference")
        for name, update in (
                (CLASSIFIER, {"AllowedImageDirs": [str(images)], "ScoreThreshold": "0"}),
                (REQUESTER, {"ImageDirectory": str(images)})):
            record = runtime.deploy(DeploymentRequest(
                recipe_dir=build / "recipes", artifact_dir=build / "artifacts",
                merge={name: "1.0.0"},
                update_config=parse_update_config({name: {"MERGE": update}})), 120)
            assert record.status == "SUCCEEDED", (record.error,
                                                  runtime.log_path(name).read_text()[-3000:])
            if name == CLASSIFIER:  # subscribed before the requester sends
                assert runtime.wait_for_report(CLASSIFIER, "RUNNING", 30)
        try:
            paths = {r["request_id"]: r["image_path"] for r in requests.take(3, timeout=60)}
            got = {paths[r["request_id"]]: r for r in results.take(3, timeout=60)}
        except queue.Empty:
            pytest.fail("no results:\n" + runtime.log_path(CLASSIFIER).read_text()[-4000:])

        # Run as nobody: both processes, read from the kernel
        work = runtime.root / "work"
        for name, module in ((CLASSIFIER, "classifier"), (REQUESTER, "requester")):
            assert runtime.state(name) == State.RUNNING
            pids = processes_in(work / name, module)
            assert pids, f"no {module} process in {work / name}"
            assert {status_ids(pid) for pid in pids} == {(NOBODY.pw_uid, NOBODY.pw_gid)}
            assert (work / name).stat().st_uid == NOBODY.pw_uid

        # Install (RequiresPrivilege) ran as root: it copied the root-only ModelStore model and
        # gave the copy to the component's user
        log = runtime.log_path(CLASSIFIER).read_text()
    assert "lifecycle.Install.Script, serviceName=com.custom.ImageClassifier, " \
           "currentState=NEW, user=root" in log
    assert "copied the ModelStore model" in log
    model = work / CLASSIFIER / "model"
    assert model.stat().st_uid == NOBODY.pw_uid
    assert (model / "compiled.so").stat().st_uid == NOBODY.pw_uid

    # classified correctly: what the same model gives in this process
    pipeline = ClassificationPipeline(load_model(ours.model_dir,
                                                 resolve_profile("modelstore-resnet50")))
    assert sorted(Path(p).name for p in got) == sorted(p.name for p in images.iterdir())
    for path, result in got.items():
        assert result["status"] == "ok", result
        want, _ = pipeline.classify(ImageSource(SourceKind.PATH, path=path), InputLimits(), 5,
                                    0.0)
        assert [p["class_id"] for p in result["predictions"]] == [p.class_id for p in want]
        np.testing.assert_allclose([p["score"] for p in result["predictions"]],
                                   [p.score for p in want], atol=1e-5)
