"""The local Greengrass runtime: one IPC server, one deployer and one supervisor under one root.

``LocalRuntime`` is what ``ggic local start`` and ``ggic demo`` run. It lays a root folder out
as the nucleus does::

    <root>/ipc.socket              the IPC socket (a short temp path if <root> is too deep)
    <root>/cli.token               {"cli_auth_token", "domain_socket_path"} for `ggic local`
    <root>/logs/greengrass.log     the runtime's log; <root>/logs/<component>.log each component's
    <root>/logs/iotcore.jsonl      PublishToIoTCore calls, recorded (nothing leaves the machine)
    <root>/packages/..., <root>/work/<component>/, <root>/config/   (see deployment.py)

and glues the pieces together the way the nucleus does:

* every deployed component is registered with the IPC server (its own token, its
  ``accessControl``); there is one configuration store (``config_store``): deployments write
  into it, the configuration IPC operations are a view over it, so a deployment's
  ``--update-config`` reaches running components as SubscribeToConfigurationUpdate events and a
  component's UpdateConfiguration is what the next deployment starts from;
* a component reporting ERRORED with UpdateState is handled like a crash (restart; the third
  error within an hour makes it BROKEN);
* deployments are queued and run one at a time on a worker thread (QUEUED, IN_PROGRESS,
  SUCCEEDED or FAILED with the reason);
* :meth:`LocalRuntime.close` stops the components in reverse dependency order, then IPC.

Callbacks arrive on the IPC event loop, the IPC callback thread, the runners' threads and the
deployment thread: shared state is guarded by locks, and none is held while waiting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .cli_identity import CLI_ACCESS_CONTROL, CLI_COMPONENT
from .component_logs import component_log_path, logs_dir, runtime_log_path, setup_runtime_logging
from .config_store import ConfigStore
from .control import LocalControlHandler
from .deployment import (
    CONFIGURATION_FILE,
    DEFAULT_NUCLEUS_VERSION,
    DeploymentError,
    DeploymentPlan,
    DeploymentRequest,
    LocalDeployer,
)
from .iot_core_log import iot_core_line, read_iot_core_log, shorten
from .ipc_server import IpcServer
from .lifecycle import State, Supervisor, nucleus_environment
from .nucleus_services import NucleusServices
from .platform import detect_platform
from .private_files import open_private_append, private_dir, write_private_json
from .run_with import UserPolicy
from .runtime_records import (
    ComponentStatus,
    DeploymentStatus,
    LocalDeploymentRecord,
    NoSuchDeployment,
    load_deployment_records,
    save_deployment_records,
)
from .runtime_settings import (  # noqa: F401 - re-exported: where callers import them from
    DEFAULT_ROOT,
    ROOT_ENV,
    SOCKET_NAME,
    RuntimeSettings,
    choose_socket_path,
    default_root,
)

log = logging.getLogger("ggic.local.runtime")

CLI_TOKEN_FILE = "cli.token"
IOT_CORE_LOG = "iotcore.jsonl"
DEPLOYMENTS_FILE = "local_deployments.json"
REUSE_VENV_ENV = "GGIC_REUSE_VENV"
SETTLED_STATES = frozenset({State.RUNNING, State.FINISHED, State.BROKEN})


class LocalRuntime:
    """A local Greengrass core: see the module docstring. Use as a context manager or call
    :meth:`start` and :meth:`close`."""

    def __init__(self, root: str | Path, settings: RuntimeSettings | None = None) -> None:
        self.root = Path(root).absolute()
        self.settings = settings or RuntimeSettings()
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_dir = private_dir(self.root / "config")
        self.logs_dir = private_dir(logs_dir(self.root))
        self.iot_core_log = self.logs_dir / IOT_CORE_LOG
        self.cli_token_file = self.root / CLI_TOKEN_FILE
        self.platform = detect_platform(self.settings.platform_overrides)
        self.config = ConfigStore.load(self.config_dir / CONFIGURATION_FILE)
        """The one configuration store: deployments write into it, IPC is a view over it."""
        self.deployer = LocalDeployer(self.root, platform=self.platform,
                                      thing_name=self.settings.thing_name,
                                      configuration=self.config)
        self.users = UserPolicy.for_runtime(self.settings.default_user)
        self.socket_path, self._socket_temp_dir = choose_socket_path(
            self.root, shared=self.users.switching)
        self.server = IpcServer(
            self.socket_path,
            socket_mode=0o666 if self.users.switching else 0o600,
            config=self.config,
            control_handler=LocalControlHandler(self),
            on_iot_core_publish=self._on_iot_core_publish,
            on_state_change=self._on_reported_state,
        )
        self.supervisor = Supervisor(
            [], self.root, env_for=self._component_env,
            base_env=nucleus_environment(self.settings.thing_name, self.settings.region,
                                         nucleus_version=DEFAULT_NUCLEUS_VERSION),
            on_state_change=self._on_lifecycle_state,
            settings=dataclasses.replace(self.settings.runner, users=self.users),
        )
        self.services = NucleusServices(self.server.nucleus, self.supervisor,
                                        self.settings.policies, self.logs_dir)
        self.cli_token: str | None = None
        self._log_handler: logging.Handler | None = None
        self._lock = threading.Lock()
        self._state_changed = threading.Condition(self._lock)
        self._reported: dict[str, str] = {}
        self._report_counts: dict[tuple[str, str], int] = {}  # UpdateState calls seen
        self._errors_seen: dict[str, int] = {}
        self._versions: dict[str, str] = {}
        self._deployments: dict[str, LocalDeploymentRecord] = {}
        self._cancel_requested: set[str] = set()
        self._queue: queue.Queue[LocalDeploymentRecord | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._closing = threading.Event()
        self._started = False
        self._closed = False
        self._iot_core_lock = threading.Lock()
        self._records_file_lock = threading.Lock()
        self._load_deployment_records()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalRuntime:
        if self._started:
            raise RuntimeError("the runtime is already started")
        self._started = True
        self._log_handler = setup_runtime_logging(self.root)
        log.info("starting the ggic local runtime at %s (platform %s, thing %s)", self.root,
                 self.platform, self.settings.thing_name)
        self.users.log_decision()
        if self._socket_temp_dir is not None:
            log.warning("%s is too long for a Unix socket path; the IPC socket is %s",
                        self.root / SOCKET_NAME, self.socket_path)
        self.server.start()
        self.cli_token = self.server.register_component(
            CLI_COMPONENT, access_control=CLI_ACCESS_CONTROL, cli=True)
        write_private_json(self.cli_token_file, {
            "cli_auth_token": self.cli_token, "domain_socket_path": str(self.socket_path),
            "pid": os.getpid()})
        self._worker = threading.Thread(target=self._deployment_loop, daemon=True,
                                        name="ggic-local-deployments")
        self._worker.start()
        if self.settings.resume and self.deployer.root_components:
            log.info("resuming the last deployment: %s", self.deployer.root_components)
            self.submit_deployment(DeploymentRequest())
        return self

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop every component (reverse dependency order), then the IPC server."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self.services.close()
        self._queue.put(None)
        if self._worker is not None:
            self._worker.join(timeout)
        states = self.supervisor.close(timeout)
        if states:
            log.info("components stopped: %s",
                     ", ".join(f"{n} {s.value}" for n, s in states.items()))
        self.server.close()
        if self.cli_token is not None:  # ours (not another runtime's, if start() failed)
            with contextlib.suppress(FileNotFoundError):
                self.cli_token_file.unlink()
        if self._socket_temp_dir is not None:
            shutil.rmtree(self._socket_temp_dir, ignore_errors=True)
        log.info("the ggic local runtime at %s stopped", self.root)
        if self._log_handler is not None:
            logging.getLogger("ggic.local").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- deployments -----------------------------------------------------------------------

    def submit_deployment(self, request: DeploymentRequest) -> LocalDeploymentRecord:
        """Queue a deployment; returns its record at once (status QUEUED)."""
        if not self._started or self._closing.is_set():
            raise RuntimeError("the runtime is not running")
        record = LocalDeploymentRecord(str(uuid.uuid4()), request, datetime.now(timezone.utc))
        with self._lock:
            self._deployments[record.deployment_id] = record
        self._save_deployment_records()
        log.info("local deployment %s queued", record.deployment_id)
        self._queue.put(record)
        return record

    def deploy(self, request: DeploymentRequest, timeout: float | None = None
               ) -> LocalDeploymentRecord:
        """Queue a deployment and wait until it has SUCCEEDED or FAILED."""
        record = self.submit_deployment(request)
        return self.wait_for_deployment(record.deployment_id, timeout)

    def deployment(self, deployment_id: str) -> LocalDeploymentRecord:
        with self._lock:
            record = self._deployments.get(deployment_id)
        if record is None:
            raise NoSuchDeployment(deployment_id)
        return dataclasses.replace(record)

    def deployments(self) -> list[LocalDeploymentRecord]:
        with self._lock:
            return [dataclasses.replace(r) for r in self._deployments.values()]

    def cancel_deployment(self, deployment_id: str) -> str:
        """Cancel a QUEUED or IN_PROGRESS deployment (the greengrass-cli's
        CancelLocalDeployment); returns its answer's message. A deployment in progress stops
        where it is (before its changes if it has not applied them yet; otherwise they stay,
        as in the nucleus's DeploymentService.cancelCurrentDeployment)."""
        with self._state_changed:
            record = self._deployments.get(deployment_id)
            if record is None:
                raise NoSuchDeployment(deployment_id)
            if record.finished:
                return "Cancellation request is not processed because deployment is already " \
                       "finished"
            if record.status == DeploymentStatus.QUEUED:
                record.status = DeploymentStatus.CANCELED
                self._state_changed.notify_all()
            else:
                self._cancel_requested.add(deployment_id)
                self.services.cancellations.request(deployment_id)  # ends a wait for deferrals
        if record.status == DeploymentStatus.CANCELED:
            self._save_deployment_records()
        log.warning("local deployment %s: cancellation requested", deployment_id)
        return f"Cancel request submitted. Deployment ID: {deployment_id}"

    def _cancelled(self, record: LocalDeploymentRecord) -> bool:
        with self._lock:
            return record.deployment_id in self._cancel_requested

    def wait_for_deployment(self, deployment_id: str, timeout: float | None = None
                            ) -> LocalDeploymentRecord:
        """Wait until the deployment has finished (or ``timeout``); returns its record."""
        self.deployment(deployment_id)
        with self._state_changed:
            self._state_changed.wait_for(
                lambda: self._deployments[deployment_id].finished or self._closing.is_set(),
                timeout)
        return self.deployment(deployment_id)

    def _deployment_loop(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            if record.status == DeploymentStatus.CANCELED:
                log.info("local deployment %s was cancelled before it ran", record.deployment_id)
                continue
            if self._closing.is_set():
                self._finish(record, DeploymentStatus.FAILED, "FAILED_NO_STATE_CHANGE",
                             "the runtime stopped before the deployment ran", ("CLOSED",))
                continue
            try:
                self._run_deployment(record)
            except Exception as exc:  # a bug: report it on the deployment, keep serving
                log.exception("local deployment %s failed", record.deployment_id)
                self._finish(record, DeploymentStatus.FAILED, "FAILED_ROLLBACK_NOT_REQUESTED",
                             f"internal error: {exc}", ("INTERNAL_ERROR",))

    def _run_deployment(self, record: LocalDeploymentRecord) -> None:
        self._set_status(record, DeploymentStatus.IN_PROGRESS)
        log.info("local deployment %s in progress", record.deployment_id)
        request = dataclasses.replace(
            record.request,
            stand_ins=tuple(self.settings.stand_ins) + tuple(record.request.stand_ins))
        try:
            plan = self.deployer.plan(request)
        except DeploymentError as exc:
            log.error("local deployment %s failed: %s", record.deployment_id, exc)
            self._finish(record, DeploymentStatus.FAILED, "FAILED_NO_STATE_CHANGE", str(exc),
                         ("REQUEST_ERROR",))
            return
        plan = dataclasses.replace(plan, deployment_id=record.deployment_id)
        if self._cancelled(record):
            self._finish(record, DeploymentStatus.CANCELED, None, None, ())
            return
        with self._lock:
            record.components = tuple(plan.names)
        if not self._ask_components(record, plan):
            return
        states = self.supervisor.states()
        broken = [n for n in plan.names if states.get(n) == State.BROKEN]
        reinstall = sorted(set(plan.needs_reinstall()) | set(broken))
        for planned in plan.components:
            log.info("deployment %s: %s %s (%s)", record.deployment_id, planned.name,
                     planned.version, planned.change)
        self.supervisor.update(plan.component_specs(), reinstall=reinstall,
                               before_start=lambda: self._apply(plan))
        for name in plan.removed:
            self._forget_component(name)
        self.services.post_update(record.deployment_id)
        self._wait_for_components(record, plan)

    def _ask_components(self, record: LocalDeploymentRecord, plan: DeploymentPlan) -> bool:
        """Validation, then the update policy (nucleus_services); False if that ended it."""
        with self._lock:
            deployed = dict(self._versions)
        outcome = self.services.ask_components(plan, record.deployment_id, deployed,
                                               lambda: self._cancelled(record))
        if outcome is not None:
            self._finish(record, *outcome)
        return outcome is None

    def _apply(self, plan: DeploymentPlan) -> None:
        """Between stopping the changed components and starting them: files, configuration,
        IPC registrations."""
        self.deployer.apply(plan)  # writes the configuration store: subscribers hear of it
        for planned in plan.components:
            if not planned.builtin:
                self._register(planned.name)
        with self._lock:
            self._versions = {c.name: c.version for c in plan.components}

    def _wait_for_components(self, record: LocalDeploymentRecord, plan: DeploymentPlan) -> None:
        """SUCCEEDED once every component is RUNNING or FINISHED and has stayed so, without an
        error, for ``stable_seconds``; FAILED when one is BROKEN or on timeout."""
        names = plan.names
        deadline = time.monotonic() + self.settings.deployment_timeout
        failure = None
        while failure is None:
            failure = self._wait_until_settled(record, names, deadline)
            if failure is not None:
                break
            broken = [n for n in names if self.supervisor.state(n) == State.BROKEN]
            if broken:
                failure = ("; ".join(f"{n} is BROKEN (see {component_log_path(self.root, n)})"
                                     for n in broken), "COMPONENT_BROKEN")
                break
            errors = self._error_counts(names)
            if self._closing.wait(self.settings.stable_seconds):
                continue  # reported by _wait_until_settled
            states = self.supervisor.states()
            if self._error_counts(names) == errors and \
                    all(states.get(n) in SETTLED_STATES for n in names):
                self._finish(record, DeploymentStatus.SUCCEEDED, "SUCCESSFUL", None, ())
                return
        reason, error_type = failure
        if error_type == DeploymentStatus.CANCELED:  # its changes stay, as in the nucleus
            self._finish(record, DeploymentStatus.CANCELED, None, None, ())
            return
        self._finish(record, DeploymentStatus.FAILED, "FAILED_ROLLBACK_NOT_REQUESTED", reason,
                     (error_type,))

    def _wait_until_settled(self, record: LocalDeploymentRecord, names: Sequence[str],
                            deadline: float) -> tuple[str, str] | None:
        """None once every component is RUNNING, FINISHED or BROKEN; else why not."""
        while not self._closing.is_set():
            if self._cancelled(record):
                return "cancelled", DeploymentStatus.CANCELED
            if self.supervisor.wait_for(lambda s: all(s.get(n) in SETTLED_STATES for n in names),
                                        min(0.2, max(0.0, deadline - time.monotonic()))):
                return None
            if time.monotonic() >= deadline:
                states = self.supervisor.states()
                pending = ", ".join(f"{n} is {states[n].value}" for n in names
                                    if states.get(n) not in SETTLED_STATES)
                return (f"components did not settle within "
                        f"{self.settings.deployment_timeout:g} s: {pending}",
                        "COMPONENT_UPDATE_ERROR")
        return "the runtime stopped during the deployment", "CLOSED"

    def _error_counts(self, names: Sequence[str]) -> dict[str, int]:
        with self._lock:
            return {n: self._errors_seen.get(n, 0) for n in names}

    def _set_status(self, record: LocalDeploymentRecord, status: str) -> None:
        with self._state_changed:
            record.status = status
            self._state_changed.notify_all()
        self._save_deployment_records()

    def _finish(self, record: LocalDeploymentRecord, status: str, detailed: str | None,
                error: str | None, error_types: Sequence[str]) -> None:
        with self._state_changed:
            self._cancel_requested.discard(record.deployment_id)
            record.status = status
            record.detailed_status = detailed
            record.error = error
            record.error_types = tuple(error_types)
            self._state_changed.notify_all()
        self._save_deployment_records()
        if status == DeploymentStatus.SUCCEEDED:
            log.info("local deployment %s SUCCEEDED", record.deployment_id)
        elif status == DeploymentStatus.CANCELED:
            log.warning("local deployment %s CANCELED (changes it applied stay; deploy again "
                        "to revert them)", record.deployment_id)
        else:
            log.error("local deployment %s FAILED: %s", record.deployment_id, error)

    @property
    def _records_file(self) -> Path:
        return self.config_dir / DEPLOYMENTS_FILE

    def _load_deployment_records(self) -> None:
        for record in load_deployment_records(self._records_file):
            self._deployments[record.deployment_id] = record

    def _save_deployment_records(self) -> None:
        with self._records_file_lock:  # writers on several threads; the newest state wins
            with self._lock:
                records = list(self._deployments.values())
            save_deployment_records(self._records_file, records)

    # --- components ------------------------------------------------------------------------

    def components(self) -> list[ComponentStatus]:
        """Every deployed component, dependencies first."""
        states = self.supervisor.states()
        with self._lock:
            versions = dict(self._versions)
            reported = dict(self._reported)
        configs = {n: self.config.to_dict(n) for n in states}
        return [ComponentStatus(n, versions.get(n, ""), s, reported.get(n), configs[n])
                for n, s in states.items()]

    def component(self, name: str) -> ComponentStatus:
        for status in self.components():
            if status.name == name:
                return status
        raise KeyError(name)

    def state(self, name: str) -> State:
        return self.supervisor.state(name)

    def reported_state(self, name: str) -> str | None:
        with self._lock:
            return self._reported.get(name)

    def wait_for_state(self, name: str, states: State | Sequence[State],
                       timeout: float | None = None) -> bool:
        wanted = {states} if isinstance(states, State) else set(states)
        return self.supervisor.wait_for(lambda s: s.get(name) in wanted, timeout)

    def wait_for_report(self, name: str, state: str = "RUNNING",
                        timeout: float | None = None) -> bool:
        """Wait until the component reports ``state`` with UpdateState in its current run, or
        has reported it since this call (a reported ERRORED ends the run that reported it at
        once). False on timeout, or as soon as the component is BROKEN."""
        def reported() -> bool:  # now, or since the call (an ERRORED run ends at once)
            return (self._reported.get(name) == state
                    or self._report_counts.get((name, state), 0) > before)

        def done() -> bool:
            if reported():
                return True
            try:
                return self.supervisor.state(name) == State.BROKEN
            except KeyError:
                return False

        with self._state_changed:
            before = self._report_counts.get((name, state), 0)
            self._state_changed.wait_for(lambda: done() or self._closing.is_set(), timeout)
            return reported()

    def restart(self, name: str) -> bool:
        """Stop and start the component again; False if it can't be (e.g. BROKEN)."""
        return self.supervisor.restart(name)

    def stop_component(self, name: str, timeout: float | None = 30.0) -> State:
        return self.supervisor.stop(name, timeout)

    def log_path(self, name: str | None = None) -> Path:
        """``<root>/logs/<name>.log``, or greengrass.log for None."""
        return runtime_log_path(self.root) if name is None else component_log_path(self.root,
                                                                                   name)

    # --- pub/sub and IoT Core ----------------------------------------------------------------

    def publish(self, topic: str, message: Any) -> int:
        return self.server.publish(topic, message)

    def subscribe(self, topic_filter: str, callback: Callable[[str, Any], None]
                  ) -> Callable[[], None]:
        return self.server.subscribe(topic_filter, callback)

    def iot_core_messages(self) -> list[dict[str, Any]]:
        return read_iot_core_log(self.iot_core_log)

    def _on_iot_core_publish(self, record: Mapping[str, Any]) -> None:
        line = iot_core_line(record)
        with self._iot_core_lock, open_private_append(self.iot_core_log) as out:
            out.write(json.dumps(line) + "\n")
        log.info("AWS IoT Core <- %s: %s (qos %s, from %s)", line["topic"],
                 shorten(line["payload"]), line["qos"], line["component"])

    # --- glue callbacks ----------------------------------------------------------------------

    def _component_env(self, name: str) -> dict[str, str]:
        env = self.server.component_env(name)
        if self.settings.reuse_venv:
            env[REUSE_VENV_ENV] = self.settings.reuse_venv
        return env

    def _register(self, name: str) -> None:
        """Register (or refresh) a deployed component with IPC: its token and its policies (its
        configuration is already in the shared store)."""
        access_control = self.config.to_dict(name).get("accessControl")
        if name in self.server.components():
            self.server.set_access_control(name, access_control)
        else:
            self.server.register_component(name, access_control=access_control)

    def _forget_component(self, name: str) -> None:
        self.server.unregister_component(name)
        with self._lock:
            self._reported.pop(name, None)
        log.info("%s removed", name)

    def _on_reported_state(self, name: str, state: str) -> None:
        """UpdateState from a component (IPC callback thread)."""
        with self._state_changed:
            self._reported[name] = state
            self._report_counts[(name, state)] = self._report_counts.get((name, state), 0) + 1
            self._state_changed.notify_all()
        if state == "ERRORED":
            try:
                handled = self.supervisor.report_errored(
                    name, "the component reported ERRORED (UpdateState)")
            except KeyError:
                return
            if not handled:
                log.warning("%s reported ERRORED while not STARTING or RUNNING; ignored", name)
        elif state == "RUNNING":
            try:
                self.supervisor.report_running(name)  # STARTING (a Startup step) -> RUNNING
            except KeyError:
                return

    def _on_lifecycle_state(self, name: str, old: State, new: State) -> None:
        """A runner changed state (runner threads)."""
        if new != State.RUNNING:
            self.services.left_running(name)  # a paused component must be able to stop
        with self._state_changed:
            if new != State.RUNNING:
                self._reported.pop(name, None)  # what an earlier run reported
            if new in (State.ERRORED, State.BROKEN):
                self._errors_seen[name] = self._errors_seen.get(name, 0) + 1
            self._state_changed.notify_all()


