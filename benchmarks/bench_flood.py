"""Flood the classifier from several processes, then SIGTERM it mid-flood; count every answer.

A live classifier process (``python -m ggic classifier``, a real DLR model written by
``ggic.modelgen``, the real libdlr.so) runs under ggic.local's IPC server (in this process).
N client processes flood it through the real awsiotsdk client (``publish_to_topic_async``, up to
64 publishes in flight each), every request with its own id and ``reply_to: flood/<client>``.
``--sigterm-after`` seconds after the first answer the classifier gets SIGTERM, as Greengrass
stops a component; the clients flood on for a second after that.

Counted: requests sent (publish acknowledged); requests the server wrote to the classifier's
subscriptions (handed to its socket, read or not) and the most bytes the server held unsent for
it; requests the classifier received (every invocation of its request callback: its last log
line); answers seen server-side (an in-process subscription to ``flood/#`` and ``local/result``)
and client-side, by status; lost = received - distinct answers; duplicates; answers per second
while flooded (first answer to SIGTERM); the classifier's peak RSS (VmHWM); the bytes it added
to its log; the time from SIGTERM to its exit, and its exit code.

Then, side by side: one process publishing answers through ggic's IpcClient with 1 publish in
flight (the old publisher, which waited for each acknowledgement) and with 32, interleaved.

Usage: python benchmarks/bench_flood.py [--clients 4] [--sigterm-after 2] [--repeat 3]
(``client`` is the flood client's own entry point, run by the benchmark.)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER = "com.custom.ImageClassifier"
MAX_IN_FLIGHT = 64
#: how long a client waits for the answers the server saw published for it
ANSWER_WAIT_S = 20.0


# --- the flood client (a separate process) --------------------------------------------------


def client_main(index: int, image: str, stop_file: Path, out: Path) -> None:
    """Flood until ``stop_file`` exists; then wait for ``expected.json`` beside it (how many
    answers the server saw published for each client) and for those answers to arrive."""
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

    client = GreengrassCoreIPCClientV2()
    lock = threading.Lock()
    answers: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    last_answer = [time.monotonic()]

    def on_answer(event: Any) -> None:
        message = event.json_message.message if event.json_message else {}
        with lock:
            answers[message.get("request_id", "?")] += 1
            codes[message.get("error", {}).get("code", message.get("status", "?"))] += 1
            last_answer[0] = time.monotonic()

    client.subscribe_to_topic(topic=f"flood/{index}", on_stream_event=on_answer)
    slots = threading.Semaphore(MAX_IN_FLIGHT)
    sent = [0, 0]  # acknowledged, failed

    def acknowledged(future: Any) -> None:
        with lock:
            sent[0 if future.exception() is None else 1] += 1
        slots.release()

    n = 0
    while n % 64 or not stop_file.exists():
        slots.acquire()
        message = {"request_id": f"c{index}-{n}", "image_path": image,
                   "reply_to": f"flood/{index}"}
        n += 1
        client.publish_to_topic_async(
            topic="local/inference",
            publish_message=PublishMessage(json_message=JsonMessage(message=message)),
        ).add_done_callback(acknowledged)
    for _ in range(MAX_IN_FLIGHT):
        slots.acquire()
    expected_file = stop_file.parent / "expected.json"
    deadline = time.monotonic() + 120
    while not expected_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    expected = json.loads(expected_file.read_text())[str(index)]
    deadline = time.monotonic() + ANSWER_WAIT_S
    while time.monotonic() < deadline:
        with lock:
            if sum(answers.values()) >= expected:
                break
        time.sleep(0.05)
    time.sleep(0.2)  # a duplicate would come now
    with lock:
        report = {"sent": sent[0], "publish_failed": sent[1], "codes": dict(codes),
                  "answers": sum(answers.values()), "distinct": len(answers),
                  "duplicates": sum(c - 1 for c in answers.values() if c > 1),
                  "unknown": sum(c for rid, c in answers.items()
                                 if not rid.startswith(f"c{index}-"))}
    out.write_text(json.dumps(report))
    os._exit(0)  # the SDK's close can wait on in-flight streams; the report is written


def publish_main(in_flight: int, count: int) -> None:
    """Publish ``count`` BUSY-sized answers through ggic's IpcClient, ``in_flight`` at a time
    (1: the old publisher, which waited for each acknowledgement); print the rate."""
    from ggic.ipc import IpcClient

    ipc = IpcClient()
    message = {"request_id": "c0-123456", "status": "error",
               "error": {"code": "BUSY", "message": "the classifier's queue (QueueSize) is "
                         "full; retry later"}}
    slots = threading.Semaphore(in_flight)
    started = time.perf_counter()
    for _ in range(count):
        slots.acquire()
        ipc.publish_async("local/result", message).add_done_callback(lambda _f: slots.release())
    for _ in range(in_flight):
        slots.acquire()
    print(f"{count / (time.perf_counter() - started):.1f}")
    os._exit(0)


def publish_rates(root: Path, in_flights: tuple[int, ...] = (1, 32), repeat: int = 3,
                  count: int = 2000) -> dict[int, list[float]]:
    """Answers/s of one publishing process at each in-flight bound, interleaved, repeated
    (the server runs in this process, as in the flood)."""
    sys.path.insert(0, str(REPO / "components"))
    from ggic.local.ipc_server import IpcServer

    server = IpcServer(root / "publish.socket")
    server.register_component("publisher", access_control={"aws.greengrass.ipc.pubsub": {
        "p": {"operations": ["aws.greengrass#PublishToTopic"], "resources": ["local/result"]}}})
    server.start()
    unsubscribe = server.subscribe("local/result", lambda _t, _m: None)
    env = {**os.environ, **server.component_env("publisher"),
           "PYTHONPATH": str(REPO / "components")}
    rates: dict[int, list[float]] = {n: [] for n in in_flights}
    try:
        for _ in range(repeat):
            for n in in_flights:
                out = subprocess.run(
                    [sys.executable, __file__, "publish", "--in-flight", str(n), "--count",
                     str(count)], env=env, capture_output=True, text=True, timeout=120)
                rates[n].append(float(out.stdout.strip().splitlines()[-1]))
    finally:
        unsubscribe()
        server.stop()
    return rates


# --- the run ---------------------------------------------------------------------------------


@dataclass
class FloodReport:
    clients: int
    sent: int = 0
    written: int = 0
    server_buffer_peak_bytes: int = 0
    received: int = -1
    answers_server: int = 0
    distinct_server: int = 0
    duplicates_server: int = 0
    answers_client: int = 0
    duplicates_client: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    lost: int = -1
    answers_per_s: float = 0.0
    peak_rss_mib: float = 0.0
    log_bytes: int = 0
    sigterm_to_exit_s: float = 0.0
    exit_code: int | None = None
    classifier_log: str = ""

    def line(self) -> str:
        codes = " ".join(f"{k} {v}" for k, v in sorted(self.codes.items()))
        return (f"sent {self.sent}  written to the classifier {self.written} (server held up to "
                f"{self.server_buffer_peak_bytes / 2**20:.1f} MiB unsent)  received "
                f"{self.received}  answered {self.distinct_server} ({codes})  lost {self.lost}  "
                f"duplicates {self.duplicates_server}/"
                f"{self.duplicates_client} (server/client)  {self.answers_per_s:.0f} answers/s  "
                f"peak RSS {self.peak_rss_mib:.0f} MiB  log +{self.log_bytes} B  "
                f"SIGTERM->exit {self.sigterm_to_exit_s:.2f} s (exit {self.exit_code})")


def _peak_rss_mib(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(found.group(1)) / 1024 if found else None


def run_flood(root: Path, *, clients: int = 4, sigterm_after: float = 2.0,
              flood_after_sigterm: float = 1.0, queue_size: int = 32) -> FloodReport:
    """One flood against a fresh classifier process in ``root``: SIGTERM ``sigterm_after``
    seconds after the first answer, the clients go on flooding ``flood_after_sigterm`` seconds
    after that; the counts."""
    sys.path.insert(0, str(REPO / "components"))
    import yaml

    from ggic.local.ipc_server import IpcServer
    from ggic.modelgen.testnets import write_neo_like
    from ggic.sample_images import copy_sample_photos

    net = write_neo_like(root / "model", seed=3)
    photo = copy_sample_photos(root / "images")[0]
    recipe = yaml.safe_load((REPO / "recipes" / f"{CLASSIFIER}.yaml").read_text())
    config = dict(recipe["ComponentConfiguration"]["DefaultConfiguration"])
    config.update(ModelDir=str(net.model_dir), ModelProfile="neo-vgg16",
                  LabelsPath=str(net.labels_path), AllowedImageDirs=[str(root)],
                  QueueSize=str(queue_size))
    access = json.loads(json.dumps(config["accessControl"]))
    publish_policy = access["aws.greengrass.ipc.pubsub"][f"{CLASSIFIER}:pubsub:2"]
    publish_policy["resources"] = [*publish_policy["resources"], "flood/*"]
    config["accessControl"] = access

    logging.getLogger("asyncio").setLevel(logging.ERROR)  # writes to clients that went away
    report = FloodReport(clients=clients)
    server = IpcServer(root / "ipc.socket")
    server.register_component(CLASSIFIER, configuration=config, access_control=access)
    for i in range(clients):
        server.register_component(f"flood-{i}", access_control={"aws.greengrass.ipc.pubsub": {
            "p": {"operations": ["aws.greengrass#PublishToTopic"],
                  "resources": ["local/inference"]},
            "s": {"operations": ["aws.greengrass#SubscribeToTopic"],
                  "resources": [f"flood/{i}"]}}})
    server.start()
    lock = threading.Lock()
    seen: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    per_client: Counter[str] = Counter()

    def on_answer(topic: str, message: Any) -> None:
        with lock:
            seen[message.get("request_id", "?")] += 1
            per_client[topic.rpartition("/")[2]] += 1
            codes[message.get("error", {}).get("code", message.get("status", "?"))] += 1

    unsubscribe = [server.subscribe("flood/#", on_answer),
                   server.subscribe("local/result", on_answer)]

    def env(name: str) -> dict[str, str]:
        out = dict(os.environ)
        out.update(server.component_env(name))
        out["PYTHONPATH"] = str(REPO / "components")
        return out

    log_path = root / "classifier.log"
    processes: list[subprocess.Popen] = []
    try:
        with open(log_path, "w") as log:
            classifier = subprocess.Popen([sys.executable, "-m", "ggic", "classifier"],
                                          env=env(CLASSIFIER), stdout=log,
                                          stderr=subprocess.STDOUT)
        processes.append(classifier)
        if not server.wait_for_state(CLASSIFIER, "RUNNING", 60):
            raise RuntimeError("the classifier did not start:\n" + log_path.read_text())
        log_before = log_path.stat().st_size
        outs = [root / f"client-{i}.json" for i in range(clients)]
        stop_file = root / "stop-flooding"
        for i in range(clients):
            processes.append(subprocess.Popen(
                [sys.executable, __file__, "client", "--index", str(i), "--image", str(photo),
                 "--stop-file", str(stop_file), "--out", str(outs[i])], env=env(f"flood-{i}")))
        deadline = time.monotonic() + 60
        while not seen and time.monotonic() < deadline:  # the clients take a while to start
            time.sleep(0.01)
        started = time.monotonic()
        peak = 0.0
        while time.monotonic() - started < sigterm_after:
            peak = max(peak, _peak_rss_mib(classifier.pid) or 0.0)
            time.sleep(0.05)
        signalled = time.monotonic()
        with lock:
            report.answers_per_s = sum(seen.values()) / (signalled - started)
        classifier.send_signal(signal.SIGTERM)
        while classifier.poll() is None and time.monotonic() - signalled < 30:
            peak = max(peak, _peak_rss_mib(classifier.pid) or 0.0)
            time.sleep(0.01)
        report.exit_code = classifier.wait(30)
        report.sigterm_to_exit_s = time.monotonic() - signalled
        report.peak_rss_mib = peak
        time.sleep(max(0.0, signalled + flood_after_sigterm - time.monotonic()))
        stop_file.touch()
        time.sleep(0.3)  # the last server-side deliveries
        with lock:
            expected = {str(i): per_client[str(i)] for i in range(clients)}
        (root / "expected.json").write_text(json.dumps(expected))
        for process in processes[1:]:
            process.wait(60)
        report.log_bytes = log_path.stat().st_size - log_before
        report.classifier_log = log_path.read_text()
        report.written, report.server_buffer_peak_bytes = server.traffic(CLASSIFIER)
        found = re.search(r"(\d+) received, (\d+) answered", report.classifier_log)
        report.received = int(found.group(1)) if found else -1
        for out in outs:
            data = json.loads(out.read_text())
            report.sent += data["sent"]
            report.answers_client += data["answers"]
            report.duplicates_client += data["duplicates"] + data["unknown"]
        with lock:
            report.answers_server = sum(seen.values())
            report.distinct_server = len(seen)
            report.duplicates_server = sum(c - 1 for c in seen.values() if c > 1)
            report.codes = dict(codes)
        report.lost = report.received - report.distinct_server if found else -1
        return report
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        for stop in unsubscribe:
            stop()
        server.stop()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} cores, load average {load}; Python "
            f"{platform.python_version()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    client = sub.add_parser("client")
    client.add_argument("--index", type=int, required=True)
    client.add_argument("--image", required=True)
    client.add_argument("--stop-file", type=Path, required=True)
    client.add_argument("--out", type=Path, required=True)
    publish = sub.add_parser("publish")
    publish.add_argument("--in-flight", type=int, required=True)
    publish.add_argument("--count", type=int, required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sigterm-after", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the reports here")
    args = parser.parse_args()
    if args.command == "client":
        client_main(args.index, args.image, args.stop_file, args.out)
        return 0
    if args.command == "publish":
        publish_main(args.in_flight, args.count)
        return 0
    print(f"machine: {machine()}")
    print(f"{args.clients} client processes flood; SIGTERM {args.sigterm_after} s after the "
          "first answer; the flood goes on 1 s after SIGTERM")
    reports = []
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="ggic-flood-", dir="/tmp") as tmp:
            report = run_flood(Path(tmp), clients=args.clients,
                               sigterm_after=args.sigterm_after)
        reports.append(report)
        print(f"run {run + 1}: {report.line()}")
    exits = [r.sigterm_to_exit_s for r in reports]
    rates = [r.answers_per_s for r in reports]
    print(f"answers/s min {min(rates):.0f} median {statistics.median(rates):.0f}; SIGTERM->exit "
          f"min {min(exits):.2f} median {statistics.median(exits):.2f} max {max(exits):.2f} s; "
          f"lost {sum(r.lost for r in reports)}, duplicates "
          f"{sum(r.duplicates_server + r.duplicates_client for r in reports)}")
    with tempfile.TemporaryDirectory(prefix="ggic-publish-", dir="/tmp") as tmp:
        rates = publish_rates(Path(tmp), repeat=args.repeat)
    one, many = rates[1], rates[32]
    print(f"publishing alone, answers/s (interleaved, {args.repeat} runs each): 1 in flight "
          f"(the old publisher) min {min(one):.0f} median {statistics.median(one):.0f}; 32 in "
          f"flight min {min(many):.0f} median {statistics.median(many):.0f}; ratio of medians "
          f"{statistics.median(many) / statistics.median(one):.2f}x")
    print(f"machine after: {machine()}")
    if args.json:
        args.json.write_text(json.dumps(
            [{k: v for k, v in asdict(r).items() if k != "classifier_log"} for r in reports],
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
