"""Component configuration: defaults, validation, string coercion.

Greengrass recipes store numbers and booleans as strings ("5", "0.3", "true"), and users
update configuration with ``--update-config`` JSON where they may be real numbers. Every key
is coerced and range-checked here; a configuration with any invalid key is refused as a whole
(``ConfigError`` lists every problem) so the caller can keep the last valid one in force.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from .classifier.formats import DEFAULT_ACCEPTED_FORMATS, MAX_DECODE_PIXELS, ImageFormat
from .log_text import quote
from .topic_names import publish_topic_problem

MiB = 1024 * 1024

#: Keys Greengrass itself puts into a component's configuration; never ours to validate.
_GREENGRASS_KEYS = frozenset({"accessControl"})

T = TypeVar("T")


class ConfigError(ValueError):
    """One or more configuration values are invalid."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


# --- coercion -------------------------------------------------------------------------------


def as_str(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("must be a string")
    return "" if value is None else str(value)


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "off", ""):
        return False
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ValueError(f"must be true or false, got {value!r}")


def as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                pass
            else:
                if number.is_integer():
                    return int(number)
    raise ValueError(f"must be an integer, got {value!r}")


def as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {value!r}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number, got {value!r}")
    return number


def as_str_list(value: Any) -> tuple[str, ...]:
    """A list of strings; also accepts a JSON list in a string or a comma-separated string."""
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError(f"is not a valid JSON list: {value!r}") from None
        else:
            return tuple(part.strip() for part in text.split(",") if part.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"must be a list of strings, got {value!r}")


def image_formats(value: Any) -> tuple[str, ...]:
    """A non-empty list of known image format names (any case), as their canonical names."""
    names = as_str_list(value)
    if not names:
        raise ValueError("must name at least one image format")
    formats = []
    for name in names:
        fmt = ImageFormat.parse(name)
        if fmt.value not in formats:
            formats.append(fmt.value)
    return tuple(formats)


def optional(coerce: Callable[[Any], T]) -> Callable[[Any], T | None]:
    """Wrap a coercion so that null or an empty string means "not set"."""

    def coerce_optional(value: Any) -> T | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return coerce(value)

    return coerce_optional


def in_range(low: float, high: float) -> Callable[[float | None], None]:
    def check(value: float | None) -> None:
        if value is not None and not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}, got {value:g}")

    return check


def topic_name(value: str) -> None:
    """A topic the components publish on (or, RequestTopic, subscribe to and requesters publish
    on): the IPC's publish rules (:mod:`ggic.topic_names`)."""
    problem = publish_topic_problem(value)
    if problem is not None:
        raise ValueError(f"{problem}, got {quote(value)}")


# --- declarative fields ---------------------------------------------------------------------


def setting(
    key: str,
    default: Any,
    coerce: Callable[[Any], Any],
    check: Callable[[Any], None] | None = None,
    *,
    live: bool = True,
    doc: str = "",
) -> Any:
    """Declare a configuration field: its Greengrass key, coercion, check and liveness.

    ``live=False`` marks keys that only take effect when the component restarts.
    """
    return field(
        default=default,
        metadata={"key": key, "coerce": coerce, "check": check, "live": live, "doc": doc},
    )


def config_from_mapping(cls: type[T], values: Mapping[str, Any]) -> T:
    """Build a config dataclass from Greengrass configuration, coercing every known key."""
    if not isinstance(values, Mapping):
        raise ConfigError(["configuration must be a JSON object"])
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    known_keys = set()
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = f.metadata["key"]
        known_keys.add(key)
        if key not in values:
            continue
        try:
            value = f.metadata["coerce"](values[key])
            if f.metadata["check"] is not None:
                f.metadata["check"](value)
        except ValueError as exc:
            problems.append(f"{key} {exc}")
            continue
        kwargs[f.name] = value
    if problems:
        raise ConfigError(problems)
    config = cls(**kwargs)
    cross_check = getattr(config, "check", None)
    if cross_check is not None:
        cross_check()
    return config


def unknown_keys(cls: type, values: Mapping[str, Any]) -> list[str]:
    """Keys in ``values`` that ``cls`` does not know (likely typos), for a warning."""
    known = {f.metadata["key"] for f in dataclasses.fields(cls)}
    return sorted(k for k in values if k not in known and k not in _GREENGRASS_KEYS)


