"""A stand-in for AWS's ``aws.greengrass.Cloudwatch`` component (v3), for ``ggic local``.

The real component subscribes to ``cloudwatch/metric/put``, takes one metric per message
(``{"request": {"namespace", "metricData": {"metricName", "value", "dimensions",
"timestamp", "unit"}}}``, checked against PutMetricData's rules) and batches them to
CloudWatch, publishing failures on ``cloudwatch/metric/put/status``. Nothing can reach
CloudWatch here, so this stand-in, a real component with the same name, version line, topics
and accessControl, runs :func:`main` through IPC: it validates every message against the
documented format, answers invalid ones on the status topic as the real one does
(``{"response": {"status": "fail", "error": "InvalidInputException", ...}}``) and records
every message, valid or not, in ``<root>/logs/cloudwatch.jsonl`` (``ggic local metrics``
prints them).

``ggic local stand-in cloudwatch --out DIR`` writes it in GDK's build layout; give the folder
to ``ggic local start --stand-in DIR`` and deploy ``aws.greengrass.Cloudwatch`` beside the
classifier. It runs with this machine's Python (the one that wrote it) and ggic.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import queue
import re
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CLOUDWATCH_COMPONENT = "aws.greengrass.Cloudwatch"
CLOUDWATCH_VERSION = "3.0.0"
INPUT_TOPIC = "cloudwatch/metric/put"
OUTPUT_TOPIC = "cloudwatch/metric/put/status"
RECORD_FILE = "cloudwatch.jsonl"
#: The record file is rotated (to .1) beyond this size, so it stays bounded.
MAX_RECORD_BYTES = 20 * 1024 * 1024
UNITS = frozenset((
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
    "Gigabits/Second", "Terabits/Second", "Count/Second", "None"))
_REQUEST_KEYS = frozenset(("namespace", "metricData"))
_DATA_KEYS = frozenset(("metricName", "value", "dimensions", "timestamp", "unit"))
_MIN_VALUE, _MAX_VALUE = 8.515920e-109, 1.174271e+108
_NAMESPACE_RE = re.compile(r"^[^:].*$", re.DOTALL)


# --- the documented input format ---------------------------------------------------------------


def validate_metric_message(message: Any) -> list[str]:
    """What is wrong with one input message (empty: valid), per the component's documentation
    and PutMetricData's limits."""
    if not isinstance(message, Mapping):
        return ["the message is not a JSON object"]
    problems = [f"unknown top-level key {k!r}" for k in message if k != "request"]
    request = message.get("request")
    if not isinstance(request, Mapping):
        return problems + ["'request' must be an object"]
    problems += [f"unknown key request.{k!r}" for k in request if k not in _REQUEST_KEYS]
    namespace = request.get("namespace")
    if not isinstance(namespace, str) or not namespace or len(namespace) > 255 or \
            not _NAMESPACE_RE.match(namespace):
        problems.append("request.namespace must be 1-255 characters, not starting with ':'")
    elif namespace.startswith("AWS/"):
        problems.append("request.namespace must not start with the reserved 'AWS/'")
    data = request.get("metricData")
    if not isinstance(data, Mapping):
        return problems + ["request.metricData must be an object (one metric per message)"]
    problems += [f"unknown key metricData.{k!r}" for k in data if k not in _DATA_KEYS]
    name = data.get("metricName")
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        problems.append("metricData.metricName must be a string of 1-255 characters")
    problems += _value_problems(data.get("value"))
    if "dimensions" in data:
        problems += _dimension_problems(data["dimensions"])
    if "timestamp" in data:
        stamp = data["timestamp"]
        if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or \
                not math.isfinite(stamp) or stamp < 0:
            problems.append("metricData.timestamp must be seconds since the epoch (a number)")
        elif stamp > 1e11:
            problems.append("metricData.timestamp looks like milliseconds: it must be seconds")
    if "unit" in data and data["unit"] not in UNITS:
        problems.append(f"metricData.unit {data['unit']!r} is not a CloudWatch unit")
    return problems


def _value_problems(value: Any) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ["metricData.value must be a number"]
    if not math.isfinite(value):
        return ["metricData.value must be finite (no NaN or infinity)"]
    if value != 0 and not _MIN_VALUE <= abs(value) <= _MAX_VALUE:
        return [f"metricData.value {value!r} is outside CloudWatch's range"]
    return []


