"""benchmarks/run_all.py's own logic: which targets count as met, and the README table it
prints from a results file (the figures are synthetic; the measurements themselves are not
tested: no timing in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import run_all  # noqa: E402
from perf_common import stats  # noqa: E402


def runs(value: float) -> dict:
    return {"runs": [value] * 3, "min": value, "median": value}


def results(overhead_median: float, hog_ratio: float) -> dict:
    inference = {"quiet": stats([10.0] * 5), "hog": stats([10.0 * hog_ratio] * 5),
                 "median_ratio": runs(hog_ratio), "p99_ratio": runs(hog_ratio)}
    figures = {
        "decode_vs_samples": {
            "640x480": {"ours_ms": runs(1.0), "samples_ms": runs(1.1), "ratio": runs(1.1)},
            "1920x1080": {"ours_ms": runs(3.0), "samples_ms": runs(6.0), "ratio": runs(2.0),
                          "floor_ms": runs(2.5), "ceiling_ratio": runs(2.4),
                          "cpu_ours_ms": runs(2.9), "cpu_samples_ms": runs(5.8),
                          "cpu_ratio": runs(2.0), "cpu_floor_ms": runs(2.4),
                          "cpu_ceiling_ratio": runs(2.42)}},
        "inference": {"1": inference, "2": inference},
        "service": {"lite0": {
            "overhead_ms": stats([overhead_median] * 10), "round_trip_ms": stats([12.0] * 10),
            "service_inference_ms": stats([10.0] * 10), "throughput_ratio": runs(1.1),
            "service_images_per_s": runs(90), "sequential_images_per_s": runs(80),
            "sequential_default_threads_images_per_s": runs(85),
            "throughput_ratio_vs_default_threads": runs(1.05),
            "cpu_ms_per_image": {"classifier": runs(12.5), "ipc_server": runs(0.4),
                                 "clients": runs(0.3), "loop": runs(11.0)}}},
    }
    return {"machine": {"cpu": "Test CPU", "cpus": 2, "cpus_usable": 2, "arch": "x86_64",
                        "python": "3.11", "loadavg": [0.1, 0.2, 0.3]},
            "finished": "2026-01-01 00:00 UTC", "figures": figures,
            "targets": run_all.targets(figures)}


def test_targets_are_met_or_not_by_their_goals():
    met = {row["target"][:40]: row["met"] for row in results(1.5, 1.5)["targets"]}
    assert met["1. overhead beyond the model (640x480 JP"] is True
    assert met["2. decode + preprocess vs the samples at"] is False  # 1920: 2.0x < 3x
    assert met["4. inference next to a CPU hog vs quiet "] is True
    missed = {row["target"][:40]: row["met"] for row in results(2.5, 2.5)["targets"]}
    assert missed["1. overhead beyond the model (640x480 JP"] is False
    assert missed["4. inference next to a CPU hog vs quiet "] is False


def test_the_readme_table_comes_from_a_results_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results(1.5, 1.5)))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run_all.py"),
                           "--markdown", str(path)], capture_output=True, text=True, timeout=60,
                          check=True)
    table = done.stdout
    assert "Test CPU, 2 CPUs (x86_64)" in table and "load average 0.10, 0.20, 0.30" in table
    assert "| 640x480 JPEG | 1.00 ms | 1.10 ms | 1.10x | n/a | n/a |" in table
    assert "| 1920x1080 JPEG | 3.00 ms | 6.00 ms | 2.00x | 2.50 ms | 2.40x |" in table
    assert "| 1920x1080 JPEG, CPU time | 2.90 ms | 5.80 ms | 2.00x | 2.40 ms | 2.42x |" in table
    assert ("2.00x (min 2.00x); a 1/8 decode alone: 2.40x; in CPU time 2.00x, a 1/8 decode "
            "alone 2.42x | no |") in table
    assert "| InferenceThreads 1 | 10.0 ms |" in table
    assert "| lite0 | 90 images/s | 80 images/s (1.10x) | 85 images/s (1.05x) |" in table
    assert ("CPU per image with 4 pipelined clients (ms, median of the runs): lite0: classifier "
            "12.50, IPC server 0.40, clients 0.30, sequential loop 11.00.") in table


def test_p99_of_a_hundred_values():
    assert stats([float(i) for i in range(1, 101)])["p99"] == 99.0
