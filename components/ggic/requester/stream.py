"""The requester on a camera or stream: latest-frame semantics, not a queue.

The capture loop (the component's main thread) reads frames from the source as they come and
prepares each frame it takes (encoded once, written into a ring slot or kept as inline bytes)
while earlier requests are in flight, so capture overlaps the classifier's round trip. The
prepared frame becomes the *pending* frame (:mod:`.handoff`); a newer one supersedes it, and
the superseded frame is dropped and counted, never queued. The pending frame is sent the moment
fewer than ``MaxInFlight`` requests are outstanding, by whichever thread made that so, without
a thread wake in between: the capture loop right after preparing it, or the result that frees
room, on the connection's network thread, which starts the next request's publish
(asynchronously: a blocking IPC call there would deadlock) and hands the rest (metrics, the
result's log line, change detection) to a thread of its own (:mod:`.off_thread`), so the
request is written as soon as that callback returns. Another thread only expires requests left
unanswered past ``ResultTimeout`` (and sends the pending frame into the room that frees). So
every result describes a recent frame and the classifier does not wait for a capture. Each
request's id carries the frame's number among the frames captured and its capture time,
``<StreamName>-<seq>-<capture ms since the epoch>`` (the message contract is unchanged), and
each result is logged with its capture -> result latency.

A lost camera or stream is reopened with backoff (0.5 s doubling up to ReconnectMaxDelay), and
the log says how long it has been down; the component stays RUNNING. A video file ends with
the component FINISHED (exit 0), or starts again with LoopVideo. With VideoRealTime (the
default) a video file plays at its own frame rate, like a camera; without it every frame is
classified, as fast as results come back: the capture loop reads exactly one frame ahead (it
waits while a frame is pending), so nothing is dropped, and starts each read just in time for
the result that frees room (:class:`.handoff.ReadTiming`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..cloudwatch_metrics import MetricsPublisher, MetricsSettings
from ..config import ConfigError, RequesterConfig
from ..ipc import IpcClient, IpcError, Subscription
from ..log_text import escape
from ..messages import ClassificationRequest, ClassificationResult, decode_payload
from ..rate_limited_log import RateLimitedCounter
from .frames import FrameFormat, FrameRing, FrameSender, FrameTransport
from .handoff import Frame, InFlight, ReadTiming, ReadyFrame, ring_slots
from .metrics import StreamMetrics
from .off_thread import OffThread
from .sources import Backoff, FrameSource, SourceKind, parse_source

log = logging.getLogger(__name__)

SUMMARY_INTERVAL_S = 60.0
SEND_ATTEMPTS = 3
"""Publishes one call of :meth:`StreamService._send_pending` starts at most: each that fails at
once frees its room, and the pending frame (if any) gets it."""


def request_id_for(stream: str, seq: int, captured_at: float) -> str:
    return f"{stream}-{seq}-{int(captured_at * 1000)}"


def parse_frame_id(request_id: str) -> tuple[str, int, int] | None:
    """``cam-42-1700000000123`` -> ("cam", 42, 1700000000123); None if not a frame id."""
    parts = request_id.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], int(parts[1]), int(parts[2])


class ChangeDetector:
    """Whether a result changes what the camera sees: another top-1 label, or the top-1 score
    crossing the threshold. Results older than the newest seen are ignored."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._last: tuple[str | None, bool] | None = None
        self._last_seq = -1

    def update(self, seq: int, result: ClassificationResult) -> dict[str, Any] | None:
        if seq <= self._last_seq or not result.ok:
            return None
        self._last_seq = seq
        top = result.predictions[0] if result.predictions else None
        state = (top.label if top else None, bool(top and top.score >= self.threshold))
        previous, self._last = self._last, state
        if previous == state:
            return None
        return {"label": state[0], "score": round(top.score, 6) if top else None,
                "present": state[1],
                "previous_label": previous[0] if previous else None,
                "previous_present": previous[1] if previous else None}


