"""The classifier component: requests from IPC in, one result per request out.

Threads and queues (no inference and no IPC call ever runs on an IPC callback thread):

    IPC callback --parse/validate--> work queue (bounded: QueueSize; full -> BUSY)
    work queue --Workers threads: read, decode, preprocess--> ready queue (small)
    ready queue --one inference thread: the model--> outbox
    any stage's error --------------------------------------> outbox
    outbox --one publisher thread--> PublishToTopic (and PublishToIoTCore when enabled)

Decoding the next request overlaps inference of the current one, and the one ``DLRModel`` is
only ever run by the inference thread, its warm-up included: a model's OpenMP kernels keep a
thread pool per thread that runs them, and a second pool (say, the main thread's, from a warm-up
there) oversubscribes the cores, which makes libgomp's barriers sleep instead of spin: inference
on a 2-core machine took 1.5-1.7x as long. ``pending`` counts messages received and not yet
answered; on SIGTERM the service unsubscribes, classifies what it accepted for up to
DRAIN_TIMEOUT_S, answers the rest UNAVAILABLE, and exits 0.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from ..cloudwatch_metrics import MetricsPublisher, MetricsSettings  # metrics (issue 12)
from ..config import (
    ClassifierConfig,
    ConfigError,
    changed_keys,
    config_from_mapping,
    restart_only_keys,
    unknown_keys,
    with_values_of,
)
from ..ipc import IpcClient, IpcError, Subscription
from ..log_text import escape, quote
from ..messages import (
    ClassificationError,
    ClassificationRequest,
    ClassificationResult,
    ErrorCode,
    decode_payload,
    new_request_id,
    parse_request,
    request_id_of,
)
from ..rate_limited_log import RateLimitedCounter
from .inputs import InputLimits
from .metrics import ClassifierMetrics  # metrics (issue 12)
from .model import ModelLoadError, load_model
from .pipeline import ClassificationPipeline, PreparedInput, result_timing
from .profiles import resolve_profile
from .topic_policy import publish_resources, topic_allowed

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR_ENV = "GGIC_DEFAULT_MODEL_DIR"
MODEL_KEYS = ("ModelDir", "ModelProfile", "LabelsPath", "Backend")
#: How long a stopping service goes on classifying the requests it accepted.
DRAIN_TIMEOUT_S = 4.0  # Greengrass sends SIGKILL 5 s after SIGTERM
#: Past the drain time, what is still queued is answered UNAVAILABLE; this much more is allowed
#: for the inference in flight and the publishing.
DRAIN_GRACE_S = 0.8
PUBLISH_ATTEMPTS = 3

ModelLoader = Callable[[ClassifierConfig], ClassificationPipeline]


def default_model_loader(config: ClassifierConfig) -> ClassificationPipeline:
    """Load the model the configuration names (ModelDir empty: $GGIC_DEFAULT_MODEL_DIR, which
    the recipe sets to the ModelStore model copied for this platform). Not warmed up: the
    service does that on its inference thread."""
    model_dir = config.model_dir or os.environ.get(DEFAULT_MODEL_DIR_ENV, "")
    return ClassificationPipeline(load_model(
        model_dir, resolve_profile(config.model_profile), config.labels_path,
        backend=config.backend, warm_up=False))


class WarmUp:
    """A warm-up for the inference thread to run; the loading thread waits for its outcome."""

    def __init__(self, pipeline: ClassificationPipeline) -> None:
        self.pipeline = pipeline
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.ms = 0.0

    def run(self) -> None:
        try:
            self.ms = self.pipeline.warm_up()
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()


@dataclass(frozen=True)
class Job:
    """An accepted request, with the settings in force when it was accepted."""

    request: ClassificationRequest
    reply_topic: str
    top_k: int
    threshold: float
    limits: InputLimits
    accepted_at: float


@dataclass(frozen=True)
class Outgoing:
    topic: str
    result: ClassificationResult
    iot_core_topic: str | None = None


_STOP = object()


class ClassifierService:
    def __init__(
        self,
        ipc: IpcClient,
        overrides: Mapping[str, Any] | None = None,
        *,
        model_loader: ModelLoader = default_model_loader,
    ) -> None:
        self.ipc = ipc
        self.overrides = dict(overrides or {})
        self.model_loader = model_loader
        self.config = ClassifierConfig()
        self.pipeline: ClassificationPipeline | None = None
        self.model_error: str | None = "the model is still loading"
        self._publish_policy: tuple[str, ...] = ()
        self._limits_cache = InputLimits()
        self._work: queue.Queue[Job] = queue.Queue()
        self._ready: queue.Queue[Any] = queue.Queue()
        self._outbox: queue.Queue[Any] = queue.Queue()
        self._control: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._accepting = threading.Event()
        self._drain_deadline: float | None = None
        self._pending = 0
        self._pending_lock = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._request_sub: Subscription | None = None
        self._config_sub: Subscription | None = None
        self.answered = 0
        self._busy_log = RateLimitedCounter(
            "refused %d request(s) as BUSY in %.1f s: the queue (QueueSize) was full; "
            "raise QueueSize or Workers, or send fewer requests%s", logger=log)
        self._refused_log = RateLimitedCounter(
            "refused %d request(s) in %.1f s; the latest: %s", logger=log)
        self._failed_log = RateLimitedCounter(
            "%d request(s) failed in %.1f s; the latest: %s", logger=log)
        self.metrics = ClassifierMetrics(self._work.qsize)  # metrics (issue 12)
        self._metrics_publisher = MetricsPublisher(  # metrics (issue 12)
            self.ipc.publish, self.metrics.take, lambda: MetricsSettings.of(self.config))

    # --- configuration -----------------------------------------------------------------------

    def read_config(self) -> ClassifierConfig:
        values = self.ipc.get_configuration()
        if not isinstance(values, Mapping):
            values = {}
        merged = {**values, **self.overrides}
        for key in unknown_keys(ClassifierConfig, merged):
            log.warning("ignoring unknown configuration key %s (a typo?)", key)
        config = config_from_mapping(ClassifierConfig, merged)
        self._publish_policy = publish_resources(values.get("accessControl"))
        return config

    def _limits(self, config: ClassifierConfig) -> InputLimits:
        return InputLimits.from_config(config)

    def apply_config_update(self) -> None:
        """Re-read the configuration; refuse it whole if invalid, apply what changed."""
        old = self.config
        try:
            new = self.read_config()
        except ConfigError as exc:
            log.error("refused configuration update: %s. The last valid configuration stays "
                      "in force.", exc)
            return
        except IpcError as exc:
            log.error("could not read the configuration update: %s", exc)
            return
        changed = changed_keys(old, new)
        if not changed:
            return
        self.config = new
        self._limits_cache = self._limits(new)
        self._work.maxsize = new.queue_size
        log.info("configuration updated: %s", ", ".join(f"{k}" for k in changed))
        for key in restart_only_keys(ClassifierConfig):
            if key in changed:
                log.warning("%s changed; it takes effect when the component restarts", key)
        if "RequestTopic" in changed:
            self._subscribe_requests()
        model_keys = [key for key in MODEL_KEYS if key in changed]
        if model_keys and not self._load_model() and self.pipeline is not None:
            # refused like an invalid update: the model that works keeps serving
            self.config = with_values_of(self.config, old, model_keys)

    # --- model -------------------------------------------------------------------------------

    def _load_model(self) -> bool:
        """Load and warm up the configured model; it replaces the current one only once it is
        ready. If it can't load and no model serves yet: ERRORED (requests get MODEL_ERROR);
        if one serves already, it keeps serving and the failure is only logged."""
        load_started = time.perf_counter()  # metrics (issue 12)
        current = self.pipeline
        current_name = current.info.summary().get("name", "?") if current is not None else ""
        try:
            pipeline = self.model_loader(self.config)
            self._warm_up(pipeline)
        except (ModelLoadError, ConfigError) as exc:
            if current is not None:
                log.error("refused the new model settings: cannot load the model: %s. The "
                          "previous model (%s) keeps serving.", exc, current_name)
                return False
            self.model_error = str(exc)
            log.error("cannot load the model: %s", exc)
            self._report_state("ERRORED")
            return False
        if current is not None:
            log.info("the new model takes over from %s", current_name)
        self.pipeline = pipeline
        self.metrics.record_model_load(  # metrics (issue 12)
            (time.perf_counter() - load_started) * 1000.0, pipeline.info.summary().get("name", "?"))
        self.model_error = None
        self._report_state("RUNNING")
        return True

    def _warm_up(self, pipeline: ClassificationPipeline) -> None:
        """Warm the new model up on the inference thread (the one that will run it), between
        requests; the current model keeps serving until then. Raises ModelLoadError."""
        warm_up = WarmUp(pipeline)
        self._ready.put(warm_up)
        warm_up.done.wait()
        if warm_up.error is not None:
            pipeline.close()
            raise ModelLoadError(f"warm-up inference failed: {warm_up.error}") from warm_up.error
        log.info("warm-up inference on the inference thread: %.1f ms", warm_up.ms)

    def _report_state(self, state: str) -> None:
        try:
            self.ipc.update_state(state)
        except IpcError as exc:
            log.warning("could not report state %s: %s", state, exc)

    # --- intake (IPC callback threads: no blocking, no IPC) ----------------------------------

    def on_request(self, topic: str, payload: Any) -> None:
        """IPC callback: exactly one answer for every message, whatever it holds (any
        exception here is answered too, as INTERNAL_ERROR: a bug, never reached by input)."""
        received = time.perf_counter()
        with self._pending_lock:
            self._pending += 1
        config = self.config
        try:
            self._take(topic, payload, config, received)
        except Exception as exc:
            log.exception("taking a request on %s failed", escape(topic))
            self._send(config.result_topic, ClassificationResult.failure(
                new_request_id(), ErrorCode.INTERNAL_ERROR,
                f"the classifier failed to take this request ({type(exc).__name__}); "
                "please report it"))

    def _take(self, topic: str, payload: Any, config: ClassifierConfig,
              received: float) -> None:
        try:
            message = decode_payload(payload)
            if not self._accepting.is_set():
                raise ClassificationError(
                    ErrorCode.UNAVAILABLE, "the classifier is shutting down",
                    request_id_of(message))
            request = parse_request(message, max_inline_bytes=config.max_image_bytes)
            reply_topic = self._reply_topic(request, config)
        except ClassificationError as exc:
            rid = exc.request_id or new_request_id()
            result = ClassificationResult.from_error(exc, rid)
            self._refused_log.note(f"{rid} on {escape(topic)}: {exc.code.value}: "
                                   f"{result.error_message}")
            self._send(config.result_topic, result)
            return
        job = Job(
            request=request,
            reply_topic=reply_topic,
            top_k=request.top_k if request.top_k is not None else config.top_k,
            threshold=request.threshold if request.threshold is not None
            else config.score_threshold,
            limits=self._limits_cache,
            accepted_at=received,
        )
        try:
            self._work.put_nowait(job)
        except queue.Full:
            self._busy_log.note()
            self._send(reply_topic, ClassificationResult.failure(
                request.request_id, ErrorCode.BUSY,
                f"{self._work.qsize()} requests are waiting (QueueSize {config.queue_size}); "
                "retry later"))

    def _reply_topic(self, request: ClassificationRequest, config: ClassifierConfig) -> str:
        if request.reply_to is None or request.reply_to == config.result_topic:
            return config.result_topic
        if not topic_allowed(request.reply_to, self._publish_policy):
            raise ClassificationError(
                ErrorCode.INVALID_REQUEST,
                f"reply_to {quote(request.reply_to)} is not a topic the classifier may publish "
                "to (see its accessControl)",
                request.request_id,
            )
        return request.reply_to

    # --- pipeline stages (own threads) -------------------------------------------------------

    def _worker(self) -> None:
        while True:
            job = self._work.get()
            if job is _STOP:
                return
            if self._out_of_time(job):
                continue
            pipeline = self.pipeline
            try:
                if pipeline is None:
                    raise ClassificationError(ErrorCode.MODEL_ERROR,
                                              f"no model loaded: {self.model_error}")
                prepared = pipeline.prepare(job.request.source, job.limits)
            except ClassificationError as exc:
                self._send_error(job, exc)
                continue
            except Exception as exc:  # a bug: answer, log, keep going
                log.exception("preparing request %s failed", job.request.request_id)
                self._send_error(job, ClassificationError(ErrorCode.INTERNAL_ERROR, str(exc)))
                continue
            self._ready.put((job, pipeline, prepared))

    def _inference(self) -> None:
        while True:
            item = self._ready.get()
            if item is _STOP:
                return
            if isinstance(item, WarmUp):
                item.run()
                continue
            job, pipeline, prepared = item
            if self._out_of_time(job):
                continue
            prepared: PreparedInput
            try:
                run = pipeline.run_model(prepared)
                predictions = pipeline.predictions(run.scores, job.top_k, job.threshold)
            except ClassificationError as exc:
                self._send_error(job, exc)
                continue
            except Exception as exc:
                log.exception("inference for request %s failed", job.request.request_id)
                self._send_error(job, ClassificationError(ErrorCode.INTERNAL_ERROR, str(exc)))
                continue
            timing = result_timing(prepared, run,
                                   (time.perf_counter() - job.accepted_at) * 1000.0)
            result = ClassificationResult.success(
                job.request.request_id, predictions, pipeline.info.summary(), timing)
            self._send(job.reply_topic, result)

    def _out_of_time(self, job: Job) -> bool:
        """Stopping and past the drain time: answer ``job`` UNAVAILABLE instead of working."""
        deadline = self._drain_deadline
        if deadline is None or time.monotonic() < deadline:
            return False
        self._send_error(job, ClassificationError(
            ErrorCode.UNAVAILABLE, "the classifier stopped before it could classify this "
            "request; send it again when it runs", job.request.request_id))
        return True

    def _send_error(self, job: Job, exc: ClassificationError) -> None:
        result = ClassificationResult.failure(job.request.request_id, exc.code, exc.message)
        self._failed_log.note(f"{result.request_id}: {exc.code.value}: {result.error_message}")
        self._send(job.reply_topic, result)

    def _send(self, topic: str, result: ClassificationResult) -> None:
        config = self.config
        iot_topic = config.iot_core_topic if config.publish_to_iot_core else None
        self.metrics.record_result(result)  # metrics (issue 12)
        self._outbox.put(Outgoing(topic, result, iot_topic))

    def _publisher(self) -> None:
        while True:
            item = self._outbox.get()
            if item is _STOP:
                return
            try:
                self._publish(item)
            finally:
                with self._pending_lock:
                    self._pending -= 1
                    self.answered += 1
                    self._pending_lock.notify_all()

    def _publish(self, item: Outgoing) -> None:
        payload = item.result.to_dict()
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                self.ipc.publish(item.topic, payload)
                break
            except IpcError as exc:
                if exc.kind == "UnauthorizedError" or attempt == PUBLISH_ATTEMPTS:
                    log.error("could not publish the result of %s on %s: %s",
                              item.result.request_id, item.topic, exc)
                    break
                time.sleep(0.05 * attempt)
        if item.iot_core_topic:
            try:
                self.ipc.publish_to_iot_core(item.iot_core_topic, payload)
            except IpcError as exc:
                log.error("could not publish the result of %s to IoT Core topic %s: %s",
                          item.result.request_id, item.iot_core_topic, exc)

    # --- lifecycle ---------------------------------------------------------------------------

    def _subscribe_requests(self) -> None:
        if self._request_sub is not None:
            self._request_sub.close()
        topic = self.config.request_topic
        self._request_sub = self.ipc.subscribe(topic, self.on_request)
        log.info("taking requests from %s", topic)

    def start(self) -> None:
        """Read configuration, load the model, start the threads, subscribe. Raises ConfigError."""
        self.config = self.read_config()
        self._limits_cache = self._limits(self.config)
        self._work.maxsize = self.config.queue_size
        self._ready.maxsize = self.config.workers + 1
        self._config_sub = self.ipc.subscribe_configuration(
            lambda _key_path: self._control.put("config"))
        self._start_threads()
        self._metrics_publisher.start()  # metrics (issue 12)
        self._load_model()
        self._accepting.set()
        self._subscribe_requests()

    def _start_threads(self) -> None:
        specs = [(self._publisher, "publisher"), (self._inference, "inference")]
        specs += [(self._worker, f"preprocess-{i}") for i in range(self.config.workers)]
        for target, name in specs:
            thread = threading.Thread(target=target, name=f"ggic-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Ask :meth:`serve` to stop (safe from a signal handler)."""
        self._stop.set()
        self._control.put("stop")

    def serve(self) -> None:
        """Handle configuration updates until :meth:`stop`; then drain and shut down."""
        while not self._stop.is_set():
            try:
                event = self._control.get(timeout=1.0)
            except queue.Empty:
                continue
            if event == "config":
                while not self._control.empty():  # coalesce bursts of update events
                    if self._control.get_nowait() == "stop":
                        self._stop.set()
                if not self._stop.is_set():
                    self.apply_config_update()
        self.shutdown()

    def shutdown(self) -> None:
        log.info("stopping: no new requests; answering the ones accepted")
        self._accepting.clear()
        for sub in (self._request_sub, self._config_sub):
            if sub is not None:
                sub.close()
        self._drain_deadline = time.monotonic() + DRAIN_TIMEOUT_S
        if not self.wait_idle(DRAIN_TIMEOUT_S + DRAIN_GRACE_S):
            log.error("stopped with %d requests unanswered after %.1f s", self._pending,
                      DRAIN_TIMEOUT_S + DRAIN_GRACE_S)
        for _ in range(self.config.workers):
            self._work.put(_STOP)  # type: ignore[arg-type]
        self._ready.put(_STOP)
        self._outbox.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=5)
        self._metrics_publisher.stop()  # metrics (issue 12): publishes the last interval
        log.info("stopped after answering %d requests", self.answered)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every received request has been answered."""
        deadline = time.monotonic() + timeout
        with self._pending_lock:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._pending_lock.wait(remaining)
        return True


def run_classifier(ipc: IpcClient, overrides: Mapping[str, Any] | None = None,
                   install_signals: Callable[[Callable[[], None]], None] | None = None,
                   model_loader: ModelLoader = default_model_loader) -> int:
    """Run the component until SIGTERM; the process exit code."""
    service = ClassifierService(ipc, overrides, model_loader=model_loader)
    if install_signals is not None:
        install_signals(service.stop)
    try:
        service.start()
    except ConfigError as exc:
        log.error("invalid configuration: %s. Fix it with a deployment "
                  "(--update-config) and the component restarts.", exc)
        service._report_state("ERRORED")
        return 1
    service.serve()
    return 0

