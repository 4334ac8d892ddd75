"""The requester component: sends classification requests and correlates the results.

Every ``InferenceInterval`` seconds it sends one request per image in ``ImageDirectory``,
waits up to ``ResultTimeout`` for each result (matched by request id; results for other
requesters on the shared topic are ignored) and logs one readable line per image. When the
classifier is down the round times out, is logged, and the next round runs as usual.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, RequesterConfig, config_from_mapping, unknown_keys
from ..ipc import IpcClient, IpcError, Subscription
from ..log_text import escape, quote
from ..messages import (
    ClassificationError,
    ClassificationRequest,
    ClassificationResult,
    ImageSource,
    SourceKind,
    decode_payload,
    new_request_id,
)
from ..rate_limited_log import RateLimitedCounter

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
TENSOR_EXTENSIONS = frozenset({".npy"})
#: Predictions of one result that its log line shows.
MAX_LOGGED_PREDICTIONS = 10
#: IPC frames are capped at 16 MiB and base64 inflates by 4/3: larger inline images can't travel.
MAX_INLINE_BYTES = 12 * 1024 * 1024 - 64 * 1024


@dataclass(frozen=True)
class Outcome:
    """What became of one image: a result, or why there is none."""

    image: Path
    request_id: str
    result: ClassificationResult | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok


def list_inputs(directory: Path) -> list[Path]:
    """Images and .npy tensors in a directory, sorted by name."""
    if not directory.is_dir():
        raise FileNotFoundError(f"ImageDirectory {directory} does not exist")
    return sorted(
        p for p in directory.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS | TENSOR_EXTENSIONS
    )


def build_request(path: Path, config: RequesterConfig) -> ClassificationRequest:
    """The request for one file: its path, or its bytes inline (``SendInline``)."""
    absolute = path.resolve()
    if absolute.suffix.lower() in TENSOR_EXTENSIONS:
        source = ImageSource(SourceKind.TENSOR, path=str(absolute))
    elif config.send_inline:
        size = absolute.stat().st_size
        if size > MAX_INLINE_BYTES:
            raise ValueError(
                f"{path} is {size} bytes: too large to send inline (IPC messages are capped at "
                "16 MiB, base64 adds a third); set SendInline to false to send its path"
            )
        source = ImageSource(SourceKind.INLINE, data=absolute.read_bytes())
    else:
        source = ImageSource(SourceKind.PATH, path=str(absolute))
    return ClassificationRequest(
        request_id=new_request_id(), source=source, top_k=config.top_k,
        threshold=config.score_threshold,
    )


def format_outcome(outcome: Outcome) -> str:
    """One readable line per image; what the result says (it came from whoever published on
    the result topic) escaped and cut (:func:`ggic.log_text.escape`)."""
    name = escape(outcome.image.name)
    if outcome.result is None:
        return f"{name}: no result ({escape(outcome.problem or '')}) [{outcome.request_id}]"
    result = outcome.result
    rid = escape(result.request_id)
    if not result.ok:
        return (f"{name}: error {escape(result.error_code or '', 40)}: "
                f"{escape(result.error_message or '')} [{rid}]")
    if result.predictions:
        shown = result.predictions[:MAX_LOGGED_PREDICTIONS]
        top = ", ".join(f"{escape(p.label, 80)} {p.score:.2f}" for p in shown)
        if len(result.predictions) > len(shown):
            top += f" and {len(result.predictions) - len(shown)} more"
    else:
        top = "nothing above the threshold"
    timing = result.timing_ms
    times = ", ".join(f"{k} {timing[k]:.1f} ms" for k in ("inference", "total") if k in timing)
    return f"{name}: {top} ({times}) [{rid}]"


class ResultWaiter:
    """Correlates results arriving on the result topic with the requests we sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, queue.Queue[ClassificationResult | None]] = {}
        self._ignored_log = RateLimitedCounter(
            "ignored %d message(s) on the result topic in %.1f s; the latest: %s", logger=log)

    def expect(self, request_id: str) -> queue.Queue[ClassificationResult | None]:
        """A slot that gets the result of ``request_id``, or None if :meth:`cancel_all` came
        first."""
        slot: queue.Queue[ClassificationResult | None] = queue.Queue(maxsize=1)
        with self._lock:
            self._waiting[request_id] = slot
        return slot

    def forget(self, request_id: str) -> None:
        with self._lock:
            self._waiting.pop(request_id, None)

    def cancel_all(self) -> None:
        """Wake everyone waiting for a result with None (the service is stopping)."""
        with self._lock:
            slots, self._waiting = list(self._waiting.values()), {}
        for slot in slots:
            with contextlib.suppress(queue.Full):
                slot.put_nowait(None)

    def flush_log(self) -> None:
        """Log the messages ignored since the last line (the requester is stopping)."""
        self._ignored_log.flush()

    def on_result(self, topic: str, payload: Any) -> None:
        """IPC callback: never blocks, never raises. Only a well-formed result takes a slot:
        a malformed message, even one that names a request we wait for, is logged and
        ignored, and the real result still gets through."""
        try:
            message = decode_payload(payload)
        except ClassificationError as exc:
            self._ignored_log.note(f"an unreadable message on {escape(topic)}: {exc.message}")
            return
        try:
            result = ClassificationResult.from_dict(message)
        except ValueError as exc:
            rid = message.get("request_id") if isinstance(message, Mapping) else None
            about = f" for {quote(rid, 80)}" if isinstance(rid, str) else ""
            self._ignored_log.note(
                f"a malformed result{about} on {escape(topic)}: {escape(str(exc))}")
            return
        with self._lock:
            slot = self._waiting.pop(result.request_id, None)
        if slot is None:
            log.debug("result %s is not ours (another requester's, or late)",
                      escape(result.request_id, 80))
            return
        with contextlib.suppress(queue.Full):  # (cancel_all came first)
            slot.put_nowait(result)


