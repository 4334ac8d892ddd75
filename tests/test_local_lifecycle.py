"""Component lifecycles as real processes: states, restarts, timeouts, stop, logs, ordering."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ggic.local.component_logs import ComponentLog, component_log_path
from ggic.local.lifecycle import (
    ComponentRunner,
    ComponentSpec,
    DependencyCycleError,
    RunnerSettings,
    State,
    Supervisor,
    should_skip,
    start_order,
)
from ggic.local.recipe import parse_lifecycle
from waiting import wait_until

pytestmark = pytest.mark.skipif(os.name != "posix", reason="lifecycle scripts use sh")

FAST = RunnerSettings(grace_period=0.5, output_drain_timeout=1.0)
WAIT = 10.0


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[str, State, State]] = []

    def __call__(self, name: str, old: State, new: State) -> None:
        self.changes.append((name, old, new))

    def states(self, name: str) -> list[str]:
        return [new.value for n, _, new in self.changes if n == name]


def make_runner(tmp_path: Path, lifecycle: dict, name: str = "com.example.C",
                env: dict | None = None, settings: RunnerSettings = FAST
                ) -> tuple[ComponentRunner, Recorder]:
    recorder = Recorder()
    spec = ComponentSpec(name, parse_lifecycle(lifecycle), tmp_path / "work" / name)
    runner = ComponentRunner(spec, ComponentLog(tmp_path, name), settings=settings,
                             env_provider=lambda: dict(env or {}), on_state_change=recorder)
    return runner, recorder


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def wait_for_file(path: Path, timeout: float = WAIT) -> str:
    """The file's text once it exists and is not empty."""
    return wait_until(lambda: path.exists() and path.read_text(), timeout)


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (in a container nobody may reap orphans)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    try:
        return bool(wait_until(predicate, timeout))
    except AssertionError:
        return False


