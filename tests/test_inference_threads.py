"""InferenceThreads really sets how many threads run a model's inference, for both kinds of
thread pool a DLR model can use: OpenMP (our generated kernels) and the TVM runtime's own pool
inside libdlr.so (Neo/TVM-compiled models).

The probe is a real model directory run by the real libdlr.so: its one kernel reports the size
of the OpenMP team it gets (``omp_get_num_threads`` inside ``#pragma omp parallel``) and how many
tasks the TVM runtime's ``TVMBackendParallelLaunch`` (which the runtime hands every kernel
library that exports ``__TVMBackendParallelLaunch``) runs for "all threads" (num_task 0)."""

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
from ggic.modelgen.compile import KERNELS_DIR
from ggic.modelgen.graph import GraphBuilder
from ggic.modelgen.writer import write_model_dir

PROBE_SOURCE = r"""
#include <omp.h>
#include "tvm_abi.h"

typedef struct { void* sync_handle; int32_t num_task; } TVMParallelGroupEnv;
typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv* penv, void* cdata);
/* filled in by the TVM runtime when it loads this library */
GGIC_EXPORT int (*__TVMBackendParallelLaunch)(FTVMParallelLambda, void*, int) = NULL;

static int count_task(int task_id, TVMParallelGroupEnv* penv, void* cdata) {
  (void)task_id; (void)penv;
  __atomic_fetch_add((int*)cdata, 1, __ATOMIC_SEQ_CST);
  return 0;
}

GGIC_KERNEL(ggic_probe_threads) {
  GGIC_UNUSED_ABI_ARGS();
  GGIC_EXPECT_ARGS("ggic_probe_threads", 2);
  float* out = (float*)ggic_data(GGIC_TENSOR(1));
  int team = 0, tasks = 0;
#pragma omp parallel
  {
#pragma omp atomic
    team += 1;
  }
  if (__TVMBackendParallelLaunch == NULL) tasks = -1;
  else if (__TVMBackendParallelLaunch(count_task, &tasks, 0) != 0) tasks = -2;
  out[0] = (float)team;
  out[1] = (float)tasks;
  return 0;
}
"""


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("probe")
    source = root / "probe.c"
    source.write_text(PROBE_SOURCE, encoding="utf-8")
    g = GraphBuilder()
    data = g.input("data", (1, 224, 224, 3))
    g.output(g.op("probe0", "ggic_probe_threads", [data], (1, 2)))
    write_model_dir(root / "model", g, [source], openmp=True, include_dirs=[KERNELS_DIR])
    return root / "model"


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
    out = model.run(np.zeros(model.input_shape, dtype=np.float32)).reshape(-1)
    return int(out[0]), int(out[1])


@pytest.mark.parametrize("threads", [1, 2])
def test_the_setting_sizes_both_pools_on_the_inference_thread(probe_dir, clean_env, threads):
    model, _info = load_model(probe_dir, resolve_profile("auto"), warm_up=False)
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
    model, _info = load_model(probe_dir, resolve_profile("auto"), warm_up=False)
    try:
        team, tasks = on_a_new_thread(lambda: probe(model))
        assert team == cpus and team != tasks
    finally:
        model.close()


def test_the_service_warm_up_applies_it_on_the_inference_thread(probe_dir, clean_env):
    from ggic.classifier.service import WarmUp

    model, info = load_model(probe_dir, resolve_profile("auto"), warm_up=False)
    pipeline = ClassificationPipeline(model, info)
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
