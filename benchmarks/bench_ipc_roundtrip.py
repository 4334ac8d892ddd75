"""Round-trip latency through the local Greengrass IPC server with the real awsiotsdk client.

Three figures, all in one process (server thread + clients), on a real Unix socket:

* publish -> receive: one client publishes (jsonMessage), another's subscription callback
  gets it; one message in flight at a time.
* request -> reply: a requester publishes, an echo component (callback -> queue -> worker
  thread, as components must) publishes the reply, the requester's callback gets it: the
  shape of a classification request without the inference.
* pipelined: N publishes without waiting, time until the subscriber has all of them.

Usage: python benchmarks/bench_ipc_roundtrip.py [--messages 500] [--payload-bytes 200]
"""

from __future__ import annotations

import argparse
import queue
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import awsiot.greengrasscoreipc
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

from ggic.local.ipc_server import IpcServer

ACL = {"aws.greengrass.ipc.pubsub": {"bench": {"operations": ["*"], "resources": ["bench/*"]}}}


def connect(server: IpcServer, name: str) -> GreengrassCoreIPCClientV2:
    token = server.register_component(name, access_control=ACL)
    connection = awsiot.greengrasscoreipc.connect(
        ipc_socket=str(server.socket_path), authtoken=token
    )
    return GreengrassCoreIPCClientV2(client=connection)  # default: callbacks on a thread pool


def publish(client: GreengrassCoreIPCClientV2, topic: str, message: dict) -> None:
    client.publish_to_topic(
        topic=topic, publish_message=PublishMessage(json_message=JsonMessage(message=message))
    )


def summary(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)

    def p(quantile: float) -> float:
        return ms[min(len(ms) - 1, int(quantile * len(ms)))]

    return (
        f"{label:24s} n={len(ms):4d}  median {statistics.median(ms):6.3f} ms  "
        f"p90 {p(0.9):6.3f}  p99 {p(0.99):6.3f}  mean {statistics.fmean(ms):6.3f}"
    )


def bench_publish_receive(server: IpcServer, count: int, body: str) -> list[float]:
    publisher = connect(server, "bench.publisher")
    subscriber = connect(server, "bench.subscriber")
    received: queue.Queue[float] = queue.Queue()
    subscriber.subscribe_to_topic(
        topic="bench/one-hop", on_stream_event=lambda event: received.put(time.perf_counter())
    )
    samples = []
    try:
        for index in range(count + 20):
            start = time.perf_counter()
            publish(publisher, "bench/one-hop", {"n": index, "body": body})
            arrived = received.get(timeout=5)
            if index >= 20:  # warm-up
                samples.append(arrived - start)
    finally:
        publisher.close()
        subscriber.close()
    return samples


def bench_request_reply(server: IpcServer, count: int, body: str) -> list[float]:
    requester = connect(server, "bench.requester")
    echo = connect(server, "bench.echo")
    work: queue.Queue[Any] = queue.Queue()
    replies: queue.Queue[float] = queue.Queue()

    def echo_worker() -> None:
        while True:
            message = work.get()
            if message is None:
                return
            publish(echo, "bench/reply", message)  # never from the callback itself

    worker = threading.Thread(target=echo_worker, daemon=True)
    worker.start()
    echo.subscribe_to_topic(
        topic="bench/request", on_stream_event=lambda event: work.put(event.json_message.message)
    )
    requester.subscribe_to_topic(
        topic="bench/reply", on_stream_event=lambda event: replies.put(time.perf_counter())
    )
    samples = []
    try:
        for index in range(count + 20):
            start = time.perf_counter()
            publish(requester, "bench/request", {"request_id": str(index), "body": body})
            arrived = replies.get(timeout=5)
            if index >= 20:
                samples.append(arrived - start)
    finally:
        work.put(None)
        worker.join(5)
        requester.close()
        echo.close()
    return samples


def bench_pipelined(server: IpcServer, count: int, body: str) -> float:
    publisher = connect(server, "bench.pipe-publisher")
    subscriber = connect(server, "bench.pipe-subscriber")
    done = threading.Event()
    seen = [0]
    lock = threading.Lock()

    def on_event(event: Any) -> None:
        with lock:
            seen[0] += 1
            if seen[0] == count:
                done.set()

    subscriber.subscribe_to_topic(topic="bench/pipe", on_stream_event=on_event)
    message = PublishMessage(json_message=JsonMessage(message={"body": body}))
    try:
        start = time.perf_counter()
        futures = [
            publisher.publish_to_topic_async(topic="bench/pipe", publish_message=message)
            for _ in range(count)
        ]
        for future in futures:
            future.result(10)
        assert done.wait(10), f"only {seen[0]} of {count} arrived"
        return count / (time.perf_counter() - start)
    finally:
        publisher.close()
        subscriber.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--payload-bytes", type=int, default=200)
    args = parser.parse_args()
    body = "x" * args.payload_bytes
    with tempfile.TemporaryDirectory(prefix="ggic-bench-") as tmp:
        server = IpcServer(Path(tmp) / "ipc.sock")
        with server:
            one_hop = bench_publish_receive(server, args.messages, body)
            two_hops = bench_request_reply(server, args.messages, body)
            rate = bench_pipelined(server, max(args.messages, 2000), body)
        server.close()
    print(f"real awsiotsdk client, {args.payload_bytes}-byte JSON bodies, one process")
    print(summary("publish -> receive", one_hop))
    print(summary("request -> reply", two_hops))
    print(f"{'pipelined publishes':24s} {rate:8.0f} messages/s delivered")


if __name__ == "__main__":
    main()