def test_install_then_run_with_env_setenv_and_work_dir(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    runner, recorder = make_runner(tmp_path, {
        "Setenv": {"SHARED": "lifecycle", "OVERRIDDEN": "lifecycle"},
        "Install": {"Script": f"echo install >> {out}", "Setenv": {"STEP": "install"}},
        "Run": {"Script": f'echo "run $SHARED $OVERRIDDEN ${{STEP:-none}} $SVCUID $(pwd)" >> {out}',
                "Setenv": {"OVERRIDDEN": "step"}},
    }, env={"SVCUID": "token-1", "SHARED": "runtime"})
    try:
        runner.start()
        assert runner.wait_for_state(State.FINISHED, WAIT)
    finally:
        runner.close(WAIT)
    work = tmp_path / "work" / "com.example.C"
    assert read(out).splitlines() == ["install", f"run lifecycle step none token-1 {work}"]
    assert recorder.states("com.example.C") == [
        "INSTALLED", "STARTING", "RUNNING", "STOPPING", "FINISHED"]  # Run exit 0 -> FINISHED


@pytest.mark.parametrize("skipif, runs", [
    ("onpath sh", False),
    ("onpath no-such-program-here", True),
    ("exists {marker}", False),
    ("exists {marker}.missing", True),
    ("! exists {marker}", True),
])
def test_skipif(tmp_path: Path, skipif: str, runs: bool) -> None:
    marker = tmp_path / "marker"
    marker.write_text("x")
    out = tmp_path / "installed"
    runner, _ = make_runner(tmp_path, {
        "Install": {"Skipif": skipif.format(marker=marker), "Script": f"touch {out}"},
        "Run": "true",
    })
    try:
        runner.start()
        assert runner.wait_for_state(State.FINISHED, WAIT)
    finally:
        runner.close(WAIT)
    assert out.exists() is runs


def test_a_skipped_startup_still_leads_to_run(tmp_path: Path) -> None:
    """GenericExternalService.startup: a Startup that did nothing (skipped) runs Run."""
    out = tmp_path / "ran"
    runner, recorder = make_runner(tmp_path, {
        "Startup": {"Skipif": "onpath sh", "Script": "exit 1"},
        "Run": f"touch {out}; sleep 30",
    })
    try:
        runner.start()
        assert runner.wait_for_state(State.RUNNING, WAIT)
        wait_until(out.exists, WAIT)
    finally:
        runner.close(WAIT)
    assert "ERRORED" not in recorder.states("com.example.C")


def test_a_skipped_run_reports_finished(tmp_path: Path) -> None:
    """GenericExternalService.handleRunScript: a Run that did nothing -> FINISHED."""
    runner, recorder = make_runner(tmp_path, {
        "Run": {"Skipif": "onpath sh", "Script": "sleep 30"},
    })
    try:
        runner.start()
        assert runner.wait_for_state(State.FINISHED, WAIT)
    finally:
        runner.close(WAIT)
    assert recorder.states("com.example.C") == ["INSTALLED", "STARTING", "FINISHED"]


def test_should_skip_refuses_other_expressions() -> None:
    assert should_skip("onpath sh") is True
    with pytest.raises(ValueError):
        should_skip("exist /tmp")


def test_crash_is_restarted_and_the_third_failure_is_broken(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutdowns = tmp_path / "shutdowns"
    recovers = tmp_path / "recovers"
    runner, recorder = make_runner(tmp_path, {
        "Run": f"echo run >> {runs}; exit 3",
        "Shutdown": f"echo down >> {shutdowns}",
        "Recover": f"echo recover >> {recovers}",
    })
    try:
        runner.start()
        assert runner.wait_for_state(State.BROKEN, WAIT)
        assert not runner.restart()  # BROKEN needs a new deployment
    finally:
        runner.close(WAIT)
    cycle = ["INSTALLED", "STARTING", "RUNNING", "ERRORED", "STOPPING"]
    assert recorder.states("com.example.C") == cycle * 2 + ["INSTALLED", "STARTING", "RUNNING",
                                                            "BROKEN"]
    assert read(runs).count("run") == 3
    assert read(recovers).count("recover") == 2  # Recover runs on ERRORED, not on BROKEN
    assert read(shutdowns).count("down") == 3  # Shutdown also runs on the way to BROKEN


def test_reinstall_leaves_broken(tmp_path: Path) -> None:
    flag = tmp_path / "healthy"
    runner, recorder = make_runner(tmp_path, {
        "Install": f"test -e {flag}",
        "Run": "sleep 30",
    })
    try:
        runner.start()
        assert runner.wait_for_state(State.BROKEN, WAIT)  # Install failed three times
        # the state is visible to waiters just before the state-change callback runs
        assert eventually(lambda: recorder.states("com.example.C")[-1:] == ["BROKEN"])
        assert recorder.states("com.example.C") == ["ERRORED", "NEW", "ERRORED", "NEW", "BROKEN"]
        flag.write_text("x")
        runner.reinstall()
        assert runner.wait_for_state(State.RUNNING, WAIT)
    finally:
        runner.close(WAIT)
    assert runner.state == State.FINISHED


def test_install_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    runner, recorder = make_runner(tmp_path, {
        "Install": {"Script": f"sleep 30 & echo $! >> {pids}; wait", "Timeout": 0.3},
        "Run": "true",
    })
    started = time.monotonic()
    try:
        runner.start()
        assert runner.wait_for_state(State.BROKEN, WAIT)
    finally:
        runner.close(WAIT)
    assert time.monotonic() - started < 5
    children = [int(p) for p in read(pids).split()]
    assert len(children) == 3
    time.sleep(0.1)
    assert not any(pid_alive(pid) for pid in children)  # the background sleeps too
    assert "timed out after 0.3 seconds" in read(component_log_path(tmp_path, "com.example.C"))


def test_run_timeout_is_an_error(tmp_path: Path) -> None:
    runner, recorder = make_runner(tmp_path, {"Run": {"Script": "sleep 30", "Timeout": 0.2}})
    try:
        runner.start()
        assert runner.wait_for_state(State.BROKEN, WAIT)
    finally:
        runner.close(WAIT)
    assert recorder.states("com.example.C")[:5] == ["INSTALLED", "STARTING", "RUNNING",
                                                    "ERRORED", "STOPPING"]


def test_stop_runs_shutdown_then_terminates_run(tmp_path: Path) -> None:
    events = tmp_path / "events"
    runner, recorder = make_runner(tmp_path, {
        "Run": f"trap 'echo term >> {events}; exit 0' TERM; echo started >> {events}; "
               "while true; do sleep 0.05; done",
        "Shutdown": f"echo shutdown >> {events}",
    })
    runner.start()
    assert runner.wait_for_state(State.RUNNING, WAIT)
    wait_for_file(events)
    assert runner.stop(WAIT) == State.FINISHED
    runner.close(WAIT)
    assert read(events).split() == ["started", "shutdown", "term"]
    assert recorder.states("com.example.C")[-2:] == ["STOPPING", "FINISHED"]


def test_a_run_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    runner, _ = make_runner(tmp_path, {
        "Run": f"trap '' TERM; echo $$ > {pid_file}; while true; do sleep 0.05; done"})
    runner.start()
    pid = int(wait_for_file(pid_file))
    started = time.monotonic()
    assert runner.stop(WAIT) == State.FINISHED
    elapsed = time.monotonic() - started
    runner.close(WAIT)
    assert FAST.grace_period <= elapsed < FAST.grace_period + 3
    assert not pid_alive(pid)


def test_startup_success_means_running_and_failure_errored(tmp_path: Path) -> None:
    good, good_states = make_runner(tmp_path, {"Startup": "exit 0"}, name="good")
    bad, bad_states = make_runner(tmp_path, {"Startup": "exit 1"}, name="bad")
    try:
        good.start()
        bad.start()
        assert good.wait_for_state(State.RUNNING, WAIT)
        assert bad.wait_for_state(State.BROKEN, WAIT)
        time.sleep(0.1)
        assert good.state == State.RUNNING  # Startup's exit doesn't finish the component
    finally:
        good.close(WAIT)
        bad.close(WAIT)
    assert bad_states.states("bad")[:4] == ["INSTALLED", "STARTING", "ERRORED", "STOPPING"]


def test_no_run_step_finishes(tmp_path: Path) -> None:
    runner, recorder = make_runner(tmp_path, {"Install": "true"})
    try:
        runner.start()
        assert runner.wait_for_state(State.FINISHED, WAIT)
    finally:
        runner.close(WAIT)
    assert recorder.states("com.example.C") == ["INSTALLED", "STARTING", "FINISHED"]


LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(?P<level>[A-Z]+)\] \((?P<thread>[^)]+)\) "
    r"(?P<logger>[\w.]+): (?P<rest>.*)$")


