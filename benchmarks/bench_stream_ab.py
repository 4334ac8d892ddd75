"""A/B of two source trees on the stream's single-request path: what a frame's round trip costs
beyond the classifier's own work, per request, alternating the trees in one process run.

    python benchmarks/bench_stream_ab.py --base DIR --new DIR [--rounds 10] [--frames 200]

``DIR``: a tree of this repository (``git archive <commit> | tar -x -C DIR``, or a worktree).
Each tree gets its own ``ggic.local`` IPC server and classifier process (the model and video
are shared); each round runs one requester of each tree (``file/bmp``, MaxInFlight 1, every
frame as soon as its predecessor's result is in), in alternating order. Per request: the
requester's sent -> result (its log line) minus the classifier's ``timing_ms.total``
(accepted -> result built): the IPC hops, the intake, the hand-offs and the publishing. The
model's time, which the machine's load moves most, drops out. Two more figures per request:
sent -> result minus the classifier's work (``timing_ms`` load + preprocess + inference: also
counts the hand-offs inside the classifier), and the cycle beyond the work (one result to the
next at the IPC server minus the next frame's work: also counts the requester's turn-around
from a result to the next send; with MaxInFlight 1 this is what the stream's throughput pays
beyond the classifier's work). Prints each run's figures, the median of the per-run medians per
tree, and the per-round differences (new - base): a gain shows as differences below zero in
most rounds.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from ab_trees import (
    ab_parser,
    alternating,
    demo_model,
    load_from_tree,
    machine_line,
    print_differences,
    trees_of,
)

WORK_STEPS = ("load", "preprocess", "inference")  # the classifier's timing_ms: its work


def run(bench: ModuleType, stream: Any, video: Path) -> dict[str, float]:
    config = {**bench.recipe_defaults(bench.REQUESTER), "Source": str(video),
              "FrameTransport": "file", "FrameFormat": "bmp", "MaxInFlight": "1",
              "VideoRealTime": "false", "FrameDirectory": str(stream.frames_dir),
              "MetricsInterval": "0"}
    stream.server.register_component(bench.REQUESTER, configuration=config,
                                     access_control=config["accessControl"])
    while not stream.arrivals.empty():
        stream.arrivals.get_nowait()
    done = subprocess.run([sys.executable, "-m", "ggic", "requester"],
                          env=stream.env(bench.REQUESTER), capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    classifier_ms, work_ms, arrivals = {}, {}, []
    while not stream.arrivals.empty():
        arrived, message = stream.arrivals.get_nowait()
        timing = message["timing_ms"]
        arrivals.append((arrived, message["request_id"]))
        classifier_ms[message["request_id"]] = float(timing["total"])
        work_ms[message["request_id"]] = sum(float(timing[k]) for k in WORK_STEPS)
    sent = {rid: float(ms) for ms, rid in
            re.findall(r"sent->result (\d+\.\d+) ms\) \[([^\]]+)\]", done.stdout)}
    answered = [rid for rid in sent if rid in classifier_ms]
    overhead = [sent[rid] - classifier_ms[rid] for rid in answered]
    beyond_work = [sent[rid] - work_ms[rid] for rid in answered]
    # result to result at the server, minus the later frame's work: the whole cycle's cost
    cycle = [(later - earlier) * 1000.0 - work_ms[rid]
             for (earlier, _), (later, rid) in zip(arrivals, arrivals[1:])]
    return {"median": statistics.median(overhead), "min": min(overhead),
            "beyond_work": statistics.median(beyond_work), "cycle": statistics.median(cycle),
            "classifier": statistics.median(classifier_ms.values()), "n": len(overhead)}


def main() -> None:
    parser = ab_parser(__doc__, rounds=10)
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    trees = trees_of(args)
    benches = {label: load_from_tree(tree, "bench_stream", label)
               for label, tree in trees.items()}
    load_at_start = os.getloadavg()[0]
    results: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
    with tempfile.TemporaryDirectory(prefix="ggic-bench-ab-") as tmp:
        work = Path(tmp)
        model_dir = demo_model(args.model_dir, work)
        video = benches["base"].write_video(work / "video.avi", args.frames)
        streams = {}
        try:
            for label, bench in benches.items():
                (work / label).mkdir()
                os.environ["PYTHONPATH"] = str(trees[label] / "components")  # its processes
                streams[label] = bench.Stream(work / label, model_dir, 1)
            for round_, label in alternating(args.rounds):
                os.environ["PYTHONPATH"] = str(trees[label] / "components")
                result = run(benches[label], streams[label], video)
                results[label].append(result)
                print(f"round {round_} {label:4s}: overhead median {result['median']:.3f} "
                      f"ms, min {result['min']:.3f} ms; beyond the work "
                      f"{result['beyond_work']:.3f} ms; cycle beyond the work "
                      f"{result['cycle']:.3f} ms; classifier {result['classifier']:.2f} ms; "
                      f"{result['n']:.0f} results", flush=True)
        finally:
            for stream in streams.values():
                stream.close()
    print(machine_line(load_at_start, f"{args.frames} frames of 640x480, {args.rounds} rounds"))
    for label, runs in results.items():
        medians = [r["median"] for r in runs]
        print(f"{label:4s} ({trees[label]}): overhead beyond the classifier's timing_ms.total, "
              f"median of the run medians {statistics.median(medians):.3f} ms (lowest "
              f"{min(medians):.3f}); lowest single request {min(r['min'] for r in runs):.3f} ms")
    print_differences(results, [("median", "beyond timing_ms.total"),
                                ("beyond_work", "beyond load + preprocess + inference"),
                                ("cycle", "result to result beyond the work")])


if __name__ == "__main__":
    main()