class StreamService:
    """The requester for a live source or a video file (see the module docstring)."""

    def __init__(self, ipc: IpcClient, read_config: Callable[[], RequesterConfig],
                 use_ipc_config: bool = True) -> None:
        self.ipc = ipc
        self.read_config = read_config
        self.use_ipc_config = use_ipc_config
        self.config = read_config()
        self.spec = parse_source(self.config.source)
        if self.spec.kind is SourceKind.FOLDER:
            raise ConfigError(["Source is empty: the folder requester handles ImageDirectory"])
        self.backoff = Backoff(self.config.reconnect_max_delay)
        self.metrics = StreamMetrics(self.config.stream_name, self.backoff.down_for)
        self.in_flight = InFlight(self.config.max_in_flight)
        self._read_timing = ReadTiming()
        self._stop = threading.Event()
        self._reconfigure = threading.Event()
        self._subs: list[Subscription] = []
        self._changes: queue.Queue[Any] = queue.Queue(maxsize=256)
        self._detector = ChangeDetector(self.config.change_threshold)
        self._seq = 0
        self._frame_dir = Path(self.config.frame_directory) / self.config.stream_name
        self._rings: dict[FrameFormat, FrameRing] = {}
        self.sender = self._make_sender(self.config)
        self._publisher = MetricsPublisher(self.ipc.publish, self.metrics.take,
                                           lambda: MetricsSettings.of(self.config),
                                           name="stream-metrics")
        self._threads: list[threading.Thread] = []
        self._expiry_thread: threading.Thread | None = None
        self._sending = threading.Event()  # cleared: nothing more is sent
        self._sending.set()
        self._wake_expiry = threading.Event()  # set: the expiry thread looks at once
        self._send_lock = threading.Lock()  # a claim and its publish's start: requests in order
        self._starting = _Starting()
        self._results = OffThread(self._report_result, "ggic-result-report")
        # one line per ok result; errors and timeouts can come at the frame rate: rate-limited
        self._error_log = RateLimitedCounter("%d error result(s) in %.1f s; the latest: %s",
                                             logger=log)
        self._not_sent_log = RateLimitedCounter("%d frame(s) not sent in %.1f s; the latest: %s",
                                                logger=log)
        self._timeout_log = RateLimitedCounter(
            "%d request(s) got no result within ResultTimeout in %.1f s; the latest: %s",
            logger=log)

    # --- set-up ------------------------------------------------------------------------------

    def _make_sender(self, config: RequesterConfig) -> FrameSender:
        transport, fmt = FrameTransport(config.frame_transport), FrameFormat(config.frame_format)
        ring = None
        if transport is FrameTransport.FILE:
            # one ring per format for the component's life: after a switch and back, the frames
            # still in flight hold slots of the same ring, so none is reused early
            ring = self._rings.get(fmt)
            if ring is None:
                ring = self._rings[fmt] = FrameRing(self._frame_dir,
                                                    ring_slots(self.in_flight.limit), fmt)
        return FrameSender(transport, fmt, ring)

    def start(self) -> None:
        # on the network thread: no hand-off to another thread between a result arriving and
        # the next request's publish starting (on_result never blocks, makes no sync IPC call)
        self._subs.append(self.ipc.subscribe(self.config.result_topic, self.on_result,
                                             on_network_thread=True))
        if self.use_ipc_config:
            self._subs.append(self.ipc.subscribe_configuration(
                lambda _path: self._reconfigure.set()))
        self._publisher.start()
        self._results.start()
        changes = threading.Thread(target=self._publish_changes, name="ggic-changes",
                                   daemon=True)
        changes.start()
        self._threads.append(changes)
        self._expiry_thread = threading.Thread(target=self._expire_unanswered,
                                               name="ggic-frame-expiry", daemon=True)
        self._expiry_thread.start()

    def stop(self) -> None:
        """Safe from a signal handler: the loop ends after the frame being read."""
        self._stop.set()
        self.in_flight.wake()
        self._wake_expiry.set()

    def close(self) -> None:
        self._stop_sending()
        self._results.stop()
        for sub in self._subs:
            sub.close()
        self._subs.clear()
        self._changes.put(None)
        self._publisher.stop()
        for thread in self._threads:
            thread.join(timeout=2)
        for ring in self._rings.values():
            ring.remove_files()

    # --- results (the SDK's network thread: no blocking, no IPC calls) ------------------------

    def on_result(self, topic: str, payload: Any) -> None:
        """On the connection's network thread (see :meth:`start`): it frees the request's room,
        starts the pending frame's publish (written once this callback returns) and hands the
        rest to the result-report thread; only short locks (nobody holds them across an IPC
        call)."""
        try:
            result = ClassificationResult.from_dict(decode_payload(payload))
        except Exception as exc:  # ValueError, KeyError, ClassificationError
            log.warning("ignoring an unreadable result on %s: %s", topic, exc)
            return
        popped = self.in_flight.pop_sent(result.request_id)
        if popped is None:
            return  # another requester's, or after its timeout
        frame, sent_mono = popped
        now = time.monotonic()
        frame.release_slot()  # before the next frame is claimed: its slot is free again
        self._send_pending()
        self._results.submit(frame, result, now, sent_mono)

    def _report_result(self, frame: Frame, result: ClassificationResult, now: float,
                       sent_mono: float) -> None:
        """A result's metrics, log line and change (on the result-report thread, in order)."""
        self._read_timing.round_trip(now - sent_mono)
        latency_ms = (now - frame.captured_mono) * 1000.0
        self.metrics.result(result.ok, latency_ms)
        line = format_frame_result(frame, result, latency_ms, (now - sent_mono) * 1000.0)
        if result.ok:
            log.info("%s", line)
        else:
            self._error_log.note(line)
        if self.config.changes_topic:
            change = self._detector.update(frame.seq, result)
            if change is not None:
                change.update(stream=self.config.stream_name, frame=frame.seq,
                              captured_at=round(frame.captured_at, 3),
                              request_id=result.request_id)
                with contextlib.suppress(queue.Full):
                    self._changes.put_nowait(change)

    def _publish_changes(self) -> None:
        while True:
            change = self._changes.get()
            if change is None:
                return
            try:
                self.ipc.publish(self.config.changes_topic, change)
            except IpcError as exc:
                log.error("could not publish a change to %s: %s", self.config.changes_topic,
                          exc)

    # --- sending (from whichever thread made room or a frame; never waits) --------------------

    def _send_pending(self) -> None:
        """If a frame is pending and there is room, claim it and start its publish (without
        waiting for it). Called by whoever made room or a frame: the capture loop after its
        offer, the result that freed room (on the network thread), the expiry thread. Claim and
        start happen under one lock, so requests go out in the order of their frames. A publish
        that fails at once frees its room, and the pending frame gets it (at most
        ``SEND_ATTEMPTS`` starts here; a failure reported later tries again from its callback).
        Nothing is sent once stopping."""
        for _ in range(SEND_ATTEMPTS):
            with self._send_lock:
                if self._stop.is_set() or not self._sending.is_set():
                    return
                ready = self.in_flight.claim_now()
                if ready is None:
                    return
                future = self._start_publish(ready)
            self._starting.active, self._starting.failed = True, False
            try:
                future.add_done_callback(lambda done, ready=ready: self._publish_done(ready,
                                                                                      done))
            finally:
                self._starting.active = False
            if not self._starting.failed:
                return

    def _start_publish(self, ready: ReadyFrame) -> Future:
        """Start publishing a claimed frame's request (already in the in-flight table)."""
        config = self.config
        try:
            request = ClassificationRequest(ready.request_id, ready.source, config.top_k,
                                            config.score_threshold)
            return self.ipc.publish_async(config.request_topic, request.to_dict())
        except Exception as exc:  # a bug: the frame is not sent, the stream goes on
            log.exception("building frame %d's request failed", ready.frame.seq)
            failed: Future = Future()
            failed.set_exception(exc)
            return failed

    def _publish_done(self, ready: ReadyFrame, future: Future) -> None:
        """A request's publish ended (on the network thread, or at once in
        :meth:`_send_pending`): count it sent; or free its room and slot (once: whoever pops
        it, this or its expiry), count the failure and give the room to the pending frame."""
        error = future.exception()
        if error is None:
            self.metrics.count("sent")
            return
        if self.in_flight.pop(ready.request_id) is not None:
            ready.frame.release_slot()
        self.metrics.count("send_failures")
        self._not_sent_log.note(f"frame {ready.frame.seq}: {escape(str(error), 300)}")
        if self._starting.active:  # called back inside _send_pending: its loop goes on
            self._starting.failed = True
        else:
            self._send_pending()

    # --- the expiry thread -------------------------------------------------------------------

    def _expire_unanswered(self) -> None:
        """Expire requests left unanswered past ResultTimeout, each as soon as it is due; the
        room an expiry frees goes to the pending frame."""
        while not self._stop.is_set() and self._sending.is_set():
            self._wake_expiry.wait(self._until_next_expiry())
            try:
                if self._expire(self.config):
                    self._send_pending()
            except Exception:  # a bug must not silently end the expiry: log it, go on
                log.exception("expiring unanswered requests failed")

    def _until_next_expiry(self) -> float:
        timeout = self.config.result_timeout
        oldest = self.in_flight.oldest_sent()
        longest = min(1.0, timeout)
        if oldest is None:
            return longest
        return min(longest, max(0.0, oldest + timeout - time.monotonic()) + 0.001)

    def _stop_sending(self) -> None:
        self._sending.clear()
        self._wake_expiry.set()
        self.in_flight.wake()
        if self._expiry_thread is not None:
            self._expiry_thread.join(timeout=5)
            self._expiry_thread = None
        with self._send_lock:  # a start under way ends first
            dropped = self.in_flight.take_pending()  # a stop: never sent
        if dropped is not None:
            dropped.frame.release_slot()
            self.metrics.count("dropped")

    # --- the loop ----------------------------------------------------------------------------

    def serve(self) -> int:
        """Classify frames until stopped (exit 0), or until a video file ends (exit 0; 1 if it
        can't be opened at all)."""
        self.start()
        log.info("classifying frames from %s (MaxInFlight %d, FrameTransport %s, FrameFormat "
                 "%s)", self.spec.describe(), self.config.max_in_flight,
                 self.config.frame_transport, self.config.frame_format)
        try:
            while True:
                code = self._run_source()
                if code is not None or self._stop.is_set():
                    return code or 0
        finally:
            self._finish_in_flight()
            self._results.stop()  # every result reported before the summary
            self._error_log.flush()
            self._not_sent_log.flush()
            self._timeout_log.flush()
            log.info("stream summary: %s", self.metrics.summary())
            self.close()

    def _apply_config_update(self) -> bool:
        """Re-read the configuration; True if the source must be reopened."""
        self._reconfigure.clear()
        try:
            new = self.read_config()
        except (ConfigError, IpcError) as exc:
            log.error("refused configuration update: %s. The last valid configuration stays "
                      "in force.", exc)
            return False
        if new == self.config:
            return False
        if new.max_in_flight != self.config.max_in_flight or \
                new.frame_directory != self.config.frame_directory or \
                new.stream_name != self.config.stream_name or \
                new.result_topic != self.config.result_topic:
            log.warning("MaxInFlight, FrameDirectory, StreamName and ResultTopic take effect "
                        "when the component restarts")
        reopen = (new.source, new.capture_width, new.capture_height) != (
            self.config.source, self.config.capture_width, self.config.capture_height)
        new_spec = parse_source(new.source)
        if new_spec.kind is SourceKind.FOLDER:
            log.warning("Source was emptied: restart the component to classify ImageDirectory")
            return False
        self.config = new
        self.spec = new_spec
        self.backoff.max_delay = new.reconnect_max_delay
        self._detector.threshold = new.change_threshold
        transport, fmt = FrameTransport(new.frame_transport), FrameFormat(new.frame_format)
        if (transport, fmt) != (self.sender.transport, self.sender.fmt):
            # only this thread prepares frames, and each frame holds the ring of its slot
            self.sender = self._make_sender(new)
        log.info("configuration updated")
        return reopen

    def _run_source(self) -> int | None:
        """Read and prepare frames to be sent until the source must be reopened (None),
        the video ended (0), it can't be opened (1), or stop."""
        config = self.config
        source = FrameSource(self.spec, config.capture_width, config.capture_height)
        pacing_start: float | None = None
        played = 0
        last_taken = 0.0
        next_summary = time.monotonic() + SUMMARY_INTERVAL_S
        try:
            while not self._stop.is_set():
                if self._reconfigure.is_set() and self._apply_config_update():
                    return None
                config = self.config
                if not source.opened:
                    if not self._open(source):
                        if self.spec.kind is SourceKind.VIDEO_FILE:
                            log.error("cannot open the video file %s", self.spec.target)
                            return 1
                        continue
                    pacing_start, played = None, 0
                if self._read_one_ahead(config):
                    continue
                read_started = time.monotonic()
                frame = source.read()
                if frame is None:
                    if self.spec.kind is SourceKind.VIDEO_FILE:
                        if not config.loop_video:
                            log.info("the video %s ended", self.spec.target)
                            return 0
                        source.rewind()
                        pacing_start, played = None, 0
                        continue
                    log.warning("lost %s; reopening", self.spec.describe())
                    source.release()
                    self.backoff.failed()
                    continue
                now = time.monotonic()
                if self._paced(config, source):
                    pacing_start = now if pacing_start is None else pacing_start
                    due = pacing_start + played / source.fps
                    played += 1
                    if due > now:
                        self._stop.wait(due - now)
                captured_mono, captured_at = time.monotonic(), time.time()
                self._seq += 1
                self.metrics.count("captured")
                if captured_mono >= next_summary:
                    next_summary = captured_mono + SUMMARY_INTERVAL_S
                    log.info("stream so far: %s", self.metrics.summary())
                if config.max_fps > 0 and captured_mono - last_taken < 1.0 / config.max_fps:
                    self.metrics.count("skipped")
                    continue
                last_taken = captured_mono
                self._prepare(frame, Frame(self._seq, captured_at, captured_mono, -1), config)
                self._read_timing.capture(time.monotonic() - read_started)
            return 0
        finally:
            source.release()

    def _paced(self, config: RequesterConfig, source: FrameSource) -> bool:
        return (self.spec.kind is SourceKind.VIDEO_FILE and config.video_real_time
                and source.fps > 0)

    def _read_one_ahead(self, config: RequesterConfig) -> bool:
        """A video file classified frame by frame (VideoRealTime false): read the next frame
        only once the pending one has been sent, and then just in time for the result that
        frees room (:class:`.handoff.ReadTiming`; at once if there is room), so it is read
        while earlier frames are being classified and none is dropped. True: go round
        again."""
        if self.spec.kind is not SourceKind.VIDEO_FILE or config.video_real_time:
            return False
        if not self.in_flight.wait_until_sent(self._stop.is_set,
                                              min(1.0, config.result_timeout)):
            return True
        oldest_sent = self.in_flight.next_room_from()
        if oldest_sent is not None:
            wait = self._read_timing.read_at(oldest_sent) - time.monotonic()
            if wait > 0:  # until then, or until room frees earlier
                self.in_flight.wait(lambda n: n < self.in_flight.limit or self._stop.is_set(),
                                    wait)
        return self._stop.is_set()

    def _open(self, source: FrameSource) -> bool:
        if source.open():
            was_down = self.backoff.down_since is not None
            down = self.backoff.recovered()
            if was_down:
                log.warning("%s is back after %.1f s down", self.spec.describe(), down)
            else:
                log.info("opened %s (%.0f fps reported)", self.spec.describe(), source.fps)
            return True
        if self.spec.kind is SourceKind.VIDEO_FILE:
            return False
        delay = self.backoff.failed()
        log.warning("%s is down (for %.1f s, %d attempts); next attempt in %.1f s",
                    self.spec.describe(), self.backoff.down_for(), self.backoff.attempts, delay)
        self._stop.wait(delay)
        return False

    def _prepare(self, image: Any, frame: Frame, config: RequesterConfig) -> None:
        """Encode a captured frame once (into its own ring slot, or inline) and make it the
        pending frame; the pending frame it supersedes is dropped."""
        sender = self.sender
        slot = sender.acquire_slot()
        if slot is None:  # cannot happen (ring_slots); if it ever did: dropped, counted
            self.metrics.count("dropped")
            return
        frame = Frame(frame.seq, frame.captured_at, frame.captured_mono, slot, sender.ring)
        try:
            source = sender.source(image, slot)
        except (OSError, ValueError) as exc:
            frame.release_slot()
            self.metrics.count("send_failures")
            self._not_sent_log.note(f"frame {frame.seq}: {escape(str(exc), 300)}")
            return
        request_id = request_id_for(config.stream_name, frame.seq, frame.captured_at)
        superseded = self.in_flight.offer(ReadyFrame(request_id, frame, source))
        self._send_pending()  # if there is room now; else the result that frees it sends it
        if superseded is not None:  # never sent: its slot is free at once
            superseded.frame.release_slot()
            self.metrics.count("dropped")

    def _expire(self, config: RequesterConfig) -> bool:
        """Expire the requests past ResultTimeout; True if any was (room was freed)."""
        expired = self.in_flight.expired(config.result_timeout)
        for request_id, frame in expired:
            frame.release_slot()
            self.metrics.count("timeouts")
            self._timeout_log.note(
                f"frame {frame.seq} [{request_id}] after {config.result_timeout:g} s; is the "
                f"classifier running and subscribed to {config.request_topic}?")
        return bool(expired)

    def _finish_in_flight(self) -> None:
        """Send the pending frame and wait for the results of the requests sent (not after a
        stop: Greengrass allows 5 s; the pending frame is then dropped)."""
        if not self._stop.is_set():
            self.in_flight.wait_until_sent(self._stop.is_set, self.config.result_timeout)
            self.in_flight.wait(lambda n: n == 0 or self._stop.is_set(),
                                self.config.result_timeout)
        self._stop_sending()
        for _rid, frame in self.in_flight.expired(-1e9):
            frame.release_slot()
            if not self._stop.is_set():
                self.metrics.count("timeouts")


class _Starting(threading.local):
    """Per thread: whether :meth:`StreamService._send_pending` is adding a done callback (one
    that runs then, the future having ended at once, leaves the retry to its loop), and whether
    that callback found the publish failed."""

    active = False
    failed = False


def format_frame_result(frame: Frame, result: ClassificationResult, latency_ms: float,
                        sent_ms: float | None = None) -> str:
    """One log line per result: the frame, its top labels, capture -> result latency (and
    sent -> result: the rest is the time the frame waited to be sent)."""
    head = f"frame {frame.seq}"
    if not result.ok:
        body = f"error {result.error_code}: {result.error_message}"
    elif result.predictions:
        body = ", ".join(f"{p.label} {p.score:.2f}" for p in result.predictions[:3])
    else:
        body = "nothing above the threshold"
    sent = "" if sent_ms is None else f", sent->result {sent_ms:.1f} ms"
    return (f"{head}: {escape(body, 300)} (capture->result {latency_ms:.1f} ms{sent}) "
            f"[{result.request_id}]")

