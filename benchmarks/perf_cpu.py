"""CPU time of processes and of single threads (Linux; None elsewhere).

Another process's time comes from ``/proc``. Within this process, threads and the whole are
read from the kernel's exact CPU clocks: ``/proc``'s per-thread and per-process figures are
scaled separately from tick samples, so one minus the other can go backwards."""

from __future__ import annotations

import os
import threading
import time


def _stat_cpu_s(path: str) -> float | None:
    try:
        with open(path, encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far, all its threads."""
    return _stat_cpu_s(f"/proc/{pid}/stat")


def thread_cpu_s(thread: threading.Thread | None) -> float | None:
    """User + system CPU seconds so far of ``thread``, a running thread of this process."""
    ident = getattr(thread, "ident", None)
    if ident is None or not thread.is_alive():  # type: ignore[union-attr]
        return None
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, AttributeError):  # the thread ended meanwhile; no such clock here
        return None


def threads_and_rest_cpu_s(threads: list[threading.Thread]) -> tuple[float | None, float]:
    """CPU seconds so far of ``threads`` together (None if one cannot be read) and of the rest
    of this process, read from the same clocks so that the rest never goes backwards."""
    parts = [thread_cpu_s(thread) for thread in threads]
    total = time.process_time()
    if any(part is None for part in parts):
        return None, total
    threads_s = sum(part for part in parts if part is not None)
    return threads_s, total - threads_s


def threads_started_by(start: object) -> list[threading.Thread]:
    """The Python threads that calling ``start()`` left running and that were not there
    before."""
    before = set(threading.enumerate())
    start()  # type: ignore[operator]
    return [thread for thread in threading.enumerate() if thread not in before]
