"""``ggic local iotcore pub`` / ``iotcore sub``: greengrass-cli's iotcore commands against the
local stand-in for AWS IoT Core (``iotcore_broker``).

As on a device, both go through the runtime's MQTT proxy with the CLI's token: ``pub`` is a
PublishToIoTCore (so components subscribed with SubscribeToIoTCore receive it, as when AWS IoT
Core delivers a cloud message), ``sub`` is a SubscribeToIoTCore that prints what components
publish to AWS IoT Core, live. ``ggic local iotcore`` without a subcommand still lists what was
recorded in ``<root>/logs/iotcore.jsonl``.
"""

from __future__ import annotations

import argparse
from typing import Any

from .cli_commands import _call, _client_command, _print_subscription, resolve_root


@_client_command
def run_iotcore_pub(args: argparse.Namespace) -> int:
    _call(resolve_root(args.root), "publish_to_iot_core", topic_name=args.topic,
          qos=str(args.qos), payload=args.message.encode("utf-8"))
    print(f"Published to AWS IoT Core topic {args.topic}")
    return 0


@_client_command
def run_iotcore_sub(args: argparse.Namespace) -> int:
    def show(event: Any) -> None:
        message = event.message
        text = bytes(message.payload or b"").decode("utf-8", errors="replace")
        print(f"Received new message on topic {message.topic_name}: {text}", flush=True)

    return _print_subscription(
        args, resolve_root(args.root), "AWS IoT Core topic",
        lambda client, on_event, on_closed: client.subscribe_to_iot_core(
            topic_name=args.topic, qos=str(args.qos), on_stream_event=on_event,
            on_stream_closed=on_closed),
        show)


def add_iotcore_subcommands(iotcore: argparse.ArgumentParser,
                            root: argparse.ArgumentParser) -> None:
    sub = iotcore.add_subparsers(dest="iotcore_command", metavar="IOTCORE_COMMAND")
    pub = sub.add_parser("pub", parents=[root], help="publish to AWS IoT Core (the local "
                         "stand-in): components subscribed with SubscribeToIoTCore receive it")
    pub.add_argument("-t", "--topic", required=True)
    pub.add_argument("-m", "--message", required=True)
    pub.add_argument("-q", "--qos", choices=["0", "1"], default="0")
    pub.set_defaults(handler=run_iotcore_pub)
    subscribe = sub.add_parser("sub", parents=[root], help="print what components publish to "
                               "AWS IoT Core on TOPIC (MQTT wildcards allowed), live")
    subscribe.add_argument("-t", "--topic", required=True)
    subscribe.add_argument("-q", "--qos", choices=["0", "1"], default="0")
    subscribe.add_argument("--count", type=int, default=None,
                           help="exit after this many messages (exit 1 if --timeout comes "
                                "first)")
    subscribe.add_argument("--timeout", type=float, default=None,
                           help="exit after this many seconds")
    subscribe.set_defaults(handler=run_iotcore_sub)
