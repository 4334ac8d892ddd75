"""The stream requester's figures, and the metrics it publishes for CloudWatch.

Metrics (namespace ``MetricsNamespace``; dimensions ThingName, Component, Stream):

=====================  ============  ==================================================
name                   unit          value (per interval)
=====================  ============  ==================================================
FramesCaptured         Count         frames read from the source
FramesDropped          Count         frames not sent: superseded by a newer frame while
                                     MaxInFlight requests were outstanding (or stopped)
FramesSkipped          Count         frames not sent: above MaxFps
FramesSent             Count         requests sent
Results                Count         results received (dimension Status: ok, error)
ResultTimeouts         Count         requests without a result within ResultTimeout
CaptureFps             Count/Second  frames captured per second
ResultFps              Count/Second  results received per second
CaptureToResult        Milliseconds  capture -> result latency, Percentile p50/p90/p99
SourceDown             Seconds       how long the source has been down (0: up)
=====================  ============  ==================================================
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Callable

from ..cloudwatch_metrics import LatencyWindow, Metric, Unit, base_dimensions, latency_metrics

COMPONENT = "com.custom.requester"
COUNTERS = ("captured", "dropped", "skipped", "sent", "ok", "error", "timeouts",
            "send_failures")


class StreamMetrics:
    def __init__(self, stream: str, source_down_for: Callable[[], float] = lambda: 0.0
                 ) -> None:
        self.stream = stream
        self._down_for = source_down_for
        self._lock = threading.Lock()
        self._interval: Counter[str] = Counter()
        self._latency = LatencyWindow()
        self._since = time.monotonic()
        self.totals: Counter[str] = Counter()
        self.started = time.monotonic()

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._interval[what] += n
            self.totals[what] += n

    def result(self, ok: bool, latency_ms: float) -> None:
        with self._lock:
            key = "ok" if ok else "error"
            self._interval[key] += 1
            self.totals[key] += 1
            self._latency.add(latency_ms)

    def summary(self) -> str:
        with self._lock:
            totals = dict(self.totals)
        elapsed = max(1e-9, time.monotonic() - self.started)
        got = totals.get("ok", 0) + totals.get("error", 0)
        return (f"{totals.get('captured', 0)} frames captured, {totals.get('sent', 0)} sent, "
                f"{totals.get('dropped', 0)} dropped while busy, {totals.get('skipped', 0)} "
                f"skipped by MaxFps; {got} results ({totals.get('error', 0)} errors), "
                f"{totals.get('timeouts', 0)} timed out; {got / elapsed:.1f} results/s")

    def take(self) -> list[Metric]:
        now = time.monotonic()
        with self._lock:
            counts, self._interval = self._interval, Counter()
            latencies = self._latency.take()
            elapsed, self._since = max(1e-9, now - self._since), now
        dims = base_dimensions(COMPONENT, Stream=self.stream)
        out = [Metric(name, counts[key], Unit.COUNT, dims) for name, key in (
            ("FramesCaptured", "captured"), ("FramesDropped", "dropped"),
            ("FramesSkipped", "skipped"), ("FramesSent", "sent"),
            ("ResultTimeouts", "timeouts"))]
        out += [Metric("Results", counts[status], Unit.COUNT, dims + (("Status", status),))
                for status in ("ok", "error")]
        out.append(Metric("CaptureFps", counts["captured"] / elapsed, Unit.COUNT_PER_SECOND,
                          dims))
        out.append(Metric("ResultFps", (counts["ok"] + counts["error"]) / elapsed,
                          Unit.COUNT_PER_SECOND, dims))
        out += latency_metrics("CaptureToResult", {"": latencies}, dims)
        out.append(Metric("SourceDown", self._down_for(), Unit.SECONDS, dims))
        return out
