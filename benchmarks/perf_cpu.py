"""CPU time of processes and of single threads, from ``/proc`` (Linux; None elsewhere)."""

from __future__ import annotations

import os
import threading


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
    """User + system CPU seconds so far of ``thread``, a thread of this process."""
    native_id = getattr(thread, "native_id", None)
    if native_id is None:
        return None
    return _stat_cpu_s(f"/proc/self/task/{native_id}/stat")


def threads_started_by(start: object) -> list[threading.Thread]:
    """The Python threads that calling ``start()`` left running and that were not there
    before."""
    before = set(threading.enumerate())
    start()  # type: ignore[operator]
    return [thread for thread in threading.enumerate() if thread not in before]
