"""benchmarks/bench_request_cpu.py runs the classifier's request path step by step on a real
model (libdlr.so) and real JPEGs, and the IPC server's frame codec; no timing is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_request_cpu  # noqa: E402


def test_every_step_is_measured(tmp_path: Path, capsys) -> None:
    figures = bench_request_cpu.main(["--model", "tiny", "--count", "1", "--cache",
                                      str(tmp_path)])
    assert (tmp_path / "tiny" / "compiled.so").is_file()
    assert len(figures) == 9 and all(ms >= 0 for ms in figures.values())
    printed = capsys.readouterr().out
    assert "machine: " in printed
    for name in figures:
        assert name in printed
