"""The classifier's aarch64 and armv7l manifests, deployed for real on the local runtime with
``--platform-override architecture=aarch64`` (and ``arm``): the recipes as built for a device,
the ModelStore and variant.DLR stand-ins, variant.DLR's installer stand-in laying out
``{MLRootPath}/greengrass_ml_dlr_venv``, the classifier's Install step building its venv on top
of it (really: GGIC_REUSE_VENV does not apply there), both components running, real photos
classified through the libdlr.so that variant.DLR's venv carries (this machine's x86_64
dlr 1.6.0 library, since the code runs here), over the real awsiotsdk client.
"""

from __future__ import annotations

import json
import queue
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ggic.gdk_build import build_all
from ggic.local.deployment import DeploymentRequest, parse_update_config
from ggic.local.lifecycle import State
from ggic.local.runtime import LocalRuntime
from ggic.local.stand_ins import write_modelstore_stand_in
from ggic.modelgen.testnets import write_modelstore_like
from local_components import fast_runtime

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER = "com.custom.ImageClassifier"
REQUESTER = "com.custom.requester"
DLR_VENV = Path("work/variant.DLR/greengrass_ml/greengrass_ml_dlr_venv")


def deploy(runtime: LocalRuntime, build: Path, merge: dict[str, str], update: dict) -> None:
    record = runtime.deploy(DeploymentRequest(
        recipe_dir=build / "recipes", artifact_dir=build / "artifacts", merge=merge,
        update_config=parse_update_config(update)), 900)
    assert record.status == "SUCCEEDED", (record.error, _tail(runtime, CLASSIFIER))


def wait_for_log(runtime: LocalRuntime, text: str, timeout: float = 60.0) -> str:
    """The classifier's log once it holds ``text`` (its lines are copied asynchronously)."""
    deadline = time.monotonic() + timeout
    log = ""
    while time.monotonic() < deadline:
        log = runtime.log_path(CLASSIFIER).read_text()
        if text in log:
            break
        time.sleep(0.1)
    return log


def _tail(runtime: LocalRuntime, name: str) -> str:
    path = runtime.log_path(name)
    return path.read_text()[-4000:] if path.exists() else ""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("arm")
    build_all(REPO, base / "greengrass-build")
    images = base / "images"
    images.mkdir()
    for photo in photos[:2]:
        shutil.copy(photo, images / photo.name)
    model = write_modelstore_like(base / "resnet50-like", seed=11).model_dir
    return {"base": base, "build": base / "greengrass-build", "images": images, "model": model}


@pytest.fixture(scope="module", params=[("aarch64", "aarch64"), ("arm", "armv7l")],
                ids=["aarch64", "armv7l"])
def arm_runtime(request: pytest.FixtureRequest, built: dict[str, Any]) -> Iterator[LocalRuntime]:
    label, folder_arch = request.param
    base: Path = built["base"] / label
    stand_in = write_modelstore_stand_in(base / "stand-in", built["model"],
                                         architecture=folder_arch)
    with fast_runtime(base / "root", stand_ins=(stand_in.folder,),
                      platform_overrides={"architecture": label},
                      deployment_timeout=900.0) as runtime:
        results: queue.Queue[Any] = queue.Queue()
        runtime.subscribe("local/result", lambda _t, m: results.put(
            json.loads(m) if isinstance(m, bytes) else m))
        runtime.results = results  # type: ignore[attr-defined]
        deploy(runtime, built["build"], {CLASSIFIER: "1.0.0"}, {
            CLASSIFIER: {"MERGE": {"AllowedImageDirs": [str(built["images"])],
                                   "ScoreThreshold": "0"}}})
        assert runtime.wait_for_report(CLASSIFIER, "RUNNING", 300), _tail(runtime, CLASSIFIER)
        deploy(runtime, built["build"], {REQUESTER: "1.0.0"}, {
            REQUESTER: {"MERGE": {"ImageDirectory": str(built["images"]),
                                  "InferenceInterval": "0"}}})
        yield runtime


def test_both_components_install_and_classify_from_the_arm_manifest(
        arm_runtime: LocalRuntime, built: dict[str, Any]) -> None:
    runtime = arm_runtime
    names = sorted(p.name for p in built["images"].iterdir())
    results = [runtime.results.get(timeout=300) for _ in names]  # type: ignore[attr-defined]
    for result in results:
        assert result["status"] == "ok", result
        assert len(result["predictions"]) == 5
        assert result["model"]["profile"] == "modelstore-resnet50"
    assert runtime.wait_for_state(REQUESTER, State.FINISHED, 300)
    requester_log = runtime.log_path(REQUESTER).read_text()
    for name in names:
        assert f"{name}: " in requester_log

    root = runtime.root
    dlr_venv = root / DLR_VENV
    # variant.DLR's layout, as its installer leaves it
    assert (dlr_venv / "bin" / "activate").is_file()
    assert (dlr_venv / "dlr" / "libdlr.so").is_file()
    assert list(dlr_venv.glob("lib/python3*/site-packages/dlr/dlr_model.py"))
    # the classifier's Install step: a real venv (not the runtime's), on variant.DLR's
    venv = root / "work" / CLASSIFIER / "venv"
    assert not venv.is_symlink()
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert (venv / "dlr" / "libdlr.so").resolve() == (dlr_venv / "dlr" / "libdlr.so").resolve()
    log = runtime.log_path(CLASSIFIER).read_text()
    assert "installed the classifier's venv" in log
    assert "has no dlr" not in log
    assert "using the existing virtual environment" not in log.split("Run.Script")[0]
    # and the classifier says which library it loaded
    assert (f"DLR native library {venv / 'dlr' / 'libdlr.so'} -> "
            f"{(dlr_venv / 'dlr' / 'libdlr.so').resolve()} (version 1.6.0, from variant.DLR"
            ) in log
    assert f"Python dlr 1.6.0 at {dlr_venv}" in log


def test_a_broken_variant_dlr_makes_the_classifier_report_errored_saying_what_to_deploy(
        arm_runtime: LocalRuntime) -> None:
    runtime = arm_runtime
    library = runtime.root / DLR_VENV / "dlr" / "libdlr.so"
    saved = library.with_suffix(".saved")
    library.rename(saved)
    try:
        assert runtime.restart(CLASSIFIER)
        assert runtime.wait_for_report(CLASSIFIER, "ERRORED", 300), _tail(runtime, CLASSIFIER)
        log = wait_for_log(runtime, "DLR's native library libdlr.so was not found")
        assert "DLR's native library libdlr.so was not found" in log
        assert "deploy variant.DLR with this component (its installer puts DLR 1.6.0 with " \
               "libdlr.so into ../variant.DLR/greengrass_ml/greengrass_ml_dlr_venv" in log
    finally:
        saved.rename(library)