def test_output_lands_in_the_component_log_in_the_nucleus_format(tmp_path: Path) -> None:
    name = "com.example.Logger"
    runner, _ = make_runner(tmp_path, {
        "Install": {"Script": "echo installing", "RequiresPrivilege": True},
        "Run": {"Script": "sleep 0.2; echo hello out; echo oops >&2"},
    }, name=name)
    try:
        runner.start()
        assert runner.wait_for_state(State.FINISHED, WAIT)
    finally:
        runner.close(WAIT)
    lines = (tmp_path / "logs" / f"{name}.log").read_text().splitlines()
    assert all(LINE.match(line) for line in lines), lines
    parsed = [LINE.match(line).groupdict() for line in lines]
    run_script = f"services.{name}.lifecycle.Run.Script"
    assert {"level": "INFO", "thread": "Copier", "logger": name,
            "rest": f"stdout. hello out. {{scriptName={run_script}, serviceName={name}, "
                    "currentState=RUNNING}"} in parsed
    assert {"level": "WARN", "thread": "Copier", "logger": name,
            "rest": f"stderr. oops. {{scriptName={run_script}, serviceName={name}, "
                    "currentState=RUNNING}"} in parsed
    assert {"level": "INFO", "thread": "Copier", "logger": name,
            "rest": f"stdout. installing. {{scriptName=services.{name}.lifecycle.Install.Script, "
                    f"serviceName={name}, currentState=NEW}}"} in parsed
    text = "\n".join(lines)
    assert f"Run script exited. {{exitCode=0, serviceName={name}, currentState=" in text
    assert "RequiresPrivilege is not applied locally" in text


