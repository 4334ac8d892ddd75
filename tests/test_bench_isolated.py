"""benchmarks/perf_isolated.py: each InferenceThreads setting measured in its own process, on
the real libdlr.so, with exactly one OpenMP pool of the requested size (a second pool in the
process, like a warm-up thread's default team, throttles libgomp's spinning and made the
2-thread figure nearly as slow as 1 thread). No timing is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from perf_isolated import InferenceProcess  # noqa: E402

from ggic.modelgen.efficientnet_lite import build_demo_model  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EfficientNet-Lite0 as ``ggic model build-demo`` writes it: OpenMP kernels."""
    out = tmp_path_factory.mktemp("isolated") / "efficientnet-lite0"
    build_demo_model(out)
    return out


def test_each_setting_runs_in_its_own_process_with_one_pool_of_its_size(model_dir, jpeg_photos):
    children = {threads: InferenceProcess(threads, model_dir, jpeg_photos[0].parent)
                for threads in (1, 2, 3)}
    try:
        pids = {child.process.pid for child in children.values()}
        assert len(pids) == 3
        for child in children.values():
            assert len(child.run_ms(7, 5.0)) == 7
            assert child.classify_per_s(4, 5.0) > 0
        # one team of n threads (the inference thread + n - 1 libgomp workers), no other pool
        started = {threads: child.openmp_threads_started() for threads, child in children.items()}
        assert started == {1: 0, 2: 1, 3: 2}
    finally:
        for child in children.values():
            child.close()
    assert all(child.process.returncode == 0 for child in children.values())
