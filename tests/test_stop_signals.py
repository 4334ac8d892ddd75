"""SIGTERM never deadlocks a component (real processes, real signals).

A Python signal handler runs on the main thread between two bytecodes; one that sets an Event
(or puts into a Queue) deadlocks when the main thread was inside that Event's own lock, which
the stream requester's pacing loop (``Event.wait`` with short timeouts) is most of the time. The
stop signals are therefore handled on a thread of their own (``install_stop_signals``). Here a
child process's main thread waits on the Event its stop callback sets, in a tight loop, while
thousands of SIGTERMs arrive: it must stay alive and responsive. With a handler that called
``stop`` itself, the child's main thread blocked on the Event's lock it held (a single SIGTERM
there hangs the process for good), and as more signals arrived each handler blocked inside the
previous one until the process died of a RecursionError, within about 3,000 signals, on 3.9 and
3.11 alike.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import os, sys, threading, time
from ggic.runtime_support import install_stop_signals

stopped = threading.Event()
calls = []

def stop():
    calls.append(1)
    stopped.set()

install_stop_signals(stop)
print("ready", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline and not os.path.exists(sys.argv[1]):
    stopped.wait(0.00005)  # as the stream requester's pacing: mostly inside the Event's lock
    if stopped.is_set():
        stopped.clear()
print("alive after", len(calls), "stops", flush=True)
"""


@contextmanager
def running_child(tmp_path: Path, source: str, *args: str,
                  stderr: int = subprocess.PIPE) -> Iterator[subprocess.Popen]:
    """``source`` running in a child process (ggic importable) that has printed "ready";
    killed on the way out if it is still running."""
    script = tmp_path / "child.py"
    script.write_text(source)
    env = {**os.environ, "PYTHONPATH": str(REPO / "components")}
    child = subprocess.Popen([sys.executable, str(script), *args], env=env,
                             stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def test_a_flood_of_sigterms_never_deadlocks_the_main_thread(tmp_path):
    done = tmp_path / "done"
    # stderr unread while thousands of signals arrive: not a pipe that could fill up
    with running_child(tmp_path, CHILD, str(done), stderr=subprocess.DEVNULL) as child:
        for _ in range(6000):
            os.kill(child.pid, signal.SIGTERM)
            time.sleep(0.0001)
        done.write_text("")
        out, _ = child.communicate(timeout=20)
    assert child.returncode == 0
    stops = int(out.split()[2])
    assert stops >= 1, out  # signals may coalesce; each one handled called stop


def test_sigterm_and_sigint_call_stop_once_each_and_other_signals_do_not(tmp_path):
    source = """
import logging, signal, sys, threading
from ggic.runtime_support import install_stop_signals
logging.basicConfig(level=logging.INFO)
got = []
event = threading.Event()
signal.signal(signal.SIGUSR1, lambda *_: None)  # another handled signal also wakes the pipe
install_stop_signals(lambda: (got.append(1), event.set()))
print("ready", flush=True)
for _ in range(2):
    assert event.wait(10)
    event.clear()
    print("stop", len(got), flush=True)
"""
    with running_child(tmp_path, source) as child:
        assert child.stdout is not None
        os.kill(child.pid, signal.SIGUSR1)
        os.kill(child.pid, signal.SIGTERM)
        assert child.stdout.readline().strip() == "stop 1"
        os.kill(child.pid, signal.SIGINT)
        assert child.stdout.readline().strip() == "stop 2"
        _, err = child.communicate(timeout=10)
    assert child.returncode == 0
    assert "received SIGTERM" in err and "received SIGINT" in err
    assert "SIGUSR1" not in err
