"""The requester on a camera or stream: latest-frame semantics, not a queue.

Two threads. The capture loop (the component's main thread) reads frames from the source as
they come and prepares each frame it takes (encoded once, written into a ring slot or kept as
inline bytes) while earlier requests are in flight, so capture overlaps the classifier's round
trip. The prepared frame becomes the *pending* frame (:mod:`.handoff`); a newer one supersedes
it, and the superseded frame is dropped and counted, never queued. The sender thread sends the
pending frame the moment fewer than ``MaxInFlight`` requests are outstanding, so every result
describes a recent frame and the classifier does not wait for a capture. Each request's id
carries the frame's number among the frames captured and its capture time,
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
from .sources import Backoff, FrameSource, SourceKind, parse_source

log = logging.getLogger(__name__)

SUMMARY_INTERVAL_S = 60.0


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
        self._sender_thread: threading.Thread | None = None
        self._sending = threading.Event()  # cleared: the sender thread ends
        self._sending.set()
        # one line per ok result; errors and timeouts can come at the frame rate: rate-limited
        self._error_log = RateLimitedCounter("%d error result(s) in %.1f s; the latest: %s",
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
        # on the network thread: no hand-off to the callback thread between a result arriving
        # and the sender learning there is room (on_result never blocks, makes no IPC call)
        self._subs.append(self.ipc.subscribe(self.config.result_topic, self.on_result,
                                             on_network_thread=True))
        if self.use_ipc_config:
            self._subs.append(self.ipc.subscribe_configuration(
                lambda _path: self._reconfigure.set()))
        self._publisher.start()
        changes = threading.Thread(target=self._publish_changes, name="ggic-changes",
                                   daemon=True)
        changes.start()
        self._threads.append(changes)
        self._sender_thread = threading.Thread(target=self._send_ready_frames,
                                               name="ggic-frame-sender", daemon=True)
        self._sender_thread.start()

    def stop(self) -> None:
        """Safe from a signal handler: the loop ends after the frame being read."""
        self._stop.set()
        self.in_flight.wake()

    def close(self) -> None:
        self._stop_sending()
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
        """On the connection's network thread (see :meth:`start`): it frees the request's room
        first, so the sender can go on at once; then only short locks (nobody holds them across
        an IPC call), the result's log line and a non-blocking hand-off of a change."""
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
        self._read_timing.round_trip(now - sent_mono)
        latency_ms = (now - frame.captured_mono) * 1000.0
        frame.release_slot()
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

    # --- the sender thread -------------------------------------------------------------------

    def _send_ready_frames(self) -> None:
        """Send the pending frame whenever there is room; expire requests left unanswered."""
        def give_up() -> bool:
            return self._stop.is_set() or not self._sending.is_set()

        while not give_up():
            ready = self.in_flight.claim(give_up, min(1.0, self.config.result_timeout))
            try:
                if ready is not None:
                    self._publish(ready)
                self._expire(self.config)
            except Exception:  # a bug must not silently end the sending: log it, go on
                log.exception("the frame sender failed")
                if ready is not None and self.in_flight.pop(ready.request_id) is not None:
                    ready.frame.release_slot()
                    self.metrics.count("send_failures")

    def _stop_sending(self) -> None:
        self._sending.clear()
        self.in_flight.wake()
        if self._sender_thread is not None:
            self._sender_thread.join(timeout=5)
            self._sender_thread = None
        dropped = self.in_flight.take_pending()  # a stop: never sent
        if dropped is not None:
            dropped.frame.release_slot()
            self.metrics.count("dropped")

    def _publish(self, ready: ReadyFrame) -> None:
        """Send a claimed frame (already in the in-flight table)."""
        config = self.config
        request = ClassificationRequest(ready.request_id, ready.source, config.top_k,
                                        config.score_threshold)
        try:
            self.ipc.publish(config.request_topic, request.to_dict())
        except IpcError as exc:
            if self.in_flight.pop(ready.request_id) is not None:
                ready.frame.release_slot()
            self.metrics.count("send_failures")
            log.error("frame %d not sent: %s", ready.frame.seq, exc)
            return
        self.metrics.count("sent")

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
            self._error_log.flush()
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
        """Read and prepare frames for the sender until the source must be reopened (None),
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
            log.error("frame %d: %s", frame.seq, exc)
            return
        request_id = request_id_for(config.stream_name, frame.seq, frame.captured_at)
        superseded = self.in_flight.offer(ReadyFrame(request_id, frame, source))
        if superseded is not None:  # never sent: its slot is free at once
            superseded.frame.release_slot()
            self.metrics.count("dropped")

    def _expire(self, config: RequesterConfig) -> None:
        for request_id, frame in self.in_flight.expired(config.result_timeout):
            frame.release_slot()
            self.metrics.count("timeouts")
            self._timeout_log.note(
                f"frame {frame.seq} [{request_id}] after {config.result_timeout:g} s; is the "
                f"classifier running and subscribed to {config.request_topic}?")

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