class RequesterService:
    def __init__(self, ipc: IpcClient, overrides: Mapping[str, Any] | None = None,
                 use_ipc_config: bool = True) -> None:
        self.ipc = ipc
        self.overrides = dict(overrides or {})
        self.use_ipc_config = use_ipc_config
        self.config = RequesterConfig()
        self.waiter = ResultWaiter()
        self._stop = threading.Event()
        self._config_changed = threading.Event()
        self._subs: list[Subscription] = []
        self._result_topic: str | None = None

    def read_config(self) -> RequesterConfig:
        values: Any = self.ipc.get_configuration() if self.use_ipc_config else {}
        merged = {**(values if isinstance(values, Mapping) else {}), **self.overrides}
        for key in unknown_keys(RequesterConfig, merged):
            log.warning("ignoring unknown configuration key %s (a typo?)", key)
        return config_from_mapping(RequesterConfig, merged)

    def start(self) -> None:
        self.config = self.read_config()
        self._subscribe_results()
        if self.use_ipc_config:
            self._subs.append(
                self.ipc.subscribe_configuration(lambda _path: self._config_changed.set()))

    def _subscribe_results(self) -> None:
        if self._result_topic == self.config.result_topic:
            return
        if self._subs and self._result_topic is not None:
            self._subs.pop(0).close()
        self._subs.insert(0, self.ipc.subscribe(self.config.result_topic, self.waiter.on_result))
        self._result_topic = self.config.result_topic

    def _maybe_reload_config(self) -> None:
        if not self._config_changed.is_set():
            return
        self._config_changed.clear()
        try:
            new = self.read_config()
        except (ConfigError, IpcError) as exc:
            log.error("refused configuration update: %s. The last valid configuration stays "
                      "in force.", exc)
            return
        if new != self.config:
            self.config = new
            self._subscribe_results()
            log.info("configuration updated")

    def run_round(self, images: Sequence[Path] | None = None) -> list[Outcome]:
        """Send one request per image, wait for the results, log one line per image."""
        config = self.config
        if images is None:
            try:
                images = list_inputs(Path(config.image_directory))
            except FileNotFoundError as exc:
                log.error("%s: create it or set ImageDirectory", exc)
                return []
        if not images:
            log.warning("no images in %s", config.image_directory)
            return []
        sent: list[tuple[Path, str, queue.Queue[ClassificationResult | None]]] = []
        outcomes: list[Outcome] = []
        for image in images:
            if self._stop.is_set():
                outcomes.append(Outcome(image, "-", None, "not sent: stopping"))
                continue
            try:
                request = build_request(image, config)
            except (OSError, ValueError) as exc:
                outcomes.append(Outcome(image, "-", None, str(exc)))
                continue
            slot = self.waiter.expect(request.request_id)
            try:
                self.ipc.publish(config.request_topic, request.to_dict())
            except IpcError as exc:
                self.waiter.forget(request.request_id)
                outcomes.append(Outcome(image, request.request_id, None, f"not sent: {exc}"))
                continue
            sent.append((image, request.request_id, slot))
        deadline = time.monotonic() + config.result_timeout
        for image, request_id, slot in sent:
            try:
                # (a slot made after stop()'s cancel_all would never be woken: don't wait then)
                wait = 0.0 if self._stop.is_set() else max(0.0, deadline - time.monotonic())
                result = slot.get(timeout=wait)
            except queue.Empty:
                result = None
            if result is not None:
                outcomes.append(Outcome(image, request_id, result))
                continue
            self.waiter.forget(request_id)
            if self._stop.is_set():
                outcomes.append(Outcome(image, request_id, None,
                                        "stopped before the result came"))
            else:
                outcomes.append(Outcome(
                    image, request_id, None,
                    f"timed out after {config.result_timeout:g} s; is the classifier running "
                    f"and subscribed to {config.request_topic}?"))
        order = {path: i for i, path in enumerate(images)}
        outcomes.sort(key=lambda o: order.get(o.image, 0))
        for outcome in outcomes:
            (log.info if outcome.ok else log.warning)("%s", format_outcome(outcome))
        return outcomes

    def serve(self) -> None:
        """Run rounds every InferenceInterval seconds until :meth:`stop`."""
        while not self._stop.is_set():
            self._maybe_reload_config()
            started = time.monotonic()
            self.run_round()
            interval = self.config.inference_interval
            if interval <= 0:
                break
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))
        self.close()

    def stop(self) -> None:
        """Stop (safe from a signal handler): a round in progress stops waiting for results."""
        self._stop.set()
        self.waiter.cancel_all()

    def close(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs.clear()
        self.waiter.flush_log()

