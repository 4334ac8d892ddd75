"""What the A/B benchmarks share: a benchmark module loaded from each of two source trees of
this repository, their runs alternated round by round (A B, B A, ...), and the per-round
differences new - base printed with how many rounds were lower.

``--base DIR --new DIR``: a tree each (``git archive <commit> | tar -x -C DIR``, or a worktree).
What runs in a tree's own processes (the components: PYTHONPATH is that tree's) is compared;
what runs in this process (``ggic.local``'s IPC server, the SDK clients of the benchmark) is the
``ggic`` installed here for both, so a change to the local server is not.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

LABELS = ("base", "new")


def ab_parser(doc: str, rounds: int) -> argparse.ArgumentParser:
    """An A/B benchmark's parser: --base, --new, --rounds (default ``rounds``) and --model-dir
    (the demo model is built when not given); the script adds its own."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the tree before")
    parser.add_argument("--new", type=Path, required=True, help="the tree after")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--model-dir", type=Path, default=None)
    return parser


def trees_of(args: argparse.Namespace) -> dict[str, Path]:
    return {"base": args.base.resolve(), "new": args.new.resolve()}


def load_from_tree(tree: Path, module: str, label: str) -> ModuleType:
    """``benchmarks/<module>.py`` of ``tree``, as a module of its own (its own imports of other
    benchmark modules come from that tree too)."""
    spec = importlib.util.spec_from_file_location(f"{module}_{label}",
                                                  tree / "benchmarks" / f"{module}.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(tree / "benchmarks"))
    try:
        spec.loader.exec_module(loaded)
    finally:
        sys.path.remove(str(tree / "benchmarks"))
    return loaded


def demo_model(model_dir: Path | None, work: Path) -> Path:
    """``model_dir`` if given, else the EfficientNet-Lite0 demo model built into ``work``."""
    if model_dir is not None:
        return model_dir
    from ggic.modelgen.efficientnet_lite import build_demo_model

    build_demo_model(work / "model")
    return work / "model"


def machine_line(load_at_start: float, what: str) -> str:
    """The machine, its load average now and at the start, and what was measured."""
    return (f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f} (at the start "
            f"{load_at_start:.2f}); {what}")


def alternating(rounds: int) -> Iterator[tuple[int, str]]:
    """(round, label) pairs: base first in even rounds, new first in odd ones."""
    for round_ in range(rounds):
        for label in (LABELS if round_ % 2 == 0 else tuple(reversed(LABELS))):
            yield round_, label


def print_differences(results: dict[str, list[dict[str, float]]],
                      figures: list[tuple[str, str]],
                      print_line: Callable[[str], None] = print) -> None:
    """For each (key, description): the per-round differences new - base, their median and
    how many rounds were lower."""
    for key, what in figures:
        diffs = [new[key] - base[key] for base, new in zip(results["base"], results["new"])]
        print_line(f"new - base per round, {what} (ms): " + " ".join(f"{d:+.3f}" for d in diffs)
                   + f"; median {statistics.median(diffs):+.3f}, {sum(d < 0 for d in diffs)} of "
                   f"{len(diffs)} rounds lower")
