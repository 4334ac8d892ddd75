"""``ggic requester``: the com.custom.requester component, or a one-shot client for scripts."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..cli_options import add_config_flags, config_overrides
from ..config import ConfigError, RequesterConfig
from ..runtime_support import configure_logging, install_stop_signals

log = logging.getLogger(__name__)


def add_requester_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "requester",
        help="run the com.custom.requester component (needs Greengrass IPC)",
        description=(
            "Send a classification request for each image in ImageDirectory every "
            "InferenceInterval seconds over Greengrass IPC, and log each result as one line. "
            "With --once: one round, then exit (0 if every image got an ok result)."
        ),
    )
    parser.add_argument("images", nargs="*", type=Path, metavar="IMAGE",
                        help="classify these files instead of ImageDirectory (implies --once)")
    parser.add_argument("--once", action="store_true", help="one round, then exit")
    parser.add_argument("--json", action="store_true",
                        help="with --once: print each result as one JSON line on stdout")
    parser.add_argument("--no-ipc-config", action="store_true",
                        help="ignore the component configuration; use defaults and flags only")
    add_config_flags(parser, RequesterConfig)
    parser.set_defaults(handler=run_requester_command, component=True)


def run_requester_command(args: argparse.Namespace) -> int:
    if args.once or args.images:
        configure_logging(args.log_level)  # a one-shot tool: keep stdout for results
    from ..ipc import IpcClient, connect_error_hint
    from .service import RequesterService

    try:
        ipc = IpcClient()
    except Exception as exc:
        log.error("cannot connect to Greengrass IPC: %s. %s", exc, connect_error_hint())
        return 2
    service = RequesterService(ipc, config_overrides(args),
                               use_ipc_config=not args.no_ipc_config)
    try:
        service.start()
    except ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        ipc.close()
        return 2
    try:
        if args.once or args.images:
            outcomes = service.run_round(args.images or None)
            service.close()
            if args.json:
                for outcome in outcomes:
                    record = outcome.result.to_dict() if outcome.result else {
                        "request_id": outcome.request_id, "status": "no_result",
                        "problem": outcome.problem}
                    print(json.dumps({"image": str(outcome.image), **record}), flush=True)
            return 0 if outcomes and all(o.ok for o in outcomes) else 1
        if service.config.source:  # a camera, stream or video file (issue 12)
            return _serve_stream(ipc, service)
        install_stop_signals(service.stop)
        service.serve()
        return 0
    finally:
        ipc.close()


def _serve_stream(ipc: object, service: object) -> int:
    """The requester on a camera, stream or video file: see requester/stream.py."""
    from .stream import StreamService

    service.close()  # type: ignore[attr-defined]  # the folder requester's subscriptions
    try:
        stream = StreamService(ipc, service.read_config,  # type: ignore[attr-defined,arg-type]
                               use_ipc_config=service.use_ipc_config)  # type: ignore[attr-defined]
    except (ConfigError, OSError) as exc:
        log.error("cannot classify the stream: %s", exc)
        return 2
    install_stop_signals(stream.stop)
    return stream.serve()
