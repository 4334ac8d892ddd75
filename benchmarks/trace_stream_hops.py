"""Where a stream frame's cycle goes beyond the classifier's work, hop by hop, from timestamps
the ``ggic.local`` IPC server takes in this process.

    python benchmarks/trace_stream_hops.py [--frames 200] [--rounds 3] [--model-dir DIR]

The set-up of ``bench_stream.py`` (the EfficientNet-Lite0 demo model, a 640x480 video, the real
classifier and requester processes, ``file``/``bmp``, MaxInFlight 1, every frame as soon as its
predecessor's result is in). The server's connections are wrapped to note when each frame
arrives from a component and when one is written to it; with the classifier's ``timing_ms``
per result that gives, per frame (medians):

* server request in -> out: the requester's publish read, routed and written to the classifier;
* server result in -> out: the classifier's result read, routed and written to the requester;
* classifier side beyond ``total``: written to the classifier -> its result read back, minus
  its ``timing_ms.total`` (sockets, the SDK on both ways, the callback until it accepts);
* classifier ``total`` beyond its work (``load`` + ``preprocess`` + ``inference``): its hand-offs
  and the result's making;
* requester turn-around: the result written to the requester -> its next request read;
* the cycle (one result read to the next) and the work.

A diagnostic of where to look, not a comparison: ``bench_stream_ab.py`` compares two trees.
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import statistics
import tempfile
import time
from pathlib import Path

import bench_stream
from ab_trees import demo_model

from ggic.local import ipc_connection

REQUEST_MIN_BYTES = 100  # a requester frame this large is a request (not a response, a ping)
RESULT_MIN_BYTES = 150


class HopLog:
    """(time, direction, component, bytes) of every frame the server reads or writes."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str | None, int]] = []
        connection = ipc_connection.IpcConnection
        dispatch, send = connection._dispatch, connection.send_frame

        def traced_dispatch(conn, rpc):  # noqa: ANN001, ANN202 - the wrapped method's own
            self.events.append((time.perf_counter(), "in", conn.component, len(rpc.payload or b"")))
            dispatch(conn, rpc)

        def traced_send(conn, frame):  # noqa: ANN001, ANN202
            send(conn, frame)
            self.events.append((time.perf_counter(), "out", conn.component, len(frame)))

        connection._dispatch = traced_dispatch
        connection.send_frame = traced_send

    def times(self, direction: str, component: str, min_bytes: int,
              max_bytes: int = 1 << 30) -> list[float]:
        return [t for t, d, c, n in self.events
                if d == direction and c == component and min_bytes < n < max_bytes]


def trace(stream: bench_stream.Stream, hops: HopLog, video: Path) -> dict[str, float]:
    messages: list[dict] = []
    original_put = stream.arrivals.put

    def recording_put(item, *args, **kwargs):  # noqa: ANN001, ANN202
        messages.append(item[1])
        original_put(item, *args, **kwargs)

    stream.arrivals.put = recording_put  # type: ignore[method-assign]
    hops.events.clear()
    stream.run(video, "file", "bmp", 1, False)
    stream.arrivals.put = original_put  # type: ignore[method-assign]
    requester, classifier = bench_stream.REQUESTER, bench_stream.CLASSIFIER
    request_in = hops.times("in", requester, REQUEST_MIN_BYTES)
    to_classifier = hops.times("out", classifier, 200)
    result_in = hops.times("in", classifier, RESULT_MIN_BYTES)
    to_requester = hops.times("out", requester, 250, 1000)
    total = [float(m["timing_ms"]["total"]) for m in messages]
    work = [sum(float(m["timing_ms"][k]) for k in ("load", "preprocess", "inference"))
            for m in messages]
    n = min(len(request_in), len(to_classifier), len(result_in), len(to_requester), len(total))
    span = range(n)
    return {
        "frames": n,
        "server request in -> out": statistics.median(
            (to_classifier[i] - request_in[i]) * 1e3 for i in span),
        "server result in -> out": statistics.median(
            (to_requester[i] - result_in[i]) * 1e3 for i in span),
        "classifier side beyond total": statistics.median(
            (result_in[i] - to_classifier[i]) * 1e3 - total[i] for i in span),
        "classifier total beyond its work": statistics.median(total[i] - work[i] for i in span),
        "requester turn-around": statistics.median(
            (request_in[i + 1] - to_requester[i]) * 1e3 for i in range(n - 1)),
        "cycle": statistics.median((result_in[i + 1] - result_in[i]) * 1e3
                                   for i in range(n - 1)),
        "work": statistics.median(work[:n]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args()
    hops = HopLog()
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ggic-trace-hops-") as tmp:
        work = Path(tmp)
        model_dir = demo_model(args.model_dir, work)
        video = bench_stream.write_video(work / "video.avi", args.frames)
        stream = bench_stream.Stream(work, model_dir, 1)
        stream.arrivals = queue.Queue()
        try:
            for round_ in range(args.rounds):
                figures = trace(stream, hops, video)
                print(f"round {round_}: " + "; ".join(
                    f"{k} {v:.3f} ms" if k != "frames" else f"{v:.0f} frames"
                    for k, v in figures.items()), flush=True)
        finally:
            stream.close()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f} (at the start "
          f"{load_at_start:.2f})")


if __name__ == "__main__":
    main()
