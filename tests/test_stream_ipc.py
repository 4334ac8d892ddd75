"""Camera / video stream sources through the real parts: a video written with cv2.VideoWriter
and an HTTP MJPEG stream served here on 127.0.0.1 are read by the REAL requester process,
whose requests travel through the REAL awsiotsdk client and ggic.local's IPC server to the
REAL classifier process running a real DLR model through libdlr.so."""

from __future__ import annotations

import http.server
import json
import re
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from ggic.classifier.inputs import InputLimits
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline
from ggic.classifier.profiles import resolve_profile
from ggic.local.ipc_server import IpcServer
from ggic.messages import ImageSource, SourceKind
from ggic.modelgen.testnets import write_neo_like
from ggic.requester.frames import FrameFormat, encode_frame
from ggic.requester.stream import parse_frame_id
from test_components_ipc import (
    CLASSIFIER,
    REQUESTER,
    Results,
    component_env,
    recipe_defaults,
    register_from_recipe,
    stop_within,
)

SIZE = (640, 480)


def photo_frames(photos: list[Path], per_photo: int) -> list[np.ndarray]:
    """640x480 frames: ``per_photo`` of each photo in turn (so frames differ in content)."""
    frames = []
    for photo in photos:
        image = cv2.resize(cv2.imread(str(photo), cv2.IMREAD_COLOR), SIZE)
        frames += [image] * per_photo
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, SIZE)
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="module")
def world(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("stream")
    net = write_neo_like(root / "vgg16", seed=21)
    server = IpcServer(root / "ipc.socket")
    register_from_recipe(server, CLASSIFIER, ModelDir=str(net.model_dir),
                         ModelProfile="neo-vgg16", LabelsPath=str(net.labels_path),
                         AllowedImageDirs=[str(root)], TopK="3", ScoreThreshold="0",
                         MetricsInterval="0")
    server.start()
    results = Results(server)
    requests = Results(server, "local/inference")
    log = open(root / "classifier.log", "w")  # noqa: SIM115 - closed at teardown
    classifier = subprocess.Popen([sys.executable, "-m", "ggic", "classifier"],
                                  env=component_env(server, CLASSIFIER), stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        assert server.wait_for_state(CLASSIFIER, "RUNNING", 60), (root / "classifier.log"
                                                                  ).read_text()
        pipeline = ClassificationPipeline(load_model(
            net.model_dir, resolve_profile("neo-vgg16"), str(net.labels_path)))
        yield {"server": server, "root": root, "results": results, "requests": requests,
               "pipeline": pipeline, "photos": photos}
    finally:
        classifier.kill()
        classifier.wait(10)
        log.close()
        results.unsubscribe()
        requests.unsubscribe()
        server.stop()


def drain(*collectors: Results) -> None:
    for collector in collectors:
        while not collector.queue.empty():
            collector.queue.get_nowait()


def taken(collector: Results) -> list[dict]:
    out = []
    while not collector.queue.empty():
        out.append(collector.queue.get_nowait())
    return out


def run_stream_requester(world, name: str, timeout: float = 120, **settings: str
                         ) -> tuple[subprocess.CompletedProcess, str]:
    server, root = world["server"], world["root"]
    settings = {"FrameDirectory": str(root / "frames"), **settings}
    register_from_recipe(server, REQUESTER, StreamName=name, MetricsInterval="0",
                         ResultTimeout="20", **settings)
    done = subprocess.run([sys.executable, "-m", "ggic", "requester"],
                          env=component_env(server, REQUESTER), capture_output=True, text=True,
                          timeout=timeout)
    return done, done.stdout + done.stderr


def summary_counts(log: str) -> dict[str, int]:
    line = [x for x in log.splitlines() if "stream summary:" in x][-1]
    numbers = {
        "captured": r"(\d+) frames captured", "sent": r"(\d+) sent,", "dropped": r"(\d+) dropped",
        "skipped": r"(\d+) skipped", "results": r"; (\d+) results", "errors": r"\((\d+) errors",
        "timeouts": r"(\d+) timed out"}
    return {key: int(re.search(pattern, line).group(1)) for key, pattern in numbers.items()}


@pytest.mark.parametrize("transport,fmt", [("file", "bmp"), ("inline", "jpeg")])
def test_every_frame_of_a_video_is_classified_and_matched_to_its_frame(world, transport, fmt):
    """VideoRealTime false: each frame is sent once a result frees the slot; each result
    carries its frame's number and equals the in-process classification of that frame."""
    video = write_video(world["root"] / f"every-{transport}.avi",
                        photo_frames(world["photos"][:3], 4), fps=30)
    drain(world["results"], world["requests"])
    done, log = run_stream_requester(world, f"every{transport}", Source=str(video),
                                     VideoRealTime="false", FrameTransport=transport,
                                     FrameFormat=fmt)
    assert done.returncode == 0, log  # the video ended: the component is FINISHED
    frames = read_video(video)
    results = {r["request_id"]: r for r in taken(world["results"])}
    assert len(results) == len(frames) == 12, log
    counts = summary_counts(log)
    assert counts == {"captured": 12, "sent": 12, "dropped": 0, "skipped": 0, "results": 12,
                      "errors": 0, "timeouts": 0}
    pipeline = world["pipeline"]
    for request_id, result in results.items():
        stream, seq, _captured_ms = parse_frame_id(request_id)
        assert stream == f"every{transport}" and result["status"] == "ok", result
        data = encode_frame(frames[seq - 1], FrameFormat(fmt))
        want, _ = pipeline.classify(ImageSource(SourceKind.INLINE, data=data), InputLimits(),
                                    3, 0.0)
        assert [p["class_id"] for p in result["predictions"]] == [p.class_id for p in want]
        assert f"frame {seq}: " in log and "capture->result" in log
    if transport == "file":
        assert not list((world["root"] / "frames" / "everyfile").glob("frame-*"))


def expected_top(pipeline: ClassificationPipeline, frame: np.ndarray, fmt: FrameFormat,
                 top_k: int = 3) -> list[int]:
    """The class ids the classifier gives ``frame`` sent as ``fmt``, computed in-process."""
    data = encode_frame(frame, fmt)
    want, _ = pipeline.classify(ImageSource(SourceKind.INLINE, data=data), InputLimits(), top_k,
                                0.0)
    return [p.class_id for p in want]


def cycling_frames(photos: list[Path], count: int) -> list[np.ndarray]:
    """``count`` 640x480 frames, each a different photo than the one before."""
    images = photo_frames(photos, 1)
    return [images[i % len(images)] for i in range(count)]


@pytest.mark.parametrize("in_flight", ["1", "2"])
def test_a_real_time_video_faster_than_the_classifier_drops_frames_and_counts_them(world,
                                                                                    in_flight):
    """A 400 fps video played in real time: frames superseded while requests are outstanding
    are dropped (never queued) and counted; the newest frame is sent as soon as a result frees
    room, so the video's last frame is always classified; every request gets its result, and
    each result is the classification of the very frame its id names (consecutive frames show
    different photos, so a ring slot overwritten before the classifier read it would give
    another frame's result)."""
    video = write_video(world["root"] / f"fast{in_flight}.avi",
                        cycling_frames(world["photos"][:3], 120), fps=400)
    frames = read_video(video)
    drain(world["results"], world["requests"])
    done, log = run_stream_requester(world, f"fast{in_flight}", Source=str(video),
                                     MaxInFlight=in_flight)
    assert done.returncode == 0, log
    counts = summary_counts(log)
    assert counts["captured"] == len(frames) == 120
    if in_flight == "1":  # two in flight can keep up with the test network at times
        assert counts["dropped"] > 0
    assert counts["sent"] + counts["dropped"] + counts["skipped"] == counts["captured"]
    requests = [r["request_id"] for r in taken(world["requests"])]
    results = {r["request_id"]: r for r in taken(world["results"])}
    assert len(requests) == counts["sent"] == counts["results"] == len(results)
    assert set(requests) == set(results)
    seqs = [parse_frame_id(rid)[1] for rid in requests]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # newest first, never again
    assert seqs[-1] == len(frames)  # the last frame was pending at the end: sent
    for request_id, result in results.items():
        seq = parse_frame_id(request_id)[1]
        assert [p["class_id"] for p in result["predictions"]] == expected_top(
            world["pipeline"], frames[seq - 1], FrameFormat.BMP), (seq, result)


def test_a_video_is_read_one_frame_ahead_while_a_request_is_outstanding(world):
    """VideoRealTime false, nobody answering (the requests go to a topic no classifier
    reads): frame 1 is sent; frame 2 is read and prepared meanwhile and sent the moment
    frame 1 times out (not read only then), and no frame is dropped while waiting."""
    video = write_video(world["root"] / "ahead.avi", photo_frames(world["photos"][:1], 3),
                        fps=30)
    unheard = Results(world["server"], "local/nobody")
    acl = recipe_defaults(REQUESTER)["accessControl"]
    acl = {"aws.greengrass.ipc.pubsub": {
        **acl["aws.greengrass.ipc.pubsub"],
        "com.custom.requester:pubsub:nobody": {
            "operations": ["aws.greengrass#PublishToTopic"], "resources": ["local/nobody"]}}}
    try:
        server, root = world["server"], world["root"]
        register_from_recipe(server, REQUESTER, StreamName="ahead", MetricsInterval="0",
                             Source=str(video), VideoRealTime="false",
                             RequestTopic="local/nobody", ResultTimeout="2",
                             FrameDirectory=str(root / "frames"), accessControl=acl)
        done = subprocess.run([sys.executable, "-m", "ggic", "requester"],
                              env=component_env(server, REQUESTER), capture_output=True,
                              text=True, timeout=120)
        log = done.stdout + done.stderr
        assert done.returncode == 0, log
        requests = unheard.take(3, timeout=10)
    finally:
        unheard.unsubscribe()
    ids = [parse_frame_id(r["request_id"]) for r in requests]
    assert [seq for _, seq, _ in ids] == [1, 2, 3]
    # frame 2 was captured while frame 1 waited for its result, well before frame 1's 2 s
    # ResultTimeout ended (read only after that timeout, it would be >= 2000 ms later)
    assert ids[1][2] - ids[0][2] < 2000, ids
    counts = summary_counts(log)
    assert counts == {"captured": 3, "sent": 3, "dropped": 0, "skipped": 0, "results": 0,
                      "errors": 0, "timeouts": 3}, log


class MjpegServer:
    """An HTTP MJPEG stream (multipart/x-mixed-replace) on 127.0.0.1, that can go away (its
    connections closed, its port no longer listening) and come back on the same port."""

    def __init__(self, frames: list[bytes], fps: float = 20.0) -> None:
        self.frames = frames
        self.fps = fps
        self.port = 0
        self.server: socketserver.ThreadingTCPServer | None = None
        self.alive = threading.Event()
        self.sent = 0

    def start(self) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                while outer.alive.is_set():
                    jpeg = outer.frames[i % len(outer.frames)]
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         b"Content-Length: %d\r\n\r\n" % len(jpeg) + jpeg
                                         + b"\r\n")
                    except OSError:
                        return
                    outer.sent += 1
                    i += 1
                    time.sleep(1.0 / outer.fps)
                self.connection.shutdown(socket.SHUT_RDWR)

            def log_message(self, *_args: object) -> None:
                pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.alive.set()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.alive.clear()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"


def test_an_mjpeg_stream_is_classified_and_survives_going_away_and_coming_back(world,
                                                                              tmp_path):
    frames = [cv2.imencode(".jpg", f)[1].tobytes()
              for f in photo_frames(world["photos"][:2], 1)]
    stream = MjpegServer(frames)
    stream.start()
    server, root = world["server"], world["root"]
    register_from_recipe(server, REQUESTER, Source=stream.url, ReconnectMaxDelay="1",
                         FrameDirectory=str(root / "frames"), StreamName="mjpeg",
                         MetricsInterval="0", ResultTimeout="20")
    drain(world["results"])
    log_path = tmp_path / "requester.log"
    log_file = open(log_path, "w")  # noqa: SIM115 - closed below
    requester = subprocess.Popen([sys.executable, "-m", "ggic", "requester"],
                                 env=component_env(server, REQUESTER), stdout=log_file,
                                 stderr=subprocess.STDOUT)

    def wait_for(predicate, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return False

    def results_ok() -> int:
        return log_path.read_text().count("capture->result")

    try:
        assert wait_for(lambda: results_ok() >= 3), log_path.read_text()
        stream.stop()
        assert wait_for(lambda: "is down (for" in log_path.read_text()), log_path.read_text()
        time.sleep(2.0)  # down for a while: several reopen attempts
        assert requester.poll() is None
        before = results_ok()
        stream.start()  # same port
        assert wait_for(lambda: "is back after" in log_path.read_text()), log_path.read_text()
        assert wait_for(lambda: results_ok() >= before + 3), log_path.read_text()
        assert stop_within(requester, 10, log_path) == 0
    finally:
        if requester.poll() is None:
            requester.kill()
        log_file.close()
        stream.stop()
    text = log_path.read_text()
    back = re.search(r"is back after (\d+\.\d) s down", text)
    assert back and float(back.group(1)) >= 1.9, text  # it stayed down for 2 s at least
    down_lines = re.findall(r"is down \(for (\d+\.\d) s, (\d+) attempts\)", text)
    assert len(down_lines) >= 2, down_lines  # it kept saying how long it has been down
    assert float(down_lines[-1][0]) > float(down_lines[0][0]), down_lines
    results = [r for r in taken(world["results"]) if r["request_id"].startswith("mjpeg-")]
    assert results and all(r["status"] == "ok" for r in results)
    json.dumps(results)


def test_only_changes_are_published_to_the_changes_topic(world):
    """ChangesTopic: one message per change of the top-1 label (or of its presence), matched
    to the frame where it happened; none for frames that repeat the scene."""
    frames = photo_frames(world["photos"][:3], 3) + photo_frames(world["photos"][:1], 3)
    video = write_video(world["root"] / "changes.avi", frames, fps=30)
    acl = recipe_defaults(REQUESTER)["accessControl"]
    acl = {"aws.greengrass.ipc.pubsub": {
        **acl["aws.greengrass.ipc.pubsub"],
        "com.custom.requester:pubsub:changes": {
            "operations": ["aws.greengrass#PublishToTopic"], "resources": ["stream/changes"]}}}
    changes = Results(world["server"], "stream/changes")
    try:
        done, log = run_stream_requester(world, "changes", Source=str(video),
                                         VideoRealTime="false", ChangesTopic="stream/changes",
                                         ChangeThreshold="0.0001", accessControl=acl)
        assert done.returncode == 0, log
        pipeline = world["pipeline"]
        labels = []
        for frame in read_video(video):
            data = encode_frame(frame, FrameFormat.BMP)
            top, _ = pipeline.classify(ImageSource(SourceKind.INLINE, data=data),
                                       InputLimits(), 1, 0.0)
            labels.append(top[0].label)
        expected = [(i + 1, label) for i, label in enumerate(labels)
                    if i == 0 or labels[i - 1] != label]
        assert len(expected) >= 2  # the scenes differ (else this test proves nothing)
        got = sorted((m["frame"], m["label"]) for m in changes.take(len(expected), timeout=10))
        assert got == expected
        time.sleep(0.5)
        assert changes.queue.empty()  # nothing for the frames that repeat a scene
    finally:
        changes.unsubscribe()


def test_loop_video_starts_again_at_the_end_until_stopped(world, tmp_path):
    video = write_video(world["root"] / "loop.avi", photo_frames(world["photos"][:1], 5),
                        fps=100)
    server = world["server"]
    register_from_recipe(server, REQUESTER, Source=str(video), LoopVideo="true",
                         FrameDirectory=str(world["root"] / "frames"), StreamName="loop",
                         MetricsInterval="0", ResultTimeout="20")
    log_path = tmp_path / "requester.log"
    with open(log_path, "w") as log_file:
        requester = subprocess.Popen([sys.executable, "-m", "ggic", "requester"],
                                     env=component_env(server, REQUESTER), stdout=log_file,
                                     stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and requester.poll() is None:
                if log_path.read_text().count("capture->result") >= 8:  # 5 frames a round
                    break
                time.sleep(0.1)
            assert requester.poll() is None, log_path.read_text()  # it did not finish
            assert stop_within(requester, 10, log_path) == 0
        finally:
            if requester.poll() is None:
                requester.kill()
    counts = summary_counts(log_path.read_text())
    assert counts["captured"] > 5 and counts["results"] >= 8, counts  # more than one round
    assert "ended" not in log_path.read_text()


def test_error_results_are_counted_and_their_log_lines_rate_limited(world, tmp_path):
    """Frames written outside the classifier's AllowedImageDirs: each gets its typed error,
    every one is counted, and the log says so in a few lines, not one per frame."""
    video = write_video(world["root"] / "refused.avi", photo_frames(world["photos"][:1], 20),
                        fps=30)
    done, log = run_stream_requester(world, "refused", Source=str(video),
                                     VideoRealTime="false",
                                     FrameDirectory=str(tmp_path / "elsewhere"))
    assert done.returncode == 0, log
    counts = summary_counts(log)
    assert counts["results"] == counts["errors"] == counts["sent"] == 20, counts
    assert "PATH_NOT_ALLOWED" in log
    assert log.count("PATH_NOT_ALLOWED") < 10, log
    assert re.search(r"\d+ error result\(s\) in \d+\.\d s; the latest: frame \d+: error "
                     r"PATH_NOT_ALLOWED", log), log


def test_a_new_source_in_a_configuration_update_is_opened_while_running(world, tmp_path):
    frames = [cv2.imencode(".jpg", f)[1].tobytes()
              for f in photo_frames(world["photos"][:1], 1)]
    first, second = MjpegServer(frames), MjpegServer(frames)
    first.start()
    second.start()
    server = world["server"]
    config = register_from_recipe(server, REQUESTER, Source=first.url,
                                  FrameDirectory=str(world["root"] / "frames"),
                                  StreamName="switch", MetricsInterval="0")
    log_path = tmp_path / "requester.log"
    with open(log_path, "w") as log_file:
        requester = subprocess.Popen([sys.executable, "-m", "ggic", "requester"],
                                     env=component_env(server, REQUESTER), stdout=log_file,
                                     stderr=subprocess.STDOUT)
        try:
            def wait_for(predicate) -> bool:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not predicate():
                    time.sleep(0.1)
                return predicate()

            assert wait_for(lambda: log_path.read_text().count("capture->result") >= 2)
            server.set_configuration(REQUESTER, {**config, "Source": second.url, "MaxFps": "5"})
            assert wait_for(lambda: f"opened stream {second.url}" in log_path.read_text()), \
                log_path.read_text()
            seen = log_path.read_text().count("capture->result")
            assert wait_for(lambda: log_path.read_text().count("capture->result") >= seen + 2)
            assert stop_within(requester, 10, log_path) == 0
        finally:
            if requester.poll() is None:
                requester.kill()
            first.stop()
            second.stop()
    text = log_path.read_text()
    assert "configuration updated" in text
    assert counts_skipped(text) > 0  # MaxFps 5 applies live: frames above it are skipped


def counts_skipped(log: str) -> int:
    return summary_counts(log)["skipped"]
