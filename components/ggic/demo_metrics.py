"""The classifier's metrics for ``ggic demo``: what it published on ``cloudwatch/metric/put``
(aws.greengrass.Cloudwatch's input format), collected and summed into a few lines."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

METRICS_TOPIC = "cloudwatch/metric/put"


class MetricsCollector:
    """A runtime subscription to the metrics topic (one metric per message)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[Mapping[str, Any]] = []

    def on_message(self, _topic: str, message: Any) -> None:
        if isinstance(message, Mapping) and isinstance(message.get("request"), Mapping):
            with self._lock:
                if len(self.messages) < 10_000:
                    self.messages.append(message)

    def summary(self, component: str) -> list[str]:
        """Counts summed over the intervals; the latest latency percentiles, per stage."""
        counts: dict[str, float] = defaultdict(float)
        latency: dict[tuple[str, str], float] = {}
        other: dict[str, tuple[float, str]] = {}
        with self._lock:
            messages = list(self.messages)
        model = ""
        for message in messages:
            data = message["request"].get("metricData") or {}
            dims = {d.get("name"): d.get("value") for d in data.get("dimensions") or []}
            if dims.get("Component") != component:
                continue
            model = dims.get("Model", model)
            name, value, unit = data.get("metricName"), data.get("value", 0), data.get("unit")
            if name == "Requests":
                counts[f"requests {dims.get('Status')}"] += value
            elif name == "Errors":
                counts[f"{dims.get('ErrorCode')}"] += value
            elif name == "Latency":
                latency[(dims.get("Stage", ""), dims.get("Percentile", ""))] = value
            elif name == "ModelLoads":
                counts["model loads"] += value
            else:
                other[str(name)] = (value, str(unit))
        if not messages or not counts:
            return ["no metrics were published"]
        lines = [", ".join(f"{k} {v:g}" for k, v in counts.items()) + f" (model: {model})"]
        for stage in ("load", "preprocess", "inference", "total"):
            if (stage, "p50") in latency:
                lines.append(f"{stage:>10} ms  p50 {latency[(stage, 'p50')]:6.1f}  p90 "
                             f"{latency[(stage, 'p90')]:6.1f}  p99 {latency[(stage, 'p99')]:6.1f}")
        if "ModelLoadTime" in other:
            lines.append(f"model load + warm-up {other['ModelLoadTime'][0]:.0f} ms; most "
                         f"requests waiting {other.get('QueueDepthMax', (0, ''))[0]:g}")
        return lines
