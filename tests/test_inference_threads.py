"""InferenceThreads really sets how many threads run a model's inference, for both kinds of
thread pool a DLR model can use: OpenMP (our generated kernels) and the TVM runtime's own pool
inside libdlr.so (Neo/TVM-compiled models).

The probe (tests/thread_probe.py) is a real model directory run by the real libdlr.so: its one
kernel reports the size of the OpenMP team it gets and how many tasks the TVM runtime's
``TVMBackendParallelLaunch`` runs for "all threads". The last test runs the classifier as a
process through the real SDK, configured from its recipe."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from ggic.classifier.inference_threads import (
    apply_inference_threads,
    loaded_openmp_runtimes,
)
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline
from ggic.classifier.profiles import resolve_profile
from thread_probe import counts_from_class_ids, counts_from_logits, write_thread_probe


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory) -> Path:
    return write_thread_probe(tmp_path_factory.mktemp("probe"))


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("TVM_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def on_a_new_thread(fn):
    """Run fn on a fresh thread (both pools are per thread) and return its result."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # pragma: no cover - surfaced below
            box["error"] = exc

    thread = threading.Thread(target=target, name="ggic-inference-test")
    thread.start()
    thread.join(60)
    if "error" in box:
        raise box["error"]
    return box["value"]


def probe(model) -> tuple[int, int]:
    return counts_from_logits(model.run(np.zeros(model.input_shape, dtype=np.float32)))


@pytest.mark.parametrize("threads", [1, 2])
def test_the_setting_sizes_both_pools_on_the_inference_thread(probe_dir, clean_env, threads):
    model = load_model(probe_dir, resolve_profile("auto"), warm_up=False)
    try:
        def run():
            applied = apply_inference_threads(threads)
            return applied, probe(model)

        applied, (team, tasks) = on_a_new_thread(run)
        assert any("gomp" in Path(p).name for p in applied.openmp_runtimes)
        assert (team, tasks) == (threads, threads)
    finally:
        model.close()


def test_without_the_setting_the_runtimes_pick_their_own(probe_dir, clean_env):
    """The test above can fail: left alone, OpenMP takes every CPU and TVM half of them
    (x86_64), so on a 2-CPU machine one of the two pools differs from either setting."""
    import os

    cpus = os.cpu_count() or 1
    if cpus < 2:
        pytest.skip("needs 2 or more CPUs")
    model = load_model(probe_dir, resolve_profile("auto"), warm_up=False)
    try:
        team, tasks = on_a_new_thread(lambda: probe(model))
        assert team == cpus and team != tasks
    finally:
        model.close()


def test_the_service_warm_up_applies_it_on_the_inference_thread(probe_dir, clean_env):
    from ggic.classifier.service import WarmUp

    model = load_model(probe_dir, resolve_profile("auto"), warm_up=False)
    pipeline = ClassificationPipeline(model)
    try:
        def run():
            warm_up = WarmUp(pipeline, inference_threads=1)
            warm_up.run()
            assert warm_up.error is None
            return probe(model)

        assert on_a_new_thread(run) == (1, 1)
    finally:
        model.close()


def test_openmp_runtimes_are_found_in_the_process_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0\n"
        "7f01-7f02 r--p 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0\n"
        "7f02-7f03 r-xp 00000000 08:01 2 /venv/torch/lib/libgomp-a34b3233.so.1\n"
        "7f03-7f04 r-xp 00000000 08:01 3 /usr/lib/libm.so.6\n"
        "7f04-7f05 rw-p 00000000 00:00 0 \n", encoding="utf-8")
    assert loaded_openmp_runtimes(str(maps)) == [
        "/usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0", "/venv/torch/lib/libgomp-a34b3233.so.1"]
    assert loaded_openmp_runtimes(str(tmp_path / "missing")) == []


def test_zero_leaves_the_runtimes_alone(clean_env):
    import os

    applied = apply_inference_threads(0)
    assert applied.openmp_runtimes == () and "TVM_NUM_THREADS" not in os.environ
    with pytest.raises(ValueError):
        apply_inference_threads(-1)


@pytest.mark.parametrize(("setting", "expected"), [(None, 1), ("2", 2)])
def test_the_classifier_process_runs_its_model_with_the_configured_threads(
        probe_dir, photos, tmp_path, setting, expected):
    """Through the real parts: the classifier as a process, configured from its recipe (whose
    default is used when ``setting`` is None), a request through ggic.local's IPC server and
    the real SDK client in the component, the probe model through libdlr.so."""
    import os
    import queue
    import subprocess
    import sys
    import time

    import yaml

    from ggic.local.ipc_server import IpcServer

    repo = Path(__file__).resolve().parents[1]
    name = "com.custom.ImageClassifier"
    recipe = yaml.safe_load((repo / "recipes" / f"{name}.yaml").read_text())
    config = dict(recipe["ComponentConfiguration"]["DefaultConfiguration"])
    assert config["InferenceThreads"] == "1"  # the default the README documents
    config.update(ModelDir=str(probe_dir), TopK="2", ScoreThreshold="0",
                  AllowedImageDirs=[str(photos[0].parent)])
    if setting is not None:
        config["InferenceThreads"] = setting
    server = IpcServer(tmp_path / "ipc.socket")
    server.register_component(name, configuration=config, access_control=config["accessControl"])
    server.start()
    results: queue.Queue = queue.Queue()
    unsubscribe = server.subscribe("local/result", lambda _topic, message: results.put(message))
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "TVM_NUM_THREADS")}
    env.update(server.component_env(name), PYTHONPATH=str(repo / "components"),
               PYTHONUNBUFFERED="1")
    log_path = tmp_path / "classifier.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "ggic", "classifier"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        assert server.wait_for_state(name, "RUNNING", 60), log_path.read_text()
        deadline = time.monotonic() + 30  # RUNNING comes just before the subscription
        while not server.publish("local/inference", {"request_id": "probe-1",
                                                     "image_path": str(photos[0])}):
            assert time.monotonic() < deadline, "the classifier never subscribed"
            time.sleep(0.05)
        try:
            result = results.get(timeout=30)
        except queue.Empty:
            raise AssertionError(log_path.read_text()) from None
        assert result["status"] == "ok", result
        class_ids = [p["class_id"] for p in result["predictions"]]
        assert counts_from_class_ids(class_ids) == (expected, expected)
        assert f"InferenceThreads {expected} on thread ggic-inference" in log_path.read_text()
    finally:
        process.terminate()
        process.wait(15)
        unsubscribe()
        server.stop()


def test_the_models_backend_gets_the_count_too(clean_env):
    """Backends whose library has its own pool (ONNX Runtime) size it in set_threads."""
    calls = []

    class Backend:
        def set_threads(self, count):
            calls.append(count)

    apply_inference_threads(2, Backend())
    apply_inference_threads(0, Backend())  # the runtimes' defaults: nothing to set
    assert calls == [2]
