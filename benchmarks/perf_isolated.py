"""One InferenceThreads setting per process, as the classifier runs it.

libgomp counts the threads of every OpenMP pool in a process; once they outnumber the CPUs it
stops letting a team's idle threads spin between parallel regions (its "throttled" spin count),
so each of the model's many short parallel regions has to wake a sleeping thread. Two pools in
one benchmark process (say a 2-thread worker beside a thread that warmed the model up with the
default team, or beside an "all CPUs" loop) make the 2-thread figure nearly as slow as one
thread (measured here: 9 ms instead of 5). The classifier has one inference thread, so each
setting is measured in its own child process: the model is loaded without running it, then
the setting is applied on the one thread that warms it up and runs it. The parent alternates
blocks between the children (interleaved, repeated) over a line protocol on stdin/stdout.

    python benchmarks/perf_isolated.py --threads N --model DIR [--images DIR]   # a child
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from perf_common import ModelThread

from ggic.classifier.inference_threads import apply_inference_threads
from ggic.classifier.inputs import InputLimits
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline
from ggic.classifier.profiles import resolve_profile
from ggic.messages import ImageSource, SourceKind

LIMITS = InputLimits()


class InferenceProcess:
    """Parent side: a child process running one model on one thread with ``threads``
    (0: the runtimes' defaults, all CPUs) and ``env`` added to its environment."""

    def __init__(self, threads: int, model_dir: Path, images: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        command = [sys.executable, __file__, "--threads", str(threads), "--model",
                   str(model_dir)]
        if images is not None:
            command += ["--images", str(images)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        env={**os.environ, **(env or {})}, text=True)
        self._ask({"op": "ready"})

    def _ask(self, request: dict[str, Any]) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark child exited ({self.process.wait(10)})")
        return json.loads(line)

    def run_ms(self, count: int, budget_s: float) -> list[float]:
        """Times of ``count`` ``model.run`` calls (fewer past ``budget_s``)."""
        return self._ask({"op": "run", "count": count, "budget": budget_s})

    def classify_per_s(self, count: int, budget_s: float = 8.0) -> float:
        """Images per second of a sequential classify loop over the child's images."""
        return self._ask({"op": "classify", "count": count, "budget": budget_s})

    def openmp_threads_started(self) -> int:
        """OS threads that are not Python threads and appeared since the model was loaded
        (before it first ran): the libgomp workers of every team the process started."""
        return self._ask({"op": "threads"})

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def time_runs(pipeline: ClassificationPipeline, count: int, budget_s: float) -> list[float]:
    x = np.zeros(pipeline.model.input_shape, dtype=np.float32)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < count and (len(times) < 5 or time.perf_counter() < deadline):
        started = time.perf_counter()
        pipeline.model.run(x)
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def classify_loop(pipeline: ClassificationPipeline, images: list[Path], count: int,
                  budget_s: float) -> float:
    started = time.perf_counter()
    done = 0
    while done < count and (done < 3 or time.perf_counter() - started < budget_s):
        source = ImageSource(SourceKind.PATH, path=str(images[done % len(images)]))
        pipeline.classify(source, LIMITS, 5, 0.0)
        done += 1
    return done / (time.perf_counter() - started)


def native_threads() -> int:
    """OS threads of this process that Python did not start (libgomp's, OpenBLAS's...)."""
    return len(os.listdir("/proc/self/task")) - threading.active_count()


def child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--images", type=Path)
    args = parser.parse_args(argv)
    images = sorted(args.images.glob("*.jpg")) if args.images else []
    reply = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        model = load_model(args.model, resolve_profile("auto"), warm_up=False)  # not run here
        pipeline = ClassificationPipeline(model)
        thread = ModelThread("bench-inference", lambda: apply_inference_threads(args.threads))
        before = native_threads()
        thread.call(pipeline.warm_up)
        thread.call(lambda: time_runs(pipeline, 5, 1.0))  # the pool is started and warm
        if images:
            thread.call(lambda: classify_loop(pipeline, images, 5, 2.0))
        for line in sys.stdin:
            request = json.loads(line)
            op, count, budget = request["op"], request.get("count", 0), request.get("budget", 0)
            if op == "run":
                answer: Any = thread.call(
                    lambda c=count, b=budget: time_runs(pipeline, c, b))
            elif op == "classify":
                answer = thread.call(
                    lambda c=count, b=budget: classify_loop(pipeline, images, c, b))
            elif op == "threads":
                answer = native_threads() - before
            else:
                answer = "ready"
            reply.write(json.dumps(answer) + "\n")
            reply.flush()
        thread.close()
        pipeline.close()
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
