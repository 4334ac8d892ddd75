"""A 640x480 30 fps video through requester -> IPC -> classifier, against an in-process loop.

    python benchmarks/bench_stream.py [--frames 300] [--rounds 3] [--model-dir DIR]

On a machine shared with other jobs, run it under ``nice -n -20`` (as root): their load slows
the one-thread in-process loop more than the two processes of the stream, which flatters the
stream's ratio; first claim on the CPUs brings the loop near its quiet-machine speed.

The real EfficientNet-Lite0 demo model (``ggic model build-demo``; built into a temporary
folder if ``--model-dir`` is not given), a video written here from the sample photos, and:

* ``in-process``: one loop in this process: ``VideoCapture.read``, the classifier's
  preprocessing, ``model.run``, top-k. Per-frame time = all of it; capture -> result latency =
  from the frame read to its top-k. The model runs with the same thread count as the
  classifier's (``InferenceThreads``, the recipe default unless ``--inference-threads``), set
  the classifier's way (``apply_inference_threads`` on the loop's thread before the first run),
  so the ratio compares the same model work.
* ``stream <transport>/<format> x<MaxInFlight>``: the real classifier process (recipe defaults,
  the model) and a real requester process per run (``Source`` = the video, ``VideoRealTime``
  false: every frame, sent as soon as MaxInFlight allows; the requester reads one frame ahead
  while a request is outstanding), through ggic.local's IPC server and the real awsiotsdk
  client. Results/s from the result arrivals; capture -> result latency from
  the requester's own log line per result, and sent -> result ("sent med": without the
  time a read-ahead frame waited to be sent).
* ``stream ... 30 fps``: the same video played in real time (VideoRealTime true): frames
  arriving while busy are dropped.

Rounds are interleaved (in-process, then each stream case, repeated); the table gives the
median over rounds of each run's figure, the ratio of the medians to the in-process loop's,
and the median (min-max) of each run's ratio to the in-process run of its own round ("paired":
less sensitive to the machine's load drifting between rounds). "classifier ms" is the median
of the classifier's own ``timing_ms.total`` (accepted -> result built): the rest of the time per
result is the IPC hops, the requester, and the classifier's intake and publishing. Prints the
machine and its load average: the figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import yaml

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER = "com.custom.ImageClassifier"
REQUESTER = "com.custom.requester"
SIZE = (640, 480)
STREAM_CASES = [  # (FrameTransport, FrameFormat, MaxInFlight, VideoRealTime)
    ("file", "bmp", 1, False), ("file", "jpeg", 1, False), ("inline", "jpeg", 1, False),
    ("inline", "bmp", 1, False), ("file", "bmp", 2, False), ("file", "bmp", 1, True),
]


def recipe_defaults(name: str) -> dict:
    recipe = yaml.safe_load((REPO / "recipes" / f"{name}.yaml").read_text())
    return recipe["ComponentConfiguration"]["DefaultConfiguration"]


def write_video(path: Path, frames: int) -> Path:
    from ggic.sample_images import copy_sample_photos

    photos = copy_sample_photos(path.parent / "photos")
    images = [cv2.resize(cv2.imread(str(p), cv2.IMREAD_COLOR), SIZE) for p in photos]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, SIZE)
    for i in range(frames):
        writer.write(images[(i // 15) % len(images)])  # a new scene every half second
    writer.release()
    return path


def in_process(model_dir: Path, video: Path, threads: int) -> dict[str, float]:
    from ggic.classifier.inference_threads import apply_inference_threads
    from ggic.classifier.model import load_model
    from ggic.classifier.postprocess import scores_from_output, top_k
    from ggic.classifier.preprocess import preprocess
    from ggic.classifier.profiles import resolve_profile

    model = load_model(str(model_dir), resolve_profile("efficientnet-lite0"), warm_up=False)
    apply_inference_threads(threads, model.backend)  # as the classifier's inference thread
    model.warm_up()
    capture = cv2.VideoCapture(str(video))
    latencies, per_frame = [], []
    started = time.perf_counter()
    while True:
        begin = time.perf_counter()
        ok, frame = capture.read()
        if not ok:
            break
        captured = time.perf_counter()
        scores = scores_from_output(model.run(preprocess(frame, model.profile)),
                                    model.profile.output)
        top_k(scores, 5, 0.3, model.labels)
        done = time.perf_counter()
        latencies.append((done - captured) * 1000)
        per_frame.append((done - begin) * 1000)
    elapsed = time.perf_counter() - started
    capture.release()
    model.close()
    return {"results_per_s": len(latencies) / elapsed, "median_ms": statistics.median(latencies),
            "p99_ms": quantile(latencies, 0.99), "per_frame_ms": statistics.median(per_frame),
            "dropped": 0, "results": len(latencies), "per_result_ms": 1000.0 * elapsed
            / max(1, len(latencies)), "classifier_ms": float("nan"),
            "sent_median_ms": statistics.median(latencies)}


def transport_costs(model_dir: Path, video: Path, reps: int) -> dict[str, tuple[float, float]]:
    """Per frame, in this process, interleaved: the work each transport adds on both sides
    (requester: encode, write or base64 + JSON; classifier: read or JSON + base64, decode,
    preprocess). (min, median) ms. Min is what the path costs; the median shows the noise."""
    import base64
    import json

    from ggic.classifier.inputs import InputLimits
    from ggic.classifier.model import load_model
    from ggic.classifier.pipeline import ClassificationPipeline
    from ggic.classifier.preprocess import preprocess
    from ggic.classifier.profiles import resolve_profile
    from ggic.requester.frames import FrameFormat, encode_frame

    model = load_model(str(model_dir), resolve_profile("efficientnet-lite0"), warm_up=False)
    pipeline = ClassificationPipeline(model)
    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    capture.release()
    target = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    limits = InputLimits()

    def file_path(fmt: FrameFormat) -> None:
        path = target / f"frame{fmt.suffix}"
        path.write_bytes(encode_frame(frame, fmt))
        message = json.loads(json.dumps({"request_id": "cam-1-1", "image_path": str(path)}))
        data = Path(message["image_path"]).read_bytes()
        preprocess(pipeline.decode(data, limits, "frame"), model.profile)

    def inline(fmt: FrameFormat) -> None:
        encoded = base64.b64encode(encode_frame(frame, fmt)).decode("ascii")
        message = json.loads(json.dumps({"request_id": "cam-1-1", "image_b64": encoded}))
        data = base64.b64decode(message["image_b64"])
        preprocess(pipeline.decode(data, limits, "frame"), model.profile)

    cases = {f"file/{f.value}": (file_path, f) for f in FrameFormat}
    cases.update({f"inline/{f.value}": (inline, f) for f in FrameFormat})
    times: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(reps):
        for label, (run, fmt) in cases.items():
            started = time.perf_counter()
            run(fmt)
            times[label].append((time.perf_counter() - started) * 1000)
    shutil.rmtree(target, ignore_errors=True)
    model.close()
    return {label: (min(t), statistics.median(t)) for label, t in times.items()}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Stream:
    """The classifier process under ggic.local's IPC server; one requester run per call."""

    def __init__(self, work: Path, model_dir: Path, threads: int) -> None:
        from ggic.local.ipc_server import IpcServer

        self.work = work
        self.frames_dir = Path(tempfile.mkdtemp(prefix="ggic-bench-frames-", dir="/dev/shm")
                               if Path("/dev/shm").is_dir() else work / "frames")
        self.server = IpcServer(work / "ipc.socket")
        config = {**recipe_defaults(CLASSIFIER), "ModelDir": str(model_dir),
                  "ModelProfile": "efficientnet-lite0", "AllowedImageDirs": [
                      str(self.frames_dir)], "MetricsInterval": "0",
                  "InferenceThreads": str(threads)}
        self.server.register_component(CLASSIFIER, configuration=config,
                                       access_control=config["accessControl"])
        self.server.start()
        self.arrivals: queue.Queue[tuple[float, dict]] = queue.Queue()
        self.server.subscribe("local/result",
                              lambda _t, m: self.arrivals.put((time.perf_counter(), m)))
        self.log = open(work / "classifier.log", "w")  # noqa: SIM115
        self.classifier = subprocess.Popen(
            [sys.executable, "-m", "ggic", "classifier"], env=self.env(CLASSIFIER),
            stdout=self.log, stderr=subprocess.STDOUT)
        if not self.server.wait_for_state(CLASSIFIER, "RUNNING", 120):
            raise SystemExit((work / "classifier.log").read_text())

    def env(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.server.component_env(name))
        env["PYTHONPATH"] = str(REPO / "components")
        return env

    def run(self, video: Path, transport: str, fmt: str, in_flight: int, real_time: bool
            ) -> dict[str, float]:
        config = {**recipe_defaults(REQUESTER), "Source": str(video), "FrameTransport": transport,
                  "FrameFormat": fmt, "MaxInFlight": str(in_flight),
                  "VideoRealTime": str(real_time).lower(), "FrameDirectory": str(self.frames_dir),
                  "MetricsInterval": "0"}
        self.server.register_component(REQUESTER, configuration=config,
                                       access_control=config["accessControl"])
        while not self.arrivals.empty():
            self.arrivals.get_nowait()
        done = subprocess.run([sys.executable, "-m", "ggic", "requester"], env=self.env(REQUESTER),
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise SystemExit(done.stdout + done.stderr)
        arrivals, classifier_ms = [], []
        while not self.arrivals.empty():
            arrived, message = self.arrivals.get_nowait()
            arrivals.append(arrived)
            classifier_ms.append(float(message.get("timing_ms", {}).get("total", "nan")))
        latencies = [float(x) for x in re.findall(r"capture->result (\d+\.\d+) ms", done.stdout)]
        sent = [float(x) for x in re.findall(r"sent->result (\d+\.\d+) ms", done.stdout)]
        dropped = int(re.search(r"(\d+) dropped while busy", done.stdout).group(1))
        rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
        return {"results_per_s": rate, "median_ms": statistics.median(latencies),
                "p99_ms": quantile(latencies, 0.99), "per_frame_ms": float("nan"),
                "dropped": dropped, "results": len(latencies),
                "per_result_ms": 1000.0 / rate if rate else float("nan"),
                "sent_median_ms": statistics.median(sent),
                "classifier_ms": statistics.median(classifier_ms)}

    def close(self) -> None:
        self.classifier.terminate()
        self.classifier.wait(30)
        self.log.close()
        self.server.stop()
        shutil.rmtree(self.frames_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--cases", default="",
                        help="only the stream cases whose label contains one of these "
                             "comma-separated texts (e.g. 'file/bmp x1,inline/jpeg x1')")
    parser.add_argument("--transport-reps", type=int, default=200,
                        help="repetitions of the per-frame transport cost measurement")
    parser.add_argument("--inference-threads", type=int,
                        default=int(recipe_defaults(CLASSIFIER)["InferenceThreads"]),
                        help="InferenceThreads of the classifier and of the in-process loop "
                             "(default: the classifier recipe's)")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ggic-bench-stream-") as tmp:
        work = Path(tmp)
        model_dir = args.model_dir
        if model_dir is None:
            from ggic.modelgen.efficientnet_lite import build_demo_model

            model_dir = work / "model"
            build_demo_model(model_dir)
        video = write_video(work / "video.avi", args.frames)
        costs = transport_costs(model_dir, video, args.transport_reps)
        stream = Stream(work, model_dir, args.inference_threads)
        runs: dict[str, list[dict[str, float]]] = {}
        try:
            for _ in range(args.rounds):
                runs.setdefault("in-process", []).append(
                    in_process(model_dir, video, args.inference_threads))
                for transport, fmt, in_flight, real_time in STREAM_CASES:
                    label = (f"stream {transport}/{fmt} x{in_flight}"
                             + (" 30 fps" if real_time else ""))
                    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
                    if wanted and not any(c in label for c in wanted):
                        continue
                    runs.setdefault(label, []).append(
                        stream.run(video, transport, fmt, in_flight, real_time))
        finally:
            stream.close()
    base = {key: statistics.median(r[key] for r in runs["in-process"])
            for key in ("results_per_s", "median_ms", "per_frame_ms")}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f} (at the start "
          f"{load_at_start:.2f}); InferenceThreads {args.inference_threads} (classifier and "
          f"in-process loop), OMP_NUM_THREADS {os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"{args.frames} frames of 640x480, {args.rounds} rounds (medians)")
    print(f"{'case':34s} {'results/s':>9s} {'x in-proc':>9s} {'paired x':>17s} "
          f"{'lat med':>8s} {'lat p99':>8s} {'med - in-proc frame':>20s} {'sent med':>8s} "
          f"{'dropped':>7s} {'classifier ms':>13s}")
    for label, results in runs.items():
        def med(key: str, results=results) -> float:
            return statistics.median(r[key] for r in results)
        # each run against the in-process loop of its own round: load drifts between rounds
        paired = sorted(r["results_per_s"] / b["results_per_s"]
                        for r, b in zip(results, runs["in-process"]))
        spread = f"{statistics.median(paired):.2f} ({paired[0]:.2f}-{paired[-1]:.2f})"
        print(f"{label:34s} {med('results_per_s'):9.1f} "
              f"{med('results_per_s') / base['results_per_s']:9.2f} {spread:>17s} "
              f"{med('median_ms'):8.1f} "
              f"{med('p99_ms'):8.1f} {med('median_ms') - base['per_frame_ms']:+20.1f} "
              f"{med('sent_median_ms'):8.1f} {med('dropped'):7.0f} "
              f"{med('classifier_ms'):13.1f}")
    print(f"in-process per-frame time (capture + preprocess + run): {base['per_frame_ms']:.1f} ms")
    print("work a frame's transport adds, both sides (encode, write/base64+JSON, read, decode, "
          "preprocess), min / median ms:")
    for label, (low, middle) in costs.items():
        print(f"  {label:12s} {low:6.2f} / {middle:6.2f}")


if __name__ == "__main__":
    main()
