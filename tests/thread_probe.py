"""A real DLR model whose answer is how many threads ran it (for the InferenceThreads tests).

Its one kernel counts the members of the OpenMP team it starts (``#pragma omp parallel``) and
the tasks the TVM runtime's ``TVMBackendParallelLaunch`` runs for "all threads" (num_task 0;
the runtime hands it to every kernel library that exports ``__TVMBackendParallelLaunch``). The
output is 8 logits: 10 at class ``team - 1`` and at class ``4 + tasks - 1``, 0 elsewhere, so
the top-2 classes of a classification say both counts (1..4 each)."""

from __future__ import annotations

from pathlib import Path

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
  if (__TVMBackendParallelLaunch == NULL) GGIC_FAILF("the runtime gave no parallel launch");
  if (__TVMBackendParallelLaunch(count_task, &tasks, 0) != 0) GGIC_FAILF("launch failed");
  if (team < 1 || team > 4 || tasks < 1 || tasks > 4)
    GGIC_FAILF("team %d / tasks %d outside 1..4", team, tasks);
  for (int i = 0; i < 8; ++i) out[i] = 0.0f;
  out[team - 1] = 10.0f;
  out[4 + tasks - 1] = 10.0f;
  return 0;
}
"""


def write_thread_probe(root: Path) -> Path:
    """Write the probe model directory under ``root``; its path."""
    root.mkdir(parents=True, exist_ok=True)
    source = root / "probe.c"
    source.write_text(PROBE_SOURCE, encoding="utf-8")
    g = GraphBuilder()
    data = g.input("data", (1, 224, 224, 3))
    g.output(g.op("probe0", "ggic_probe_threads", [data], (1, 8)))
    write_model_dir(root / "model", g, [source], openmp=True, include_dirs=[KERNELS_DIR])
    return root / "model"


def counts_from_logits(logits) -> tuple[int, int]:  # noqa: ANN001 - a (1, 8) array
    """(OpenMP team size, TVM tasks) from the probe's output."""
    values = list(logits.reshape(-1))
    return values[:4].index(10.0) + 1, values[4:].index(10.0) + 1


def counts_from_class_ids(class_ids: list[int]) -> tuple[int, int]:
    """(OpenMP team size, TVM tasks) from the top-2 class ids of a classification."""
    team = [c for c in class_ids if c < 4]
    tasks = [c for c in class_ids if c >= 4]
    return team[0] + 1, tasks[0] - 3