def changed_keys(old: Any, new: Any) -> list[str]:
    return [
        f.metadata["key"]
        for f in dataclasses.fields(old)
        if getattr(old, f.name) != getattr(new, f.name)
    ]


def with_values_of(new: Any, old: Any, keys: Iterable[str]) -> Any:
    """``new`` with the settings named by ``keys`` (configuration keys) taken from ``old``."""
    wanted = set(keys)
    return dataclasses.replace(new, **{
        f.name: getattr(old, f.name) for f in dataclasses.fields(old)
        if f.metadata["key"] in wanted})


def restart_only_keys(cls: type) -> list[str]:
    return [f.metadata["key"] for f in dataclasses.fields(cls) if not f.metadata["live"]]


def describe_settings(cls: type) -> list[tuple[str, Any, str]]:
    """(key, default, doc) for every setting, for help texts and the README."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append((f.metadata["key"], default, f.metadata["doc"]))
    return out


# --- streams and metrics (issue 12): checks for the keys appended below ----------------------


def optional_topic_name(value: str) -> None:
    """Empty (off) or a topic name without wildcards."""
    if value:
        topic_name(value)


def metrics_namespace(value: str) -> None:
    """A CloudWatch namespace the aws.greengrass.Cloudwatch component accepts."""
    if not value or len(value) > 255 or value.startswith((":", "AWS/")):
        raise ValueError(f"must be 1-255 characters, not starting with ':' or 'AWS/', got "
                         f"{value!r}")


def one_of(*choices: str) -> Callable[[str], None]:
    def check(value: str) -> None:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")

    return check


def lower_str(value: Any) -> str:
    return as_str(value).strip().lower()


def stream_name(value: str) -> None:
    if not value or len(value) > 40 or not all(c.isalnum() or c in "._" for c in value):
        raise ValueError(f"must be 1-40 letters, digits, '.' or '_', got {value!r}")


# --- the components' configurations ---------------------------------------------------------


def model_profile_value(value: Any) -> str | Mapping[str, Any]:
    """ModelProfile: a profile name, or an object describing a custom model (maybe as JSON text)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except ValueError:
                raise ValueError("is not valid JSON") from None
            return dict(parsed)
        if not text:
            raise ValueError("must not be empty (use 'auto')")
        return text
    raise ValueError(f"must be a profile name or an object, got {value!r}")


def backend_name(value: str) -> None:
    """A registered inference backend's name, or auto."""
    from .classifier.backends.registry import BACKEND_CHOICES  # a leaf module: no cycle

    if value not in BACKEND_CHOICES:
        raise ValueError(f"must be one of {', '.join(BACKEND_CHOICES)}, got {value!r}")


