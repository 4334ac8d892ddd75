"""The classifier's own figures, and the metrics it publishes for CloudWatch.

:class:`ClassifierMetrics` is fed from three points in the service: every result sent (its
status, error code and timings), every model load (its time, the model's name), and the queue
depth when a result leaves. :meth:`ClassifierMetrics.take` turns one interval's figures into
:class:`~ggic.cloudwatch_metrics.Metric` values (counts are per interval: CloudWatch sums them),
which :class:`~ggic.cloudwatch_metrics.MetricsPublisher` sends to ``cloudwatch/metric/put``.

Metrics (namespace ``MetricsNamespace``; dimensions ThingName, Component, Model, plus):

=================  ============  ==================================  =========================
name               unit          extra dimensions                    value
=================  ============  ==================================  =========================
Requests           Count         Status (ok, error)                  results sent
Errors             Count         ErrorCode (BUSY, UNAVAILABLE, ...)  error results, per code
Latency            Milliseconds  Stage (load, preprocess, inference, p50/p90/p99 of ok results
                                 total), Percentile (p50, p90, p99)
QueueDepth         Count                                             requests waiting now
QueueDepthMax      Count                                             most waiting in interval
ModelLoads         Count                                             models loaded
ModelLoadTime      Milliseconds                                      the last load + warm-up
=================  ============  ==================================  =========================
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, Callable

from ..cloudwatch_metrics import (
    LatencyWindow,
    Metric,
    MetricsPublisher,
    MetricsSettings,
    Unit,
    base_dimensions,
    latency_metrics,
)
from ..messages import ClassificationResult

COMPONENT = "com.custom.ImageClassifier"
STAGES = ("load", "preprocess", "inference", "total")


class ClassifierMetrics:
    """Thread-safe counters and latency windows; :meth:`take` reads and resets an interval."""

    def __init__(self, queue_depth: Callable[[], int] = lambda: 0, ipc: Any = None,
                 config: Callable[[], Any] | None = None) -> None:
        """``ipc`` and ``config`` (a callable: the configuration in force): :attr:`publisher`
        publishes these metrics following its MetricsInterval, MetricsTopic, MetricsNamespace."""
        self._queue_depth = queue_depth
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._latency = {stage: LatencyWindow() for stage in STAGES}
        self._queue_max = 0
        self._loads = 0
        self._load_ms: float | None = None
        self.model = ""
        #: Since start, never reset (for logs and the demo).
        self.totals: Counter[str] = Counter()
        self.publisher = MetricsPublisher(
            ipc.publish if ipc is not None else (lambda _topic, _message: None), self.take,
            lambda: MetricsSettings.of(config()) if config is not None
            else MetricsSettings(0, "cloudwatch/metric/put", "ggic"))

    def record_result(self, result: ClassificationResult) -> None:
        depth = self._queue_depth()
        with self._lock:
            self._queue_max = max(self._queue_max, depth)
            self._requests[result.status] += 1
            self.totals[result.status] += 1
            if not result.ok:
                code = result.error_code or "UNKNOWN"
                self._errors[code] += 1
                self.totals[code] += 1
                return
            for stage in STAGES:
                value = result.timing_ms.get(stage)
                if value is not None:
                    self._latency[stage].add(float(value))

    def record_model_load(self, started: float, summary: Mapping[str, str]) -> None:
        """A model took over: loading began at ``started`` (``time.perf_counter()``);
        ``summary`` is its result ``model`` field (its name)."""
        milliseconds = (time.perf_counter() - started) * 1000.0
        with self._lock:
            self._loads += 1
            self._load_ms = milliseconds
            self.model = str(summary.get("name", "?"))
            self.totals["model_loads"] += 1

    def take(self) -> list[Metric]:
        """This interval's metrics; the counters start again from zero."""
        depth = self._queue_depth()
        with self._lock:
            requests, self._requests = self._requests, Counter()
            errors, self._errors = self._errors, Counter()
            samples = {stage: window.take() for stage, window in self._latency.items()}
            queue_max, self._queue_max = max(self._queue_max, depth), depth
            loads, self._loads = self._loads, 0
            load_ms, self._load_ms = self._load_ms, None
            model = self.model
        dims = base_dimensions(COMPONENT, Model=model)
        out = [Metric("Requests", requests[status], Unit.COUNT, dims + (("Status", status),))
               for status in ("ok", "error")]
        out += [Metric("Errors", count, Unit.COUNT, dims + (("ErrorCode", code),))
                for code, count in sorted(errors.items())]
        out += latency_metrics("Latency", samples, dims)
        out.append(Metric("QueueDepth", depth, Unit.COUNT, dims))
        out.append(Metric("QueueDepthMax", queue_max, Unit.COUNT, dims))
        out.append(Metric("ModelLoads", loads, Unit.COUNT, dims))
        if load_ms is not None:
            out.append(Metric("ModelLoadTime", load_ms, Unit.MILLISECONDS, dims))
        return out
