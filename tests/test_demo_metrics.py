"""The demo's metrics summary, from messages built by the classifier's real metric code."""

from __future__ import annotations

import time

from ggic.classifier.metrics import COMPONENT, ClassifierMetrics
from ggic.cloudwatch_metrics import metric_message
from ggic.demo_metrics import MetricsCollector
from ggic.messages import ClassificationResult, ErrorCode, Prediction


def test_counts_are_summed_over_intervals_and_latency_is_shown_per_stage():
    metrics = ClassifierMetrics()
    collector = MetricsCollector()
    metrics.record_model_load(time.perf_counter(), {"name": "efficientnet"})
    for interval in range(2):
        for i in range(3):
            metrics.record_result(ClassificationResult.success(
                f"r{interval}{i}", [Prediction("cat", 1, 0.9)], {"name": "efficientnet"},
                {"load": 1.0, "preprocess": 2.0, "inference": 4.0 + i, "total": 9.0}))
        metrics.record_result(ClassificationResult.failure("x", ErrorCode.BUSY, "full"))
        for metric in metrics.take():
            collector.on_message("cloudwatch/metric/put", metric_message("ggic", metric,
                                                                         time.time()))
    lines = collector.summary(COMPONENT)
    assert lines[0] == ("requests ok 6, requests error 2, BUSY 2, model loads 1 "
                        "(model: efficientnet)")
    assert any(line.strip().startswith("inference ms  p50    5.0") for line in lines), lines
    assert MetricsCollector().summary(COMPONENT) == ["no metrics were published"]