def spec(tmp_path: Path, name: str, lifecycle: dict, deps: dict | None = None) -> ComponentSpec:
    return ComponentSpec(name, parse_lifecycle(lifecycle), tmp_path / "work" / name,
                         dependencies=deps or {})


def test_supervisor_starts_after_hard_dependencies_and_stops_in_reverse(tmp_path: Path) -> None:
    order = tmp_path / "order"
    loop = "while true; do sleep 0.05; done"
    specs = [
        spec(tmp_path, "app", {"Run": f"echo app-run >> {order}; {loop}",
                               "Shutdown": f"echo app-down >> {order}"},
             {"model": "HARD", "helper": "SOFT"}),
        spec(tmp_path, "model", {"Startup": f"sleep 0.3; echo model-up >> {order}",
                                 "Shutdown": f"echo model-down >> {order}"}),
        spec(tmp_path, "helper", {"Startup": "sleep 30"}),  # SOFT: never waited for
    ]
    recorder = Recorder()
    supervisor = Supervisor(specs, tmp_path, on_state_change=recorder, settings=FAST,
                            env_for=lambda name: {"SVCUID": f"{name}-token"})
    assert supervisor.order == ["helper", "model", "app"]
    supervisor.start_all()
    try:
        assert supervisor.wait_for_state("app", State.RUNNING, WAIT)
        assert supervisor.state("helper") == State.STARTING
        # RUNNING comes as the Run script starts: let it write its line before stopping it
        assert wait_until(lambda: order.exists() and "app-run" in read(order), WAIT)
    finally:
        supervisor.close(WAIT)
    assert read(order).split() == ["model-up", "app-run", "app-down", "model-down"]
    assert supervisor.states() == {"helper": State.FINISHED, "model": State.FINISHED,
                                   "app": State.FINISHED}


def test_hard_dependers_restart_with_their_dependency(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    loop = "while true; do sleep 0.05; done"
    specs = [
        spec(tmp_path, "base", {"Run": loop}),
        spec(tmp_path, "app", {"Run": f"echo $SVCUID >> {runs}; {loop}"}, {"base": "HARD"}),
    ]
    supervisor = Supervisor(specs, tmp_path, settings=FAST,
                            env_for=lambda name: {"SVCUID": f"{name}-token"})
    supervisor.start_all()
    try:
        assert supervisor.wait_for_state("app", State.RUNNING, WAIT)
        wait_for_file(runs)
        assert supervisor.restart("base")
        assert eventually(lambda: read(runs).count("app-token") == 2
                          and supervisor.state("app") == State.RUNNING)
    finally:
        supervisor.close(WAIT)


def test_supervisor_update_replaces_only_changed_components(tmp_path: Path) -> None:
    loop = "while true; do sleep 0.05; done"
    first = [spec(tmp_path, "a", {"Run": loop}), spec(tmp_path, "b", {"Run": loop})]
    supervisor = Supervisor(first, tmp_path, settings=FAST)
    supervisor.start_all()
    try:
        assert supervisor.wait_for(lambda s: set(s.values()) == {State.RUNNING}, WAIT)
        kept = supervisor.runner("a")
        seen_at_swap: list[dict] = []
        started = supervisor.update([spec(tmp_path, "a", {"Run": loop}),
                                     spec(tmp_path, "c", {"Run": loop})],
                                    before_start=lambda: seen_at_swap.append(supervisor.states()))
        assert started == ["c"]
        assert seen_at_swap == [{"a": State.RUNNING, "b": State.FINISHED}]
        assert supervisor.runner("a") is kept
        assert supervisor.wait_for(lambda s: s == {"a": State.RUNNING, "c": State.RUNNING}, WAIT)
    finally:
        supervisor.close(WAIT)


def test_start_order_and_cycles() -> None:
    assert start_order({"c": ["b"], "b": ["a"], "a": []}) == ["a", "b", "c"]
    with pytest.raises(DependencyCycleError, match="a -> b -> c -> a"):
        start_order({"a": ["b"], "b": ["c"], "c": ["a"]})
    with pytest.raises(KeyError, match="x depends on y"):
        start_order({"x": ["y"]})
