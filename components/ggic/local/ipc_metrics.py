"""PutComponentMetric, as the nucleus's ComponentMetricIPCEventStreamAgent answers it.

The nucleus accepts metrics only from components whose name starts with ``aws.`` (AWS's own
components); any other caller gets ``UnauthorizedError("Principal <c> is not authorized to
perform aws.greengrass.ipc.componentmetric:aws.greengrass#PutComponentMetric ")`` (the trailing
space is the nucleus's), whatever its accessControl says. So a custom component such as
``com.custom.ImageClassifier`` cannot publish metrics this way on a device either.

For an ``aws.*`` caller: the list must be non-empty and each metric needs a name of at most 32
UTF-8 bytes, a unit and a value >= 0 (else ``InvalidArgumentsError("Invalid argument found in
PutComponentMetricRequest")``); each metric name needs an ``aws.greengrass.ipc.componentmetric``
policy (resource: the metric name) unless the caller is the stream manager. The nucleus hands
accepted metrics to its telemetry (namespace: the component, aggregation Sum); the local
runtime hands them to :attr:`LocalNucleus.metric_sink` (``<root>/logs/metrics.jsonl``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from .ipc_errors import InvalidArgumentsError, UnauthorizedError
from .ipc_types import OperationContext, OperationResult

PUT_COMPONENT_METRIC = "aws.greengrass#PutComponentMetric"
COMPONENT_METRIC_SERVICE = "aws.greengrass.ipc.componentmetric"
STREAM_MANAGER = "aws.greengrass.StreamManager"
MAX_NAME_BYTES = 32
#: The telemetry units (matched as the nucleus does: letters and digits only, any case).
TELEMETRY_UNITS = frozenset(u.lower() for u in (
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "BytesPerSecond", "KilobytesPerSecond", "MegabytesPerSecond", "GigabytesPerSecond",
    "TerabytesPerSecond", "BitsPerSecond", "KilobitsPerSecond", "MegabitsPerSecond",
    "GigabitsPerSecond", "TerabitsPerSecond", "CountPerSecond", "None"))
_INVALID = "Invalid argument found in PutComponentMetricRequest"


def handle_put_component_metric(
    ctx: OperationContext, request: Mapping[str, Any]
) -> OperationResult:
    caller = ctx.component
    if not caller.startswith("aws."):
        raise UnauthorizedError(
            f"Principal {caller} is not authorized to perform "
            f"{COMPONENT_METRIC_SERVICE}:{PUT_COMPONENT_METRIC} "
        )
    metrics = request.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        raise InvalidArgumentsError(
            "Null or Empty list of metrics found in PutComponentMetricRequest"
        )
    accepted = []
    for metric in metrics:
        if not isinstance(metric, Mapping):
            raise InvalidArgumentsError(_INVALID)
        name, unit, value = metric.get("name"), metric.get("unit"), metric.get("value")
        if (not isinstance(name, str) or not name
                or len(name.encode("utf-8")) > MAX_NAME_BYTES
                or not isinstance(unit, str) or not unit
                or isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise InvalidArgumentsError(_INVALID)
        if caller != STREAM_MANAGER and not ctx.nucleus.access_control(caller).allows(
                COMPONENT_METRIC_SERVICE, PUT_COMPONENT_METRIC, name):
            raise UnauthorizedError(
                f"Principal {caller} is not authorized to perform "
                f"{COMPONENT_METRIC_SERVICE}:{PUT_COMPONENT_METRIC} with metric name {name}"
            )
        accepted.append({"time": int(time.time() * 1000), "namespace": caller, "name": name,
                         "unit": unit, "value": value, "aggregation": "Sum"})
    for record in accepted:  # the nucleus translates units after validating every metric
        if re.sub(r"[^A-Za-z0-9]", "", record["unit"]).lower() not in TELEMETRY_UNITS:
            raise InvalidArgumentsError(
                "Invalid telemetry unit: No matching TelemetryUnit type found"
            )
    for record in accepted:
        ctx.nucleus.record_metric(record)
    return OperationResult({})