@dataclass(frozen=True)
class ClassifierConfig:
    """Configuration of com.custom.ImageClassifier (keys as in the recipe)."""

    model_dir: str = setting(
        "ModelDir", "", as_str,
        doc="Directory of the model (compiled DLR, or ONNX). Empty: the ModelStore model for this "
        "platform, as copied by the recipe's Install step.",
    )
    model_profile: Any = setting(
        "ModelProfile", "auto", model_profile_value,
        doc="auto | modelstore-resnet50 | neo-vgg16 | efficientnet-lite0 | an object "
        "describing a custom model (see README).",
    )
    backend: str = setting(
        "Backend", "auto", lambda v: as_str(v).strip().lower(), backend_name,
        doc="Inference backend: auto (by the model directory's files: *.onnx -> onnx, "
        "compiled .so/.params/.json -> dlr) | dlr | onnx (needs ggic[onnx]).",
    )
    labels_path: str = setting(
        "LabelsPath", "", as_str,
        doc="Labels file (synset dict literal, class-index JSON, or one label per line). "
        "Empty: synset.txt or labels.txt in the model directory.",
    )
    top_k: int = setting("TopK", 5, as_int, in_range(1, 100), doc="Predictions per result.")
    score_threshold: float = setting(
        "ScoreThreshold", 0.3, as_float, in_range(0.0, 1.0),
        doc="Drop predictions whose probability is below this.",
    )
    request_topic: str = setting(
        "RequestTopic", "local/inference", as_str, topic_name, doc="Topic to take requests from."
    )
    result_topic: str = setting(
        "ResultTopic", "local/result", as_str, topic_name,
        doc="Topic for results of requests without reply_to.",
    )
    allowed_image_dirs: tuple[str, ...] = setting(
        "AllowedImageDirs", (), as_str_list,
        doc="Directories that image_path/tensor_path may point into (after resolving "
        "symlinks). Empty: any file this component can read.",
    )
    max_image_bytes: int = setting(
        "MaxImageBytes", 10 * MiB, as_int, in_range(1, 512 * MiB),
        doc="Largest encoded image (file or inline) accepted.",
    )
    max_image_pixels: int = setting(
        "MaxImagePixels", 40_000_000, as_int, in_range(1, MAX_DECODE_PIXELS),
        doc="Largest image (width x height) decoded.",
    )
    accepted_image_formats: tuple[str, ...] = setting(
        "AcceptedImageFormats", tuple(f.value for f in DEFAULT_ACCEPTED_FORMATS), image_formats,
        doc="Image formats decoded (JPEG, PNG, BMP, WebP: the ones whose size is read from "
        "the header before decoding); any other format is refused as UNSUPPORTED_IMAGE.",
    )
    queue_size: int = setting(
        "QueueSize", 32, as_int, in_range(1, 100_000),
        doc="Requests waiting beyond this are answered BUSY.",
    )
    workers: int = setting(
        "Workers", 1, as_int, in_range(1, 16), live=False,
        doc="Decode/preprocess threads (inference itself is one thread per model).",
    )
    inference_threads: int = setting(
        "InferenceThreads", 1, as_int, in_range(0, 256), live=False,
        doc="Threads the model's inference uses (OpenMP and TVM pools); 0: the runtime's "
        "default (all CPUs for OpenMP, half for TVM on x86_64). 1 keeps inference steady "
        "when other processes share the CPUs (restart to change).",
    )
    publish_to_iot_core: bool = setting(
        "PublishToIoTCore", False, as_bool, doc="Also publish each result to AWS IoT Core."
    )
    iot_core_topic: str = setting(
        "IoTCoreTopic", "ml/dlr/image-classification", as_str, topic_name,
        doc="IoT Core topic for results when PublishToIoTCore is true.",
    )
    update_deferral_timeout: float = setting(
        "UpdateDeferralTimeout", 30.0, as_float, in_range(0.0, 3600.0),
        doc="Seconds a deployment that would stop the classifier is deferred "
        "(DeferComponentUpdate) "
        "while requests it accepted are still unanswered; 0: never deferred.",
    )
    metrics_interval: float = setting(
        "MetricsInterval", 0.0, as_float, in_range(0.0, 24 * 3600),
        doc="Seconds between metric publications to MetricsTopic (aws.greengrass.Cloudwatch's "
        "input format); 0: off (the recipe sets 60).",
    )
    metrics_topic: str = setting(
        "MetricsTopic", "cloudwatch/metric/put", as_str, topic_name,
        doc="Local topic the aws.greengrass.Cloudwatch component takes metrics from.",
    )
    metrics_namespace: str = setting(
        "MetricsNamespace", "ggic", as_str, metrics_namespace,
        doc="CloudWatch namespace of the metrics.",
    )


