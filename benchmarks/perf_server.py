"""The local IPC server in its own process, as the Greengrass nucleus runs on a device.

The benchmarks' SDK clients live in the benchmark process; if the IPC server lived there too it
would share their interpreter lock, and every frame it forwards would wait for a client thread
to let go of it (a nucleus is a separate JVM process and never waits for a requester). Its CPU
is still the machine's: :func:`process_cpu_s` counts it.

    python benchmarks/perf_server.py SOCKET   # a child: one JSON request per stdin line
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ggic.local.ipc_server import IpcServer


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (all its threads); None where
    ``/proc`` is not there."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class IpcServerProcess:
    """Parent side: the IpcServer methods the benchmarks use, run in a child process."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = Path(socket_path)
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(self.socket_path)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)

    def _ask(self, op: str, **request: Any) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **request}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the IPC server process exited ({self.process.wait(10)})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"IPC server process: {answer['error']}")
        return answer["value"]

    def start(self) -> None:
        self._ask("start")

    def register_component(self, name: str, *, access_control: Mapping | None = None,
                           configuration: Mapping | None = None) -> str:
        return self._ask("register", name=name, access_control=access_control,
                         configuration=configuration)

    def component_env(self, name: str) -> dict[str, str]:
        return self._ask("env", name=name)

    def wait_for_state(self, name: str, state: str, timeout: float) -> bool:
        return self._ask("wait_for_state", name=name, state=state, timeout=timeout)

    def cpu_s(self) -> float | None:
        return process_cpu_s(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(RuntimeError, OSError):
                self._ask("stop")
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def child_main(argv: list[str]) -> int:
    server = IpcServer(Path(argv[0]))
    reply = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the reply pipe
    calls = {
        "start": lambda r: server.start(),
        "register": lambda r: server.register_component(
            r["name"], access_control=r["access_control"], configuration=r["configuration"]),
        "env": lambda r: server.component_env(r["name"]),
        "wait_for_state": lambda r: server.wait_for_state(r["name"], r["state"], r["timeout"]),
        "stop": lambda r: server.stop(),
    }
    try:
        for line in sys.stdin:  # EOF (the parent is gone): stop
            request = json.loads(line)
            try:
                answer = {"value": calls[request["op"]](request)}
            except Exception as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            reply.write(json.dumps(answer) + "\n")
            reply.flush()
            if request["op"] == "stop":
                return 0
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