def _dimension_problems(dimensions: Any) -> list[str]:
    if not isinstance(dimensions, list):
        return ["metricData.dimensions must be a list"]
    problems = []
    if len(dimensions) > 10:
        problems.append("metricData.dimensions: at most 10")
    names = []
    for i, dim in enumerate(dimensions):
        if not isinstance(dim, Mapping) or set(dim) - {"name", "value"}:
            problems.append(f"metricData.dimensions[{i}] must be {{name, value}}")
            continue
        name, value = dim.get("name"), dim.get("value")
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            problems.append(f"metricData.dimensions[{i}].name must be 1-255 characters")
        if not isinstance(value, str) or not 1 <= len(value) <= 1024:
            problems.append(f"metricData.dimensions[{i}].value must be 1-1024 characters")
        names.append(name)
    if len(set(map(str, names))) != len(names):
        problems.append("metricData.dimensions: a name appears twice")
    return problems


# --- the stand-in component --------------------------------------------------------------------


def cloudwatch_recipe(python: str, version: str = CLOUDWATCH_VERSION) -> dict[str, Any]:
    run = (f"exec '{python}' -m ggic.local.cloudwatch_stand_in "
           f"--record '{{kernel:rootPath}}/logs/{RECORD_FILE}' "
           f"--input-topic '{{configuration:/InputTopic}}' "
           f"--output-topic '{{configuration:/OutputTopic}}'")
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": CLOUDWATCH_COMPONENT,
        "ComponentVersion": version,
        "ComponentType": "aws.greengrass.generic",
        "ComponentDescription": (
            "Local stand-in for AWS's CloudWatch metrics component, written by `ggic local "
            "stand-in cloudwatch`: validates each metric message and records it in "
            f"logs/{RECORD_FILE} (nothing is sent to CloudWatch)."),
        "ComponentPublisher": "ggic (local stand-in)",
        "ComponentConfiguration": {"DefaultConfiguration": {
            "InputTopic": INPUT_TOPIC,
            "OutputTopic": OUTPUT_TOPIC,
            "accessControl": {"aws.greengrass.ipc.pubsub": {
                f"{CLOUDWATCH_COMPONENT}:pubsub:1": {
                    "policyDescription": "Allows access to subscribe to input topics.",
                    "operations": ["aws.greengrass#SubscribeToTopic"],
                    "resources": [INPUT_TOPIC]},
                f"{CLOUDWATCH_COMPONENT}:pubsub:2": {
                    "policyDescription": "Allows access to publish to output topics.",
                    "operations": ["aws.greengrass#PublishToTopic"],
                    "resources": [OUTPUT_TOPIC]}}}}},
        "Manifests": [{"Name": "Linux (local stand-in)", "Platform": {"os": "linux"},
                       "Lifecycle": {"Run": {"Script": run}}}],
    }


def write_cloudwatch_stand_in(out: Path, python: str | None = None,
                              version: str = CLOUDWATCH_VERSION) -> Path:
    """Write the stand-in folder (GDK's build layout, no artifacts); the recipe's path."""
    recipes = Path(out) / "recipes"
    recipes.mkdir(parents=True, exist_ok=True)
    for stale in recipes.glob(f"{CLOUDWATCH_COMPONENT}-*.yaml"):
        stale.unlink()
    path = recipes / f"{CLOUDWATCH_COMPONENT}-{version}.yaml"
    recipe = cloudwatch_recipe(python or sys.executable, version)
    import yaml  # ggic local's extra: imported here, as every `python -m ggic` (the components'
    # Run command too, on devices without PyYAML) builds this module's parser

    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


