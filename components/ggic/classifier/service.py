"""The classifier component: requests from IPC in, one result per request out.

Threads and queues (no inference and no IPC call ever runs on an IPC callback thread):

    IPC callback --parse/validate--> work queue (bounded: QueueSize; full -> BUSY)
    work queue --Workers threads: read, decode, preprocess--> ready queue (small)
    ready queue --one inference thread: the model--> outbox
    any stage's error --------------------------------------> outbox
    outbox --publisher: up to 32 publishes in flight--> PublishToTopic (and PublishToIoTCore)

(A result with nothing queued ahead of it is published by the thread that made it, without
the outbox hand-off: see :mod:`.publisher`.)

Decoding the next request overlaps inference of the current one, and the one ``DLRModel`` is
only ever run by the inference thread, its warm-up included: a model's thread pools (OpenMP's
team, TVM's pool) belong to the thread that runs it, so the warm-up there sizes them
(``InferenceThreads``, applied first) and no second pool is left on another thread.

Requests arrive on an IPC connection of their own (:mod:`.intake`): its callback counts each
one received, then waits while MAX_OWED + QueueSize answers are owed, so a flood waits unread
in the socket instead of in memory; answers leave on the main connection. Every request
received is answered exactly once: :attr:`ClassifierService.owed` goes up in one place
(:meth:`ClassifierService._delivery`) and down once per answer, when its publish has finished.
RUNNING is reported only once the model is warm and the request subscription is in place. A
subscription whose stream ends is opened again (with backoff); if either IPC connection is gone
the service stops and the process exits 1, so Greengrass restarts it.

On SIGTERM: close the request stream at once and answer UNAVAILABLE whatever the SDK still
hands us until the close completes (at most INTAKE_CLOSE_S, then the request connection is
closed: what it never read was never delivered), classify until DRAIN_TIMEOUT_S, answer the
rest UNAVAILABLE, publish every answer; all within STOP_BUDGET_S."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Callable

from ..config import (
    ClassifierConfig,
    ConfigError,
    changed_keys,
    config_from_mapping,
    restart_only_keys,
    unknown_keys,
    with_values_of,
)
from ..ipc import IpcClient, IpcError, IpcErrorKind, Subscription
from ..log_text import escape, quote
from ..messages import (
    ClassificationError,
    ClassificationRequest,
    ClassificationResult,
    ErrorCode,
    decode_payload,
    new_request_id,
    parse_request,
)
from ..rate_limited_log import RateLimitedCounter
from .control import Control, Reopening
from .deployment_hooks import DeploymentHooks
from .dispatch import PipelineQueues
from .inference_threads import RUNTIME_DEFAULT
from .inputs import InputLimits
from .intake import OwedAnswers, RequestIntake
from .metrics import ClassifierMetrics
from .model import ModelLoadError
from .model_loader import ModelLoader, default_model_loader
from .pipeline import ClassificationPipeline, result_timing
from .publisher import Outgoing, Publisher
from .stages import STOP, Job, Prepared, Stop, WarmUp
from .topic_policy import publish_resources, topic_allowed

log = logging.getLogger(__name__)

MODEL_KEYS = ("ModelDir", "ModelProfile", "LabelsPath", "Backend")
#: How long a stopping service goes on classifying the requests it accepted; then what is still
#: queued is answered UNAVAILABLE.
DRAIN_TIMEOUT_S = 1.8
#: How long a stopping service waits for the request stream to close (answering UNAVAILABLE
#: what still arrives); then it closes the request connection.
INTAKE_CLOSE_S = 1.8
#: By then every answer has been published and the service has stopped (Greengrass sends
#: SIGKILL 5 s after SIGTERM; the rest is for the process to exit, with a margin for a loaded
#: device).
STOP_BUDGET_S = 2.8
#: At most this many admitted requests wait for their answer (beyond QueueSize): while that
#: many do, the request callback waits and the SDK reads no further, so memory stays bounded
#: and a SIGTERM never finds more answers owed than it can publish in time.
MAX_OWED = 128
#: Re-opening a subscription whose stream ended: first pause, doubling up to the last.
RESUBSCRIBE_BACKOFF_S = (0.1, 5.0)
BUSY_MESSAGE = "the classifier's queue (QueueSize) is full; retry later"
SHUTTING_DOWN_MESSAGE = "the classifier is shutting down; send it again when it runs"
UNAVAILABLE_MESSAGE = ("the classifier stopped before it could classify this request; send it "
                       "again when it runs")

class ClassifierService:
    def __init__(
        self,
        ipc: IpcClient,
        overrides: Mapping[str, Any] | None = None,
        *,
        model_loader: ModelLoader = default_model_loader,
        intake: IpcClient | None = None,
    ) -> None:
        """``intake``: the connection that carries only the request subscription (its
        callbacks on its network thread, see :mod:`.intake`); without one, ``ipc``'s."""
        self.ipc = ipc
        self._intake = RequestIntake(intake or ipc, dedicated=intake is not None)
        self.overrides = dict(overrides or {})
        self.model_loader = model_loader
        self.config = ClassifierConfig()
        self.pipeline: ClassificationPipeline | None = None
        self.model_error: str | None = "the model is still loading"
        self._publish_policy: tuple[str, ...] = ()
        self._inference_threads = RUNTIME_DEFAULT
        self._limits_cache = InputLimits()
        self._queues = PipelineQueues()
        self._publisher = Publisher(ipc, self._answered)
        self._control: queue.Queue[Any] = queue.Queue()  # Control, deployment_hooks events
        self._stop = threading.Event()
        self._accepting = threading.Event()
        self._drain_deadline: float | None = None
        self._owed = OwedAnswers()
        self._threads: list[threading.Thread] = []
        self._config_sub: Subscription | None = None
        self._reopening = Reopening(*RESUBSCRIBE_BACKOFF_S)
        self._hooks = DeploymentHooks(ipc, self.overrides, lambda: self._owed.owed,
                                      lambda: self.config, self._control.put)
        self.connection_lost = False
        self._busy_log = RateLimitedCounter(
            "refused %d request(s) as BUSY in %.1f s: the queue (QueueSize) was full; "
            "raise QueueSize or Workers, or send fewer requests%s", logger=log)
        self._refused_log = RateLimitedCounter(
            "refused %d request(s) in %.1f s; the latest: %s", logger=log)
        self._failed_log = RateLimitedCounter(
            "%d request(s) failed in %.1f s; the latest: %s", logger=log)
        self.metrics = ClassifierMetrics(self._queues.qsize, ipc, lambda: self.config)

    @property
    def received(self) -> int:
        """Request callbacks invoked (each is answered exactly once)."""
        return self._owed.received

    @property
    def delivered(self) -> int:
        """Received and admitted past the MAX_OWED bound."""
        return self._owed.delivered

    @property
    def answered(self) -> int:
        return self._owed.answered

    @property
    def owed(self) -> int:
        return self._owed.owed

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
        self._queues.queue_size = new.queue_size
        log.info("configuration updated: %s", ", ".join(f"{k}" for k in changed))
        for key in restart_only_keys(ClassifierConfig):
            if key in changed:
                log.warning("%s changed; it takes effect when the component restarts", key)
        if "RequestTopic" in changed:
            self._resubscribe(Control.RESUBSCRIBE_REQUESTS)  # on failure: retried, backing off
        model_keys = [key for key in MODEL_KEYS if key in changed]
        if model_keys and not self._load_model() and self.pipeline is not None:
            # refused like an invalid update: the model that works keeps serving
            self.config = with_values_of(self.config, old, model_keys)

    # --- model -------------------------------------------------------------------------------

    def _load_model(self) -> bool:
        """Load and warm up the configured model; it replaces the current one only once it is
        ready. If it can't load and no model serves yet: ERRORED (requests get MODEL_ERROR);
        if one serves already, it keeps serving and the failure is only logged."""
        load_started = time.perf_counter()
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
            if self._accepting.is_set():  # at start-up, start() reports it
                self._report_state("ERRORED")
            return False
        if current is not None:
            log.info("the new model takes over from %s", current_name)
        self.pipeline = pipeline
        self.metrics.record_model_load(load_started, pipeline.info.summary())
        self.model_error = None
        if current is not None:  # at start-up, RUNNING waits for the request subscription
            self._report_state("RUNNING")
        return True

    def _warm_up(self, pipeline: ClassificationPipeline) -> None:
        """Warm the new model up on the inference thread (the one that will run it), between
        requests; the current model keeps serving until then. Raises ModelLoadError."""
        warm_up = WarmUp(pipeline, self._inference_threads)
        self._queues.put_for_inference(warm_up)
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

    # --- intake (the request connection's thread: waits for room, no IPC) ------------------

    @contextmanager
    def _delivery(self, topic: str) -> Iterator[None]:
        """One received message: counted here, admitted once fewer than MAX_OWED + QueueSize
        answers are owed (the wait that holds a flood back in the socket), then answered by the
        body, each path of which hands its answer or its job on as the last thing it does. If
        the body raises, nothing was handed on: the message is answered INTERNAL_ERROR here (a
        bug, never reached by input), so it is never left owed."""
        self._owed.admit(MAX_OWED + self.config.queue_size)
        try:
            yield
        except Exception as exc:
            try:
                log.exception("taking a request on %s failed", escape(topic))
                self._send(self.config.result_topic, ClassificationResult.failure(
                    new_request_id(), ErrorCode.INTERNAL_ERROR,
                    f"the classifier failed to take this request ({type(exc).__name__}); "
                    "please report it"), refusal=True)
            except Exception:
                self._answered()  # cannot even answer: do not leave it pending

    def on_request(self, topic: str, payload: Any) -> None:
        """IPC callback: exactly one answer for every message, whatever it holds."""
        with self._delivery(topic):
            self._take(topic, payload, self.config, time.perf_counter())

    def _take(self, topic: str, payload: Any, config: ClassifierConfig,
              received: float) -> None:
        try:
            message = decode_payload(payload)
            request = parse_request(message, max_inline_bytes=config.max_image_bytes)
            reply_topic = self._reply_topic(request, config)
        except ClassificationError as exc:
            rid = exc.request_id or new_request_id()
            result = ClassificationResult.from_error(exc, rid)
            self._refused_log.note(f"{rid} on {escape(topic)}: {exc.code.value}: "
                                   f"{result.error_message}")
            self._send(config.result_topic, result, refusal=True)
            return
        if not self._accepting.is_set():  # to reply_to, like any answer to a valid request
            self._send(reply_topic, ClassificationResult.failure(
                request.request_id, ErrorCode.UNAVAILABLE, SHUTTING_DOWN_MESSAGE), refusal=True)
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
            self._queues.submit(job)
        except queue.Full:
            self._busy_log.note()
            self._send(reply_topic, ClassificationResult.failure(
                request.request_id, ErrorCode.BUSY, BUSY_MESSAGE), refusal=True)

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
            job = self._queues.next_job()
            if isinstance(job, Stop):
                return
            self._queues.prepared(self._prepare(job))

    def _prepare(self, job: Job) -> Prepared | None:
        """Read, decode and preprocess ``job``'s input; None if it was answered instead (an
        error, or a stop past its drain time)."""
        if self._out_of_time(job):
            return None
        pipeline = self.pipeline
        try:
            if pipeline is None:
                raise ClassificationError(ErrorCode.MODEL_ERROR,
                                          f"no model loaded: {self.model_error}")
            return Prepared(job, pipeline, pipeline.prepare(job.request.source, job.limits))
        except ClassificationError as exc:
            self._send_error(job, exc)
        except Exception as exc:  # a bug: answer, log, keep going
            log.exception("preparing request %s failed", job.request.request_id)
            self._send_error(job, ClassificationError(ErrorCode.INTERNAL_ERROR, str(exc)))
        return None

    def _inference(self) -> None:
        while True:
            item = self._queues.next_for_inference()
            if isinstance(item, Stop):
                return
            if isinstance(item, WarmUp):
                item.run()
                continue
            if isinstance(item, Job):  # the pipeline was idle: prepared here, one hand-off less
                prepared_item = self._prepare(item)
                if prepared_item is None:
                    continue
                item = prepared_item
            job, pipeline, prepared = item.job, item.pipeline, item.prepared
            if self._out_of_time(job):
                continue
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
        self._send(job.reply_topic, ClassificationResult.failure(
            job.request.request_id, ErrorCode.UNAVAILABLE, UNAVAILABLE_MESSAGE), refusal=True)
        return True

    def _send_error(self, job: Job, exc: ClassificationError) -> None:
        result = ClassificationResult.failure(job.request.request_id, exc.code, exc.message)
        self._failed_log.note(f"{result.request_id}: {exc.code.value}: {result.error_message}")
        self._send(job.reply_topic, result)

    def _send(self, topic: str, result: ClassificationResult, *, refusal: bool = False) -> None:
        """Queue an answer. ``refusal``: from the request callback or the stopping service, so
        it does not wait for room in the outbox (see :mod:`.publisher`; the callback has waited
        for room among the answers owed already)."""
        config = self.config
        iot_topic = config.iot_core_topic if config.publish_to_iot_core else None
        self.metrics.record_result(result)
        item = Outgoing(topic, result, iot_topic)
        if refusal:
            self._publisher.outbox.put_refusal(item)
        else:
            self._publisher.put(item)

    def _answered(self) -> None:
        """One answer done (published, or given up): no longer owed."""
        self._owed.answered_one()

    # --- lifecycle ---------------------------------------------------------------------------

    def _subscribe_requests(self) -> None:
        topic = self.config.request_topic
        self._intake.subscribe(topic, self.on_request,
                               lambda: self._control.put(Control.RESUBSCRIBE_REQUESTS))
        log.info("taking requests from %s", topic)

    def _subscribe_config(self) -> None:
        self._config_sub = self.ipc.subscribe_configuration(
            lambda _key_path: self._control.put(Control.CONFIG),
            on_closed=lambda: self._control.put(Control.RESUBSCRIBE_CONFIG))

    def start(self) -> None:
        """Read configuration, load the model, start the threads, subscribe, then report
        RUNNING (ERRORED if the model cannot load). Raises ConfigError, IpcError."""
        self.ipc.on_connection_lost(lambda _reason: self._control.put(Control.CONNECTION_LOST))
        if self._intake.dedicated:
            self._intake.connection.on_connection_lost(
                lambda _reason: self._control.put(Control.CONNECTION_LOST))
        self.config = self.read_config()
        self._limits_cache = self._limits(self.config)
        self._queues.queue_size = self.config.queue_size
        self._queues.ready_size = self.config.workers + 1
        self._subscribe_config()
        self._hooks.subscribe()  # deployment-time validation and update deferral
        self._inference_threads = self.config.inference_threads  # restart-only, like Workers
        self._start_threads()
        self.metrics.publisher.start()
        loaded = self._load_model()
        self._accepting.set()
        self._subscribe_requests()
        self._report_state("RUNNING" if loaded else "ERRORED")

    def _start_threads(self) -> None:
        self._publisher.start()
        specs = [(self._inference, "inference")]
        specs += [(self._worker, f"preprocess-{i}") for i in range(self.config.workers)]
        for target, name in specs:
            thread = threading.Thread(target=target, name=f"ggic-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Ask :meth:`serve` to stop (safe from a signal handler)."""
        self._stop.set()
        self._control.put(Control.STOP)

    def serve(self) -> int:
        """Handle configuration updates and re-subscriptions until :meth:`stop` (then drain,
        shut down and return 0) or until the IPC connection is gone (return 1)."""
        while not self._stop.is_set() and not self.connection_lost:
            try:
                event = self._control.get(timeout=self._reopening.wait_time(time.monotonic(), 1.0))
            except queue.Empty:
                event = None
            events = [] if event is None else [event]
            while not self._control.empty():  # coalesce bursts of events
                events.append(self._control.get_nowait())
            if Control.STOP in events:
                self._stop.set()
            elif Control.CONNECTION_LOST in events:
                self.connection_lost = True
            else:
                self._handle(events)
        self.shutdown()
        return 1 if self.connection_lost else 0

    def _handle(self, events: list[Control]) -> None:
        now = time.monotonic()
        for which in (Control.RESUBSCRIBE_REQUESTS, Control.RESUBSCRIBE_CONFIG):
            if which in events and self._reopening.ended(which, now):
                log.warning("the %s; opening it again", which.value)
        for which in self._reopening.due(now):
            self._resubscribe(which)
        if Control.CONFIG in events:
            self.apply_config_update()
        self._hooks.handle(events)

    def _resubscribe(self, which: Control) -> None:
        try:
            if which is Control.RESUBSCRIBE_REQUESTS:
                self._subscribe_requests()
            else:
                self._subscribe_config()
        except IpcError as exc:
            if exc.kind is IpcErrorKind.CONNECTION_LOST:
                self.connection_lost = True
                return
            pause = self._reopening.failed(which, time.monotonic())
            log.error("could not reopen the %s: %s; next try in %.1f s",
                      which.value.replace(" ended", ""), exc, pause)
            return
        self._reopening.succeeded(which)
        if which is Control.RESUBSCRIBE_CONFIG:
            self.apply_config_update()  # changes made while it was closed

    def shutdown(self) -> None:
        """Stop taking requests, answer every one received, stop the threads. Returns within
        STOP_BUDGET_S."""
        started = time.monotonic()
        self._accepting.clear()
        if self.connection_lost:
            self._intake.stop(started, self._owed.release)  # nothing can be published
            log.error("the IPC connection is gone: stopping so that Greengrass restarts the "
                      "component (%d requests received, %d answered)", self.received,
                      self.answered)
            self._stop_threads(0.5)
            return
        log.info("stopping: no new requests; answering the ones received")
        self._drain_deadline = started + DRAIN_TIMEOUT_S
        # what the SDK still hands us is answered UNAVAILABLE until the stream has closed;
        # then the request connection is closed: what it never read was never delivered
        self._intake.stop(started + INTAKE_CLOSE_S, self._owed.release)
        for sub in (self._config_sub, *self._hooks.subscriptions):
            if sub is not None:
                sub.close(timeout=0.3)
        log.info("unsubscribed after %.2f s; %d answers owed, %d of them ready to publish",
                 time.monotonic() - started, self.owed, len(self._publisher.outbox))
        if not self.wait_idle(self._drain_deadline - time.monotonic()):
            self._answer_queued_unavailable()
            self._publisher.outbox.unbound()
        if not self.wait_idle(started + STOP_BUDGET_S - time.monotonic()):
            log.error("stopped with %d requests unanswered after %.1f s", self.owed,
                      time.monotonic() - started)
        self._stop_threads(0.3)
        self.metrics.publisher.stop()  # publishes the last interval
        for counter in (self._busy_log, self._refused_log, self._failed_log):
            counter.flush()  # the counts since their last line
        log.info("stopped after answering %d requests: %d received, %d answered, %d "
                 "unanswered, %d publishes failed; at most %d answers were queued and %d "
                 "other IPC callbacks waiting", self.answered, self.received, self.answered,
                 self.received - self.answered, self._publisher.failed,
                 self._publisher.outbox.peak, self.ipc.callback_backlog_peak())

    def _answer_queued_unavailable(self) -> None:
        """Past the drain time: what no worker has taken yet is answered UNAVAILABLE now."""
        for job in self._queues.take_queued_jobs():
            self._out_of_time(job)

    def _stop_threads(self, timeout: float) -> None:
        self._queues.stop_workers(self.config.workers)
        # a stage stuck (the connection is gone) is left: it is a daemon thread
        self._queues.put_for_inference(STOP, timeout=timeout)
        self._publisher.stop(timeout)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every received request has been answered."""
        return self._owed.wait_idle(timeout)


def run_classifier(ipc: IpcClient, overrides: Mapping[str, Any] | None = None,
                   install_signals: Callable[[Callable[[], None]], None] | None = None,
                   model_loader: ModelLoader = default_model_loader,
                   intake: IpcClient | None = None) -> int:
    """Run the component until SIGTERM (exit code 0) or until an IPC connection is gone (1);
    ``intake``: the connection for requests alone (see :mod:`.intake`)."""
    service = ClassifierService(ipc, overrides, model_loader=model_loader, intake=intake)
    if install_signals is not None:
        install_signals(service.stop)
    try:
        service.start()
    except ConfigError as exc:
        log.error("invalid configuration: %s. Fix it with a deployment "
                  "(--update-config) and the component restarts.", exc)
        service._report_state("ERRORED")
        return 1
    except IpcError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return service.serve()
