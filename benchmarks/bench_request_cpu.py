"""CPU time of each step of the classifier's request path, one step at a time, in this process.

    .venv/bin/python benchmarks/bench_request_cpu.py [--model tiny|lite0] [--count 400]

For 640x480 JPEG ``image_path`` requests it times (``time.thread_time``, so other jobs on the
machine do not count) what the classifier does per request outside the SDK: parse + validate
the message, read the file (with an AllowedImageDirs check, as the recipe configures it), the
whole ``prepare`` (read, decode, preprocess), ``model.run``, top-k, building the result and its
dict, JSON encoding; and what ``ggic local``'s IPC server does per frame (decode one publish
request frame, encode one event frame; a classified image costs it 2 decodes and 4 encodes).
``benchmarks/run_all.py`` gives the CPU of whole processes (the SDK's share included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from perf_common import describe_machine, machine
from run_all import camera_jpegs

from ggic.classifier.inference_threads import apply_inference_threads
from ggic.classifier.inputs import InputLimits, read_file
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline, result_timing
from ggic.classifier.profiles import resolve_profile
from ggic.local.eventstream import (
    OPERATION_HEADER,
    Header,
    MessageType,
    decode_message,
    encode_rpc_message,
    json_headers,
    rpc_view,
)
from ggic.messages import ClassificationResult, decode_payload, parse_request
from ggic.modelgen.efficientnet_lite import build_demo_model
from ggic.modelgen.testnets import write_modelstore_like


def model_dir(cache: Path, name: str) -> Path:
    """The model run_all.py measures under this name, built into ``cache`` once."""
    out = cache / ("efficientnet-lite0" if name == "lite0" else name)
    if not (out / "compiled.so").is_file():
        if name == "lite0":
            build_demo_model(out)
        else:
            write_modelstore_like(out, num_classes=10, size=224)
    return out


def per_call_ms(steps: dict[str, Callable[[], Any]], count: int) -> dict[str, float]:
    """Median over 5 rounds of each step's CPU ms per call, the steps taking turns."""
    rounds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(5):
        for name, step in steps.items():
            started = time.thread_time()
            for _ in range(count):
                step()
            rounds[name].append((time.thread_time() - started) * 1000.0 / count)
    return {name: statistics.median(values) for name, values in rounds.items()}


def request_steps(model_dir: Path, images: list[Path], count: int) -> dict[str, float]:
    model = load_model(model_dir, resolve_profile("auto"), warm_up=False)
    # as the classifier's inference thread does: after loading (libgomp is loaded by then)
    apply_inference_threads(1, model.backend)
    pipeline = ClassificationPipeline(model)
    pipeline.warm_up()
    limits = InputLimits.create([str(images[0].parent)], 10 * 1024 * 1024, 40_000_000)
    message = {"request_id": "bench-1", "image_path": str(images[0])}
    request = parse_request(message, max_inline_bytes=limits.max_image_bytes)
    prepared = pipeline.prepare(request.source, limits)
    run = pipeline.run_model(pipeline.prepare(request.source, limits))
    predictions = pipeline.predictions(run.scores, 5, 0.0)
    result = ClassificationResult.success(request.request_id, predictions,
                                          pipeline.info.summary(),
                                          result_timing(prepared, run, 1.0))

    def prepare_and_release() -> None:
        done = pipeline.prepare(request.source, limits)
        if done.release is not None:
            done.release()

    steps = {
        "parse + validate the request": lambda: parse_request(
            decode_payload(message), max_inline_bytes=limits.max_image_bytes),
        "read the file (AllowedImageDirs checked)": lambda: read_file(
            str(images[0]), limits),
        "prepare (read, decode, preprocess)": prepare_and_release,
        "model.run": lambda: pipeline.model.run(prepared.tensor),
        "top-k": lambda: pipeline.predictions(run.scores, 5, 0.0),
        "build the result": lambda: ClassificationResult.success(
            request.request_id, predictions, pipeline.info.summary(),
            result_timing(prepared, run, 1.0)),
        "result dict + JSON": lambda: json.dumps(result.to_dict()),
    }
    try:
        return per_call_ms(steps, count)
    finally:
        pipeline.close()


def frame_steps(count: int) -> dict[str, float]:
    payload = json.dumps({"topic": "local/inference", "publishMessage": {"jsonMessage": {
        "message": {"request_id": "bench-1", "image_path": "/data/640x480/photo1.jpg"}}}})
    frame = encode_rpc_message(
        MessageType.APPLICATION_MESSAGE, stream_id=17,
        headers=(Header.string(OPERATION_HEADER, "aws.greengrass#PublishToTopic"),
                 *json_headers("aws.greengrass#PublishToTopicRequest")),
        payload=payload.encode())
    event = json_headers("aws.greengrass#SubscriptionResponseMessage")
    return per_call_ms({
        "IPC server: decode a request frame": lambda: rpc_view(decode_message(frame)),
        "IPC server: encode an event frame": lambda: encode_rpc_message(
            MessageType.APPLICATION_MESSAGE, stream_id=17, headers=event, payload=b"{}"),
    }, count * 10)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "lite0"), default="tiny")
    parser.add_argument("--count", type=int, default=200, help="calls per step and round")
    parser.add_argument("--cache", type=Path, default=Path(".ggic/bench"))
    args = parser.parse_args(argv)
    print(f"machine: {describe_machine(machine())}")
    with tempfile.TemporaryDirectory(prefix="ggic-bench-images-") as tmp:
        images = camera_jpegs(Path(tmp))["640x480"]
        figures = request_steps(model_dir(args.cache, args.model), images, args.count)
    figures.update(frame_steps(args.count))
    print(f"CPU per call, {args.model} model, 640x480 JPEGs (median of 5 rounds):")
    for name, ms in figures.items():
        print(f"  {name:45} {ms:8.3f} ms")
    return figures


if __name__ == "__main__":
    main()
    sys.exit(0)
