"""What each ``ggic local`` command does (the parsers are in cli): ``start`` runs the runtime in
the foreground; the other commands are clients that connect like greengrass-cli
(``<root>/cli.token``) and call the greengrass-cli IPC operations through the real awsiotsdk
client, or read the root's files (``logs``, ``iotcore``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable

from .deployment_options import deployment_options
from .runtime import CLI_TOKEN_FILE, IOT_CORE_LOG, default_root

log = logging.getLogger("ggic.local.cli")

PID_FILE = "ggic-local.pid"
CONNECT_TIMEOUT_S = 5.0
FINAL_STATUSES = ("SUCCEEDED", "FAILED", "CANCELED")


class CliError(Exception):
    """A client command can't do its job; the message says why and what to do."""


# --- connecting like greengrass-cli -------------------------------------------------------------


def resolve_root(value: Path | None) -> Path:
    return (value or default_root()).expanduser().absolute()


def read_cli_info(root: Path) -> dict[str, str]:
    path = root / CLI_TOKEN_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"no ggic local runtime is running at {root} (no {CLI_TOKEN_FILE}); "
                       f"start one with `ggic local start --root {root}`") from None
    except (OSError, ValueError) as exc:
        raise CliError(f"can't read {path}: {exc}") from None
    if not isinstance(info, dict) or not info.get("cli_auth_token") \
            or not info.get("domain_socket_path"):
        raise CliError(f"{path} is not a ggic local CLI token file")
    return info


@contextlib.contextmanager
def connect(root: Path) -> Iterator[Any]:
    """A ``GreengrassCoreIPCClientV2`` connected to the runtime at ``root`` with the CLI token."""
    import awsiot.greengrasscoreipc
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    info = read_cli_info(root)
    socket_path = info["domain_socket_path"]
    if not os.path.exists(socket_path):
        raise CliError(f"no ggic local runtime is running at {root} ({socket_path} does not "
                       f"exist); start one with `ggic local start --root {root}`")
    try:
        connection = awsiot.greengrasscoreipc.connect(
            ipc_socket=socket_path, authtoken=info["cli_auth_token"], timeout=CONNECT_TIMEOUT_S)
    except Exception as exc:
        raise CliError(f"no ggic local runtime is answering at {root} (can't connect to "
                       f"{socket_path}: {type(exc).__name__}: {exc}); start one with "
                       f"`ggic local start --root {root}`") from None
    client = GreengrassCoreIPCClientV2(client=connection)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()


def _ipc_error(exc: BaseException) -> CliError:
    message = getattr(exc, "message", None) or str(exc) or ""
    return CliError(f"{type(exc).__name__}: {message}")


def _call(root: Path, operation: str, **kwargs: Any) -> Any:
    with connect(root) as client:
        try:
            return getattr(client, operation)(**kwargs)
        except Exception as exc:
            raise _ipc_error(exc) from None