class Recorder:
    """Appends one JSON line per message; rotates to ``.1`` past MAX_RECORD_BYTES."""

    def __init__(self, path: Path, max_bytes: int = MAX_RECORD_BYTES) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def record(self, topic: str, message: Any, problems: Sequence[str]) -> None:
        line = json.dumps({"time": round(time.time(), 3), "topic": topic,
                           "valid": not problems, "problems": list(problems),
                           "message": message}) + "\n"
        with self._lock:
            try:
                if self.path.stat().st_size + len(line) > self.max_bytes:
                    self.path.replace(self.path.with_name(self.path.name + ".1"))
            except FileNotFoundError:
                pass
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The recorded messages, oldest first (unreadable lines skipped)."""
    out = []
    for name in (path.name + ".1", path.name):
        try:
            lines = (path.parent / name).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def failure_status(message: Any, problems: Sequence[str]) -> dict[str, Any]:
    request = message.get("request") if isinstance(message, Mapping) else None
    namespace = request.get("namespace") if isinstance(request, Mapping) else None
    return {"response": {"namespace": namespace if isinstance(namespace, str) else "",
                         "error": "InvalidInputException",
                         "error_message": "; ".join(problems), "status": "fail"}}


def main(argv: Sequence[str] | None = None) -> int:
    """The stand-in component's Run step (talks to the nucleus through the awsiotsdk)."""
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

    parser = argparse.ArgumentParser(prog="cloudwatch-stand-in")
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--input-topic", default=INPUT_TOPIC)
    parser.add_argument("--output-topic", default=OUTPUT_TOPIC)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    recorder = Recorder(args.record)
    failures: queue.Queue[Any] = queue.Queue(maxsize=1000)
    stop = threading.Event()

    def on_event(event: Any) -> None:  # an IPC callback: no IPC calls here
        if event.json_message is not None:
            message = event.json_message.message
        elif event.binary_message is not None:
            try:
                message = json.loads(bytes(event.binary_message.message))
            except ValueError:
                message = {"unreadable": True}
        else:
            return
        problems = validate_metric_message(message)
        recorder.record(args.input_topic, message, problems)
        if problems:
            log.warning("invalid metric message: %s", "; ".join(problems))
            with contextlib.suppress(queue.Full):
                failures.put_nowait(failure_status(message, problems))

    client = GreengrassCoreIPCClientV2()
    client.subscribe_to_topic(topic=args.input_topic, on_stream_event=on_event,
                              on_stream_error=lambda exc: log.error("stream: %s", exc) or False)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log.info("recording metrics from %s in %s", args.input_topic, args.record)
    while not stop.is_set():
        try:
            status = failures.get(timeout=0.5)
        except queue.Empty:
            continue
        try:
            client.publish_to_topic(topic=args.output_topic, publish_message=PublishMessage(
                json_message=JsonMessage(message=status)))
        except Exception as exc:
            log.error("could not publish to %s: %s", args.output_topic, exc)
    client.close()
    return 0


# --- `ggic local stand-in cloudwatch` and `ggic local metrics` ---------------------------------


def add_stand_in_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "cloudwatch", help=f"a stand-in {CLOUDWATCH_COMPONENT} {CLOUDWATCH_VERSION}",
        description=(f"Write an {CLOUDWATCH_COMPONENT} component that validates and records "
                     f"the metrics published to {INPUT_TOPIC} (in <root>/logs/{RECORD_FILE}; "
                     "`ggic local metrics` prints them). Give it to `ggic local start "
                     "--stand-in DIR`, and deploy it."))
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.set_defaults(handler=run_stand_in_cloudwatch)


def run_stand_in_cloudwatch(args: argparse.Namespace) -> int:
    recipe = write_cloudwatch_stand_in(args.out)
    print(f"wrote {recipe}")
    print(f"use it with: ggic local start --stand-in {args.out} and deploy "
          f"--merge {CLOUDWATCH_COMPONENT}={CLOUDWATCH_VERSION}")
    return 0


def add_metrics_parser(commands: argparse._SubParsersAction,
                       root: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "metrics", parents=[root], help="the metrics components sent to CloudWatch (recorded)",
        description=(f"Print the metric messages the {CLOUDWATCH_COMPONENT} stand-in recorded "
                     f"(<root>/logs/{RECORD_FILE}); nothing is sent to AWS."))
    parser.add_argument("--json", action="store_true", help="print the JSON lines as stored")
    parser.add_argument("--name", default=None, help="only this metric name")
    parser.set_defaults(handler=run_metrics)


def metric_line(record: Mapping[str, Any]) -> str:
    """One readable line per recorded message."""
    message = record.get("message")
    request = message.get("request") if isinstance(message, Mapping) else None
    data = request.get("metricData") if isinstance(request, Mapping) else None
    if not record.get("valid") or not isinstance(data, Mapping):
        return f"INVALID {json.dumps(message)[:200]}: {'; '.join(record.get('problems', []))}"
    dims = ",".join(f"{d.get('name')}={d.get('value')}" for d in data.get("dimensions") or [])
    stamp = time.strftime("%H:%M:%S", time.localtime(float(data.get("timestamp", 0) or 0)))
    return (f"{stamp} {request.get('namespace')} {data.get('metricName')} "
            f"{data.get('value'):g} {data.get('unit', 'None')} [{dims}]")


def run_metrics(args: argparse.Namespace) -> int:
    from .cli_commands import resolve_root

    root = resolve_root(args.root)
    records = read_records(root / "logs" / RECORD_FILE)
    if args.name:
        records = [r for r in records
                   if ((r.get("message") or {}).get("request") or {}).get("metricData", {})
                   .get("metricName") == args.name]
    if not records and not args.json:
        print(f"no metrics were recorded at {root} (is {CLOUDWATCH_COMPONENT} deployed from "
              "`ggic local stand-in cloudwatch`?)", file=sys.stderr)
    for record in records:
        print(json.dumps(record) if args.json else metric_line(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