@dataclass(frozen=True)
class RequesterConfig:
    """Configuration of com.custom.requester (keys as in the recipe)."""

    image_directory: str = setting(
        "ImageDirectory", "/tmp/images", as_str, doc="Directory whose images are classified."
    )
    inference_interval: float = setting(
        "InferenceInterval", 60.0, as_float, in_range(0.0, 7 * 24 * 3600),
        doc="Seconds between rounds (0: one round only).",
    )
    request_topic: str = setting(
        "RequestTopic", "local/inference", as_str, topic_name, doc="Topic requests go to."
    )
    result_topic: str = setting(
        "ResultTopic", "local/result", as_str, topic_name, doc="Topic results come back on."
    )
    result_timeout: float = setting(
        "ResultTimeout", 30.0, as_float, in_range(0.1, 3600),
        doc="Seconds to wait for each result before logging a timeout.",
    )
    send_inline: bool = setting(
        "SendInline", False, as_bool,
        doc="Send image bytes inline (image_b64) instead of paths.",
    )
    top_k: int | None = setting(
        "TopK", None, optional(as_int), in_range(1, 100),
        doc="Per-request top_k (empty: the classifier's TopK).",
    )
    score_threshold: float | None = setting(
        "ScoreThreshold", None, optional(as_float), in_range(0.0, 1.0),
        doc="Per-request threshold (empty: the classifier's ScoreThreshold).",
    )
    source: str = setting(
        "Source", "", as_str,
        doc="Empty: the images in ImageDirectory. Otherwise a camera or stream, classified "
        "frame by frame: a device (/dev/video0, or an index such as 0), a URL (rtsp://, "
        "http:// MJPEG) or a video file.",
    )
    max_fps: float = setting(
        "MaxFps", 0.0, as_float, in_range(0.0, 1000.0),
        doc="Stream: take at most this many frames per second (0: every frame).",
    )
    capture_width: int = setting(
        "CaptureWidth", 0, as_int, in_range(0, 10000),
        doc="Stream: frame width to ask a device for (0: its default).",
    )
    capture_height: int = setting(
        "CaptureHeight", 0, as_int, in_range(0, 10000),
        doc="Stream: frame height to ask a device for (0: its default).",
    )
    max_in_flight: int = setting(
        "MaxInFlight", 1, as_int, in_range(1, 64),
        doc="Stream: requests outstanding at once; of the frames captured meanwhile the "
        "newest is sent when a result frees room, the others are dropped (counted), never "
        "queued.",
    )
    frame_transport: str = setting(
        "FrameTransport", "file", lower_str, one_of("file", "inline"),
        doc="Stream: how frames travel: file (a ring of frame files in FrameDirectory) or "
        "inline (image_b64 in the request).",
    )
    frame_format: str = setting(
        "FrameFormat", "bmp", lower_str, one_of("bmp", "jpeg"),
        doc="Stream: frame encoding: bmp (no compression: no encoding or decoding work) or "
        "jpeg (smaller).",
    )
    frame_directory: str = setting(
        "FrameDirectory", "/tmp/images/frames", as_str,
        doc="Stream, FrameTransport file: where the frame ring lives; must be inside the "
        "classifier's AllowedImageDirs; best a tmpfs.",
    )
    video_real_time: bool = setting(
        "VideoRealTime", True, as_bool,
        doc="Video file: play it at its own frame rate like a camera (frames dropped while "
        "busy); false: classify every frame as fast as results come (read one frame ahead).",
    )
    loop_video: bool = setting(
        "LoopVideo", False, as_bool,
        doc="Video file: start again at its end (false: the component finishes).",
    )
    reconnect_max_delay: float = setting(
        "ReconnectMaxDelay", 10.0, as_float, in_range(0.1, 3600),
        doc="Stream: longest wait between attempts to reopen a lost camera or stream.",
    )
    stream_name: str = setting(
        "StreamName", "cam", as_str, stream_name,
        doc="Stream: request ids are <StreamName>-<frame>-<capture ms>; give each camera "
        "its own.",
    )
    changes_topic: str = setting(
        "ChangesTopic", "", as_str, optional_topic_name,
        doc="Stream: publish only changes (top-1 label, or its score crossing "
        "ChangeThreshold) to this local topic (empty: off; needs an accessControl policy).",
    )
    change_threshold: float = setting(
        "ChangeThreshold", 0.5, as_float, in_range(0.0, 1.0),
        doc="Stream: the score the top-1 label must reach to count as present.",
    )
    metrics_interval: float = setting(
        "MetricsInterval", 0.0, as_float, in_range(0.0, 24 * 3600),
        doc="Stream: seconds between metric publications to MetricsTopic; 0: off (the recipe "
        "sets 60).",
    )
    metrics_topic: str = setting(
        "MetricsTopic", "cloudwatch/metric/put", as_str, topic_name,
        doc="Local topic the aws.greengrass.Cloudwatch component takes metrics from.",
    )
    metrics_namespace: str = setting(
        "MetricsNamespace", "ggic", as_str, metrics_namespace,
        doc="CloudWatch namespace of the metrics.",
    )
