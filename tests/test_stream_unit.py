"""Unit tests of the stream requester's own logic: source parsing, backoff, the frame ring's
slot reuse, the in-flight table's timeouts, change detection, request ids."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ggic.messages import ClassificationResult, Prediction
from ggic.requester.frames import FrameFormat, FrameRing, encode_frame
from ggic.requester.sources import Backoff, SourceKind, parse_source, redact_url
from ggic.requester.stream import (
    ChangeDetector,
    Frame,
    InFlight,
    format_frame_result,
    parse_frame_id,
    request_id_for,
)


@pytest.mark.parametrize("text,kind,target", [
    ("", SourceKind.FOLDER, ""), ("  ", SourceKind.FOLDER, ""),
    ("0", SourceKind.DEVICE, 0), ("/dev/video2", SourceKind.DEVICE, "/dev/video2"),
    ("rtsp://cam/stream", SourceKind.URL, "rtsp://cam/stream"),
    ("HTTP://cam:8080/video.mjpg", SourceKind.URL, "HTTP://cam:8080/video.mjpg"),
    ("tcp://127.0.0.1:8554", SourceKind.URL, "tcp://127.0.0.1:8554"),
    ("/data/clip.mp4", SourceKind.VIDEO_FILE, "/data/clip.mp4")])
def test_sources_are_recognised(text, kind, target):
    spec = parse_source(text)
    assert (spec.kind, spec.target) == (kind, target)


def test_passwords_in_urls_are_not_logged():
    assert redact_url("rtsp://admin:s3cret@10.0.0.2/live") == "rtsp://admin:***@10.0.0.2/live"
    assert "s3cret" not in parse_source("rtsp://admin:s3cret@10.0.0.2/live").describe()


def test_backoff_doubles_up_to_the_maximum_and_starts_over_when_back():
    backoff = Backoff(max_delay=3.0)
    assert [backoff.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.down_for() > 0 and backoff.attempts == 5
    assert backoff.recovered() > 0
    assert backoff.down_since is None and backoff.failed() == 0.5


def test_a_ring_slot_is_not_reused_before_it_is_released(tmp_path):
    ring = FrameRing(tmp_path / "frames", 2, FrameFormat.BMP)
    first, second = ring.acquire(), ring.acquire()
    assert {first, second} == {0, 1}
    assert ring.acquire() is None  # both wait for their results
    frame = np.full((4, 6, 3), 7, np.uint8)
    path = ring.write(first, encode_frame(frame, FrameFormat.BMP))
    assert path.read_bytes()[:2] == b"BM" and not list(path.parent.glob(".*.tmp"))
    ring.release(first)
    ring.release(first)  # twice (a result after a timeout): still one free slot
    assert ring.acquire() == first and ring.acquire() is None


def test_in_flight_requests_expire_after_the_timeout():
    table = InFlight(limit=2)
    old = Frame(1, time.time() - 5, time.monotonic() - 5, 0)
    new = Frame(2, time.time(), time.monotonic(), 1)
    table.add("a", old, sent_mono=time.monotonic() - 5)
    table.add("b", new)
    assert not table.has_room()
    assert table.expired(1.0) == [("a", old)]
    assert table.has_room() and table.pop("a") is None and table.pop("b") == new


def ok(label: str, score: float) -> ClassificationResult:
    return ClassificationResult.success("x", [Prediction(label, 1, score)], {}, {})


def test_changes_are_label_changes_or_threshold_crossings_and_late_results_are_ignored():
    detector = ChangeDetector(threshold=0.5)
    assert detector.update(1, ok("cat", 0.9))["label"] == "cat"
    assert detector.update(2, ok("cat", 0.8)) is None  # same label, still present
    assert detector.update(3, ok("cat", 0.3))["present"] is False  # fell below the threshold
    assert detector.update(2, ok("dog", 0.9)) is None  # older than frame 3: ignored
    change = detector.update(4, ok("dog", 0.9))
    assert change["previous_label"] == "cat" and change["present"] is True
    assert detector.update(5, ClassificationResult.failure("x", "BUSY", "")) is None


def test_request_ids_carry_the_frame_and_its_capture_time():
    rid = request_id_for("cam_2", 42, 1764601325.1234)
    assert rid == "cam_2-42-1764601325123"
    assert parse_frame_id(rid) == ("cam_2", 42, 1764601325123)
    assert parse_frame_id("0f3c9a") is None


def test_a_result_is_one_log_line_whatever_its_text():
    frame = Frame(7, time.time(), time.monotonic(), 0)
    line = format_frame_result(frame, ClassificationResult.failure(
        "cam-7-1", "MODEL_ERROR", "bad\nFAKE INFO line" + "x" * 1000), 12.34)
    assert "\n" not in line and "bad\\nFAKE" in line and len(line) < 400
    assert line.startswith("frame 7: error MODEL_ERROR: ") and "capture->result 12.3 ms" in line
    line = format_frame_result(frame, ClassificationResult.failure("cam-7-1", "X", "y"), 12.34,
                               5.06)
    assert "(capture->result 12.3 ms, sent->result 5.1 ms)" in line
