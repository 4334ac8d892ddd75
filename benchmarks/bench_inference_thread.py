"""Which thread warms a model up matters: the classifier's inference thread, or another one.

    python benchmarks/bench_inference_thread.py [--runs 40] [--gap 0.2] [--model-dir DIR]

An OpenMP kernel library (like the EfficientNet-Lite0 demo model's) keeps one thread pool per
thread that launches its parallel regions. The classifier runs its model on an inference
thread; if the model was warmed up on the main thread first, the process holds two pools, more
OpenMP threads than cores, and libgomp's barriers sleep instead of spinning. Each case runs in
its own child process (pools are per-process state); both run the model on a worker thread:

    main-then-thread   warm-up on the main thread, inference on a worker (the old service)
    thread-only        warm-up and inference on the worker (the service now)

``--gap`` seconds pass between inferences, as between requests that arrive one at a time.
Prints the median per case and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def child(model_dir: str, case: str, runs: int, gap: float) -> None:
    from ggic.classifier.model import load_model
    from ggic.classifier.profiles import resolve_profile

    model = load_model(model_dir, resolve_profile("auto"), warm_up=False)
    x = np.random.default_rng(0).uniform(0, 255, model.input_shape).astype(np.float32)
    if case == "main-then-thread":
        model.warm_up()
    times: list[float] = []

    def work() -> None:
        if case == "thread-only":
            model.warm_up()
        for _ in range(runs):
            started = time.perf_counter()
            model.run(x)
            times.append((time.perf_counter() - started) * 1000.0)
            time.sleep(gap)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    model.close()
    print(json.dumps({"case": case, "median_ms": statistics.median(times)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.2)
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="a DLR model directory (default: build the demo model)")
    parser.add_argument("--child", nargs=2, metavar=("MODEL_DIR", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.runs, args.gap)
        return
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from ggic.modelgen.efficientnet_lite import build_demo_model

            model_dir = Path(tmp) / "efficientnet-lite0"
            build_demo_model(model_dir)
        medians = {}
        for case in ("main-then-thread", "thread-only"):
            out = subprocess.run(
                [sys.executable, __file__, "--runs", str(args.runs), "--gap", str(args.gap),
                 "--child", str(model_dir), case],
                check=True, capture_output=True, text=True).stdout
            medians[case] = json.loads(out.strip().splitlines()[-1])["median_ms"]
            print(f"{case:17s} median {medians[case]:.1f} ms per inference "
                  f"({args.runs} runs, {args.gap:g} s apart)")
        ratio = medians["main-then-thread"] / medians["thread-only"]
        print(f"warming up on the inference thread: {ratio:.2f}x faster inference")


if __name__ == "__main__":
    main()
