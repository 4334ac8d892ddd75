"""Shared pieces of benchmarks/run_all.py: statistics, the machine, a model thread, a CPU hog."""

from __future__ import annotations

import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any, Callable


def stats(ms: Sequence[float]) -> dict[str, float]:
    """min / median / p99 / max of a list of milliseconds."""
    values = sorted(ms)
    if not values:
        return {"n": 0}
    p99 = values[min(len(values) - 1, int(round(0.99 * (len(values) - 1))))]
    return {"n": len(values), "min": values[0], "median": statistics.median(values),
            "p99": p99, "max": values[-1]}


def median_of_runs(runs: Sequence[float]) -> dict[str, float]:
    """Summary of one figure measured in several runs (each run's value given)."""
    return {"runs": list(runs), "min": min(runs), "median": statistics.median(runs)}


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    return {"cpu": model, "cpus": os.cpu_count(), "cpus_usable": usable,
            "arch": platform.machine(), "python": platform.python_version(),
            "loadavg": list(os.getloadavg())}


def describe_machine(info: dict[str, Any]) -> str:
    load = ", ".join(f"{v:.2f}" for v in info["loadavg"])
    return (f"{info['cpu']}, {info['cpus_usable']} CPUs ({info['arch']}), Python "
            f"{info['python']}, load average {load} at the start")


class ModelThread:
    """One long-lived thread that runs what it is given: a model's thread pools belong to the
    thread that runs it, so each InferenceThreads setting gets its own ModelThread."""

    def __init__(self, name: str, setup: Callable[[], Any] | None = None) -> None:
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        if setup is not None:
            self.call(setup)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, box, done = job
            try:
                box["value"] = fn()
            except BaseException as exc:  # surfaced in call()
                box["error"] = exc
            done.set()

    def call(self, fn: Callable[[], Any]) -> Any:
        box: dict[str, Any] = {}
        done = threading.Event()
        self._jobs.put((fn, box, done))
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(10)


class CpuHog:
    """A busy-loop process: another CPU-bound program on the device. Paused (SIGSTOP) until
    :meth:`busy`, so quiet and loaded blocks can alternate without start-up costs."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        self.process.send_signal(signal.SIGSTOP)

    def busy(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def quiet(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)
