"""Metrics for CloudWatch, in the input format of AWS's ``aws.greengrass.Cloudwatch`` component.

That component (v3) subscribes to the local topic ``cloudwatch/metric/put`` and takes **one
metric per message**, batching them per namespace into ``PutMetricData`` calls::

    {"request": {"namespace": "ggic",
                 "metricData": {"metricName": "Requests",
                                "dimensions": [{"name": "ThingName", "value": "core-1"}],
                                "timestamp": 1700000000.0,      # seconds since the epoch
                                "value": 42.0, "unit": "Count"}}}

Both components collect their own figures (``classifier/metrics.py``,
``requester/metrics.py``); :class:`MetricsPublisher` turns them into such messages every
``MetricsInterval`` seconds on its own thread (never an IPC callback thread).
"""

from __future__ import annotations

import enum
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)

THING_NAME_ENV = "AWS_IOT_THING_NAME"
#: CloudWatch allows 30 dimensions; the Greengrass component documents 10.
MAX_DIMENSIONS = 10
#: Latency samples kept per interval and stage: percentiles of the most recent ones.
MAX_SAMPLES = 4096
PERCENTILES = (50, 90, 99)


class Unit(str, enum.Enum):
    """The CloudWatch units these components use (a subset of the documented ones)."""

    COUNT = "Count"
    MILLISECONDS = "Milliseconds"
    SECONDS = "Seconds"
    COUNT_PER_SECOND = "Count/Second"
    NONE = "None"


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    unit: Unit
    dimensions: tuple[tuple[str, str], ...] = ()


def base_dimensions(component: str, **extra: str) -> tuple[tuple[str, str], ...]:
    """ThingName (from AWS_IOT_THING_NAME, which the nucleus sets), Component, and ``extra``
    (empty values left out: CloudWatch refuses empty dimension values)."""
    dims = [("ThingName", os.environ.get(THING_NAME_ENV, "")), ("Component", component)]
    dims += list(extra.items())
    return tuple((name, value) for name, value in dims if value)


def metric_message(namespace: str, metric: Metric, timestamp: float) -> dict[str, Any]:
    """One metric as the aws.greengrass.Cloudwatch component takes it."""
    data: dict[str, Any] = {
        "metricName": metric.name,
        "dimensions": [{"name": n, "value": v[:1024]}
                       for n, v in metric.dimensions[:MAX_DIMENSIONS]],
        "timestamp": round(timestamp, 3),
        "value": float(metric.value),
        "unit": metric.unit.value,
    }
    return {"request": {"namespace": namespace, "metricData": data}}


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (not empty)."""
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class LatencyWindow:
    """Latency samples of one interval (the most recent MAX_SAMPLES), for p50/p90/p99."""

    def __init__(self, max_samples: int = MAX_SAMPLES) -> None:
        self._samples: deque[float] = deque(maxlen=max_samples)

    def add(self, value_ms: float) -> None:
        if math.isfinite(value_ms) and value_ms >= 0:
            self._samples.append(value_ms)

    def take(self) -> list[float]:
        """The samples, sorted; the window starts empty again."""
        values, self._samples = sorted(self._samples), deque(maxlen=self._samples.maxlen)
        return values


def latency_metrics(name: str, samples: Mapping[str, Sequence[float]],
                    dims: tuple[tuple[str, str], ...], stage_dimension: str = "Stage"
                    ) -> list[Metric]:
    """``name`` with dimensions Stage and Percentile (p50/p90/p99), per stage with samples."""
    out = []
    for stage, values in samples.items():
        if not values:
            continue
        for pct in PERCENTILES:
            extra: tuple[tuple[str, str], ...] = ((stage_dimension, stage),) if stage else ()
            out.append(Metric(name, percentile(values, pct), Unit.MILLISECONDS,
                              dims + extra + (("Percentile", f"p{pct}"),)))
    return out


@dataclass(frozen=True)
class MetricsSettings:
    interval: float
    topic: str
    namespace: str

    @classmethod
    def of(cls, config: Any) -> MetricsSettings:
        """From a component configuration's MetricsInterval, MetricsTopic, MetricsNamespace."""
        return cls(config.metrics_interval, config.metrics_topic, config.metrics_namespace)


class MetricsPublisher:
    """Every ``settings().interval`` seconds, publish ``collect()``'s metrics, one message each.

    ``settings`` is read each time, so a configuration update applies at the next interval;
    interval 0 switches publishing off (the figures keep accumulating, nothing is lost).
    :meth:`stop` publishes what was collected since the last interval, then ends the thread.
    """

    def __init__(self, publish: Callable[[str, Any], None],
                 collect: Callable[[], Iterable[Metric]],
                 settings: Callable[[], MetricsSettings], name: str = "metrics") -> None:
        self._publish = publish
        self._collect = collect
        self._settings = settings
        self._stop = threading.Event()
        self._flush_on_stop = True
        self._thread = threading.Thread(target=self._run, name=f"ggic-{name}", daemon=True)
        self.published = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, flush: bool = True) -> None:
        if not self._thread.is_alive():
            return
        self._flush_on_stop = flush
        self._stop.set()
        self._thread.join(timeout=3.0)

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            interval = self._settings().interval
            wait = 1.0 if interval <= 0 else max(0.0, last + interval - time.monotonic())
            if self._stop.wait(min(wait, 1.0)):
                if self._flush_on_stop and self._settings().interval > 0:
                    self.publish_now()
                return
            if interval > 0 and time.monotonic() >= last + interval:
                last = time.monotonic()
                self.publish_now()

    def publish_now(self) -> int:
        """Collect and publish one interval's metrics; how many messages went out."""
        settings = self._settings()
        try:
            metrics = list(self._collect())
        except Exception:  # a bug in a collector must not end the thread
            log.exception("collecting metrics failed")
            return 0
        now = time.time()
        sent = 0
        for metric in metrics:
            try:
                self._publish(settings.topic, metric_message(settings.namespace, metric, now))
                sent += 1
            except Exception as exc:  # IpcError: e.g. not authorized for the topic
                log.warning("could not publish %d metrics to %s: %s", len(metrics) - sent,
                            settings.topic, exc)
                break
        self.published += sent
        return sent