def _client_command(handler: Any) -> Any:
    """Turn CliError into a message and exit 1; keep the SDK's INFO chatter off the output."""
    def run(args: argparse.Namespace) -> int:
        logging.getLogger("awsiot").setLevel(logging.WARNING)
        try:
            return int(handler(args) or 0)
        except CliError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def run_start(args: argparse.Namespace) -> int:
    from .deployment import DEFAULT_THING_NAME
    from .deployment_policies import DeploymentPolicies
    from .platform import parse_platform_overrides
    from .run_with import RunWithError
    from .runtime import LocalRuntime, RuntimeSettings

    root = resolve_root(args.root)
    try:
        overrides: dict[str, str] = {}
        for item in args.platform_overrides:
            overrides.update(parse_platform_overrides(item))
    except ValueError as exc:
        print(f"error: --platform-override: {exc}", file=sys.stderr)
        return 2
    for folder in args.stand_ins:
        if not folder.is_dir():
            print(f"error: --stand-in {folder} is not a folder", file=sys.stderr)
            return 2
    settings = RuntimeSettings(
        thing_name=args.thing_name or DEFAULT_THING_NAME, region=args.region,
        platform_overrides=overrides,
        stand_ins=tuple(f.absolute() for f in args.stand_ins),
        reuse_venv=None if args.build_venvs else sys.prefix, resume=not args.no_resume,
        policies=DeploymentPolicies(notify_components=not args.skip_notify_components,
                                    component_update_timeout=args.component_update_timeout),
        default_user=args.default_user)
    running = _running_pid(root)
    if running is not None:
        print(f"error: a ggic local runtime (pid {running}) is already running at {root}",
              file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    try:
        runtime = LocalRuntime(root, settings)
    except RunWithError as exc:
        print(f"error: --default-user: {exc}", file=sys.stderr)
        return 2
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    pid_file = root / PID_FILE
    try:
        try:
            runtime.start()
        except OSError as exc:
            print(f"error: can't start the runtime at {root}: {exc}", file=sys.stderr)
            return 1
        pid_file.write_text(str(os.getpid()), encoding="utf-8")
        print(f"ggic local runtime running at {root} (IPC socket {runtime.socket_path}); "
              "stop it with Ctrl-C or `ggic local stop`", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        runtime.close()
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print("ggic local runtime stopped", flush=True)
    return 0


def _running_pid(root: Path) -> int | None:
    """The pid in <root>/ggic-local.pid if that process still runs ggic."""
    try:
        pid = int((root / PID_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        with contextlib.suppress(OSError):
            if b"ggic" not in cmdline.read_bytes():
                return None  # the pid was reused by another program
    return pid


def run_stop(args: argparse.Namespace) -> int:
    root = resolve_root(args.root)
    pid = _running_pid(root)
    if pid is None:
        with contextlib.suppress(FileNotFoundError):
            (root / PID_FILE).unlink()
        print(f"error: no ggic local runtime is running at {root}", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if _running_pid(root) is None:
            print(f"stopped the ggic local runtime at {root} (pid {pid})")
            return 0
        time.sleep(0.2)
    print(f"error: the runtime (pid {pid}) is still running after {args.timeout:g} s",
          file=sys.stderr)
    return 1


@_client_command
def run_deploy(args: argparse.Namespace) -> int:
    from .deployment import DeploymentError, parse_merge_arguments, parse_update_config

    root = resolve_root(args.root)
    try:
        merge = parse_merge_arguments(args.merge)
        update = parse_update_config(args.update_config) if args.update_config else {}
    except DeploymentError as exc:
        raise CliError(str(exc)) from None
    try:
        options = deployment_options(args)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    remove = [n.strip() for item in args.remove for n in item.split(",") if n.strip()]
    configuration = {name: _update_document(u) for name, u in update.items()}
    response = _call(
        root, "create_local_deployment",
        recipe_directory_path=str(args.recipe_dir.expanduser().absolute())
        if args.recipe_dir else None,
        artifacts_directory_path=str(args.artifact_dir.expanduser().absolute())
        if args.artifact_dir else None,
        root_component_versions_to_add=merge or None,
        root_components_to_remove=remove or None,
        component_to_configuration=configuration or None,
        **options)
    deployment_id = response.deployment_id
    print(f"Local deployment submitted! Deployment Id: {deployment_id}", flush=True)
    if not args.wait:
        return 0
    deployment = wait_for_deployment(root, deployment_id, args.timeout)
    _print_deployment(deployment)
    return 0 if deployment.status == "SUCCEEDED" else 1


def _update_document(update: Any) -> dict[str, Any]:
    document: dict[str, Any] = {}
    if update.merge:
        document["MERGE"] = dict(update.merge)
    if update.reset:
        document["RESET"] = list(update.reset)
    return document


def wait_for_deployment(root: Path, deployment_id: str, timeout: float) -> Any:
    """Poll GetLocalDeploymentStatus until the deployment has finished."""
    deadline = time.monotonic() + timeout
    with connect(root) as client:
        while True:
            try:
                deployment = client.get_local_deployment_status(
                    deployment_id=deployment_id).deployment
            except Exception as exc:
                raise _ipc_error(exc) from None
            if deployment.status in FINAL_STATUSES:
                return deployment
            if time.monotonic() >= deadline:
                raise CliError(f"deployment {deployment_id} is still {deployment.status} after "
                               f"{timeout:g} s")
            time.sleep(0.25)


def _print_deployment(deployment: Any) -> None:
    print(f"{deployment.deployment_id}: {deployment.status}")
    details = deployment.deployment_status_details
    if details is not None and details.deployment_failure_cause:
        print(f"    {details.deployment_failure_cause}")


@_client_command
def run_deployment_status(args: argparse.Namespace) -> int:
    response = _call(resolve_root(args.root), "get_local_deployment_status",
                     deployment_id=args.deployment_id)
    _print_deployment(response.deployment)
    return 0


@_client_command
def run_deployment_cancel(args: argparse.Namespace) -> int:
    response = _call(resolve_root(args.root), "cancel_local_deployment",
                     deployment_id=args.deployment_id)
    print(response.message)
    return 0


@_client_command
def run_deployment_list(args: argparse.Namespace) -> int:
    response = _call(resolve_root(args.root), "list_local_deployments")
    for deployment in response.local_deployments or []:
        created = f" (created {deployment.created_on})" if deployment.created_on else ""
        print(f"{deployment.deployment_id}: {deployment.status}{created}")
    return 0


def _print_component(component: Any) -> None:
    print(f"Component Name: {component.component_name}")
    print(f"    Version: {component.version}")
    print(f"    State: {component.state}")
    print(f"    Configuration: {json.dumps(component.configuration, separators=(',', ':'))}")


@_client_command
def run_component_list(args: argparse.Namespace) -> int:
    response = _call(resolve_root(args.root), "list_components")
    print("Components currently running in Greengrass:")
    for component in response.components or []:
        _print_component(component)
    return 0


@_client_command
def run_component_details(args: argparse.Namespace) -> int:
    response = _call(resolve_root(args.root), "get_component_details",
                     component_name=args.name)
    _print_component(response.component_details)
    return 0


@_client_command
def run_component_action(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.names.replace("&", ",").split(",") if n.strip()]
    failed = 0
    with connect(resolve_root(args.root)) as client:
        for name in names:
            try:
                if args.action == "restart":
                    response = client.restart_component(component_name=name)
                    status = response.restart_status
                else:
                    response = client.stop_component(component_name=name)
                    status = response.stop_status
            except Exception as exc:
                print(f"{name}: {_ipc_error(exc)}", file=sys.stderr)
                failed += 1
                continue
            message = f" ({response.message})" if response.message else ""
            print(f"{name}: {args.action} {status}{message}")
            failed += status != "SUCCEEDED"
    return 1 if failed else 0


@_client_command
def run_pub(args: argparse.Namespace) -> int:
    from awsiot.greengrasscoreipc.model import BinaryMessage, PublishMessage

    message = PublishMessage(binary_message=BinaryMessage(message=args.message.encode("utf-8")))
    _call(resolve_root(args.root), "publish_to_topic", topic=args.topic,
          publish_message=message)
    print(f"Published to topic {args.topic}")
    return 0


def _message_text(event: Any) -> tuple[str, str]:
    if event.json_message is not None:
        context = event.json_message.context
        return (context.topic if context else "",
                json.dumps(event.json_message.message, separators=(",", ":")))
    context = event.binary_message.context
    return (context.topic if context else "",
            bytes(event.binary_message.message or b"").decode("utf-8", errors="replace"))


def _print_subscription(args: argparse.Namespace, root: Path, what: str,
                        subscribe: Callable[[Any, Callable[[Any], None], Callable[[], None]], Any],
                        show: Callable[[Any], None]) -> int:
    """``sub`` and ``iotcore sub``: ``subscribe(client, on_event, on_closed)`` opens the stream,
    ``show`` prints each event, until ``args.count`` events or ``args.timeout`` seconds (exit 1 if
    fewer than ``args.count`` came); a stream the runtime closes is a CliError."""
    received: queue.Queue[Any] = queue.Queue()
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    with connect(root) as client:
        try:
            _response, operation = subscribe(client, received.put, lambda: received.put(None))
        except Exception as exc:
            raise _ipc_error(exc) from None
        print(f"Successfully subscribed to {what}: {args.topic}", file=sys.stderr, flush=True)
        count = 0
        try:
            while args.count is None or count < args.count:
                wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if wait <= 0:
                    break
                try:
                    event = received.get(timeout=wait)
                except queue.Empty:
                    continue
                if event is None:  # the runtime stopped (or closed the stream): nothing will come
                    raise CliError(f"the subscription to {args.topic} was closed by the runtime "
                                   f"at {root} (stopped?) after {count} message(s)")
                show(event)
                count += 1
        except KeyboardInterrupt:
            return 0
        finally:
            with contextlib.suppress(Exception):
                operation.close()
    return 1 if args.count is not None and count < args.count else 0


@_client_command
def run_sub(args: argparse.Namespace) -> int:
    def show(item: tuple[str, str]) -> None:
        topic, text = item
        topic = topic or args.topic
        if args.json:
            try:
                value = json.loads(text)
            except ValueError:
                value = text
            print(json.dumps({"topic": topic, "message": value}), flush=True)
        else:
            print(f"Received new message on topic {topic}: {text}", flush=True)

    # every `ggic local` command has the CLI's identity: receive our own `pub` too
    return _print_subscription(
        args, resolve_root(args.root), "topic",
        lambda client, on_event, on_closed: client.subscribe_to_topic(
            topic=args.topic, receive_mode="RECEIVE_ALL_MESSAGES",
            on_stream_event=lambda e: on_event(_message_text(e)), on_stream_closed=on_closed),
        show)


def run_logs(args: argparse.Namespace) -> int:
    from .component_logs import component_log_path, logs_dir, runtime_log_path

    root = resolve_root(args.root)
    path = runtime_log_path(root) if args.name is None else component_log_path(root, args.name)
    if not path.is_file():
        available = sorted(p.stem for p in logs_dir(root).glob("*.log"))
        hint = f"; logs there: {', '.join(available)}" if available else ""
        print(f"error: no log {path}{hint}", file=sys.stderr)
        return 1
    with path.open("r", encoding="utf-8", errors="replace") as stream:
        lines = stream.readlines()
        if args.lines is not None:
            lines = lines[-args.lines:] if args.lines > 0 else []
        sys.stdout.writelines(lines)
        sys.stdout.flush()
        if not args.follow:
            return 0
        try:
            while True:
                line = stream.readline()
                if line:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return 0


def run_iotcore(args: argparse.Namespace) -> int:
    from .component_logs import logs_dir
    from .iot_core_log import read_iot_core_log

    root = resolve_root(args.root)
    records = read_iot_core_log(logs_dir(root) / IOT_CORE_LOG)
    if not records and not args.json:
        print(f"no messages were published to AWS IoT Core at {root}", file=sys.stderr)
    for record in records:
        if args.json:
            print(json.dumps(record))
        else:
            print(_iot_core_text(record))
    return 0


def _iot_core_text(record: Mapping[str, Any]) -> str:
    return (f"{record.get('time', '')} {record.get('topic')} (qos {record.get('qos')}, from "
            f"{record.get('component')}): {record.get('payload')}")


def run_stand_in_modelstore(args: argparse.Namespace) -> int:
    from .stand_ins import MODELSTORE_VERSION, StandInError, write_modelstore_stand_in

    try:
        stand_in = write_modelstore_stand_in(args.out, args.model,
                                             version=args.version or MODELSTORE_VERSION,
                                             architecture=args.arch)
    except StandInError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {stand_in.recipe}")
    print(f"  and variant.DLR's stand-in ({stand_in.folder / 'recipes'})")
    if stand_in.model_dir is not None:
        print(f"  model: {stand_in.model_dir}")
    else:
        print("  no model: set com.custom.ImageClassifier's ModelDir in the deployment")
    print(f"use it with: ggic local start --stand-in {stand_in.folder}")
    return 0
