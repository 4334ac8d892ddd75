"""Where one request's image preparation goes: every step measured in one process, interleaved.

    .venv/bin/python benchmarks/perf_prepare.py [--runs 3] [--sizes 640x480,1920x1080]

For each size, the sample photos as quality-92 JPEGs; in each round every step below runs once
on the same photo, in a rotating order, so the steps share the machine's state; each run gives a
median per step, and the table shows the min and median of the runs' medians:

- ``read``: ``inputs.read_file`` (O_PATH resolve, checks, one read); ``probe``: the header
  (``formats.probe_image``);
- ``imdecode 1/N``: ``cv2.imdecode`` at full size and with ``IMREAD_REDUCED_COLOR_2/4/8``. The
  DCT scaling saves the inverse DCT, upsampling and colour conversion of the pixels it drops,
  but every coefficient is still entropy-decoded (Huffman), so 1/8 is the floor of any JPEG
  decode; ``imread`` (the samples' read + decode) for comparison;
- ``resize``: from the full and from the reduced decodes to the Lite0 profile's short side 256,
  per interpolation; ``crop+rgb+cast``: centre view, ``cvtColor``, cast into a tensor;
- ``prepare``: the classifier's whole ``ClassificationPipeline.prepare`` (read, probe, decode at
  the rule's reduction, preprocess into a pooled tensor) and ``samples``: ``imread`` +
  ``resize(.., (224, 224))`` (INTER_LINEAR), the public samples' preparation, with their ratio.

``--clock cpu`` times with the process's CPU time (``time.process_time``, all its threads)
instead of the wall clock: on a machine other jobs are loading, a step that is preempted
counts only the CPU it used, so the ratios say what the work costs rather than who else ran.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from perf_common import describe_machine, machine

from ggic.classifier.formats import probe_image
from ggic.classifier.inputs import InputLimits, read_file
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline
from ggic.classifier.preprocess import preprocessor_for, resize_plan
from ggic.classifier.profiles import BUILTIN_PROFILES, resolve_profile
from ggic.messages import ImageSource, SourceKind
from ggic.sample_images import sample_photo_paths

LIMITS = InputLimits()
PROFILE = BUILTIN_PROFILES["efficientnet-lite0"]
INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}
REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
           8: cv2.IMREAD_REDUCED_COLOR_8}


def write_jpegs(folder: Path, width: int, height: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for index, source in enumerate(sample_photo_paths()):
        big = cv2.resize(cv2.imread(str(source)), (width, height), interpolation=cv2.INTER_CUBIC)
        path = folder / f"photo{index}.jpg"
        cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 92])
        out.append(path)
    return out



def steps_for(path: Path, pipeline: ClassificationPipeline) -> dict[str, Callable[[], object]]:
    data = path.read_bytes()
    buffer = np.frombuffer(data, np.uint8)
    decoded = {n: cv2.imdecode(buffer, flag) for n, flag in REDUCED.items()}
    full = decoded[1]
    new_w, new_h, left, top = resize_plan(full.shape[1], full.shape[0], PROFILE)
    preprocessor = preprocessor_for(pipeline.profile)
    out = np.empty(preprocessor.shape, np.float32)
    resized = cv2.resize(full, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
    source = ImageSource(SourceKind.PATH, path=str(path))

    def prepare() -> None:
        prepared = pipeline.prepare(source, LIMITS)
        if prepared.release is not None:
            prepared.release()

    steps: dict[str, Callable[[], object]] = {
        "read": lambda: read_file(str(path), LIMITS),
        "probe": lambda: probe_image(data),
        "imread (samples' decode)": lambda: cv2.imread(str(path)),
    }
    for n, flag in REDUCED.items():
        steps[f"imdecode 1/{n}"] = lambda flag=flag: cv2.imdecode(buffer, flag)
    for n in (1, 2, 4):
        source_image = decoded[n]
        for name, interpolation in INTERPOLATIONS.items():
            steps[f"resize {name} from 1/{n} ({source_image.shape[1]}x"
                  f"{source_image.shape[0]}) to {new_w}x{new_h}"] = (
                lambda s=source_image, i=interpolation: cv2.resize(s, (new_w, new_h),
                                                                    interpolation=i))
    steps["crop+rgb+cast (preprocessor on a resized image)"] = lambda: preprocessor(resized, out)
    steps["prepare (ours, whole)"] = prepare
    steps["samples: imread + resize 224"] = lambda: cv2.resize(cv2.imread(str(path)),
                                                               (224, 224))
    return steps


def measure(paths: list[Path], pipeline: ClassificationPipeline, runs: int,
            rounds: int, clock: Callable[[], float] = time.perf_counter
            ) -> dict[str, list[float]]:
    """Per step, the median of each run (ms)."""
    per_photo = [steps_for(p, pipeline) for p in paths]
    names = list(per_photo[0])
    medians: dict[str, list[float]] = {n: [] for n in names}
    for _run in range(runs):
        samples: dict[str, list[float]] = {n: [] for n in names}
        for index in range(rounds):
            steps = per_photo[index % len(per_photo)]
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                started = clock()
                steps[name]()
                samples[name].append((clock() - started) * 1000.0)
        for name in names:
            medians[name].append(statistics.median(samples[name]))
    return medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=100, help="rounds per run")
    parser.add_argument("--sizes", default="640x480,1920x1080")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall clock, or the process's CPU time (see above)")
    parser.add_argument("--opencv-threads", type=int, default=None,
                        help="cv2.setNumThreads(N) first (the classifier leaves OpenCV's default)")
    parser.add_argument("--model", type=Path, default=Path(".ggic/bench/efficientnet-lite0"),
                        help="a Lite0 model directory (benchmarks/run_all.py builds it)")
    args = parser.parse_args(argv)
    if args.opencv_threads is not None:
        cv2.setNumThreads(args.opencv_threads)
    print(f"machine: {describe_machine(machine())}; OpenCV {cv2.__version__}, "
          f"{cv2.getNumThreads()} threads")
    if not (args.model / "compiled.so").is_file():
        from ggic.modelgen.efficientnet_lite import build_demo_model

        build_demo_model(args.model)
    pipeline = ClassificationPipeline(load_model(args.model, resolve_profile("auto"),
                                                 warm_up=False))
    with tempfile.TemporaryDirectory(prefix="ggic-perf-prepare-") as tmp:
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.split("x"))
            paths = write_jpegs(Path(tmp) / size, width, height)
            clock = time.process_time if args.clock == "cpu" else time.perf_counter
            medians = measure(paths, pipeline, max(1, args.runs), args.rounds, clock)
            print(f"\n{size} JPEG (quality 92), {len(paths)} photos, {args.runs} runs x "
                  f"{args.rounds} rounds: median ms of {args.clock} time (min of runs)")
            for name, values in medians.items():
                print(f"  {statistics.median(values):7.3f} ({min(values):.3f})  {name}")
            ratio = [s / o for s, o in zip(medians["samples: imread + resize 224"],
                                           medians["prepare (ours, whole)"])]
            floor = [s / o for s, o in zip(medians["samples: imread + resize 224"],
                                           medians["imdecode 1/8"])]
            print(f"  samples / ours: {statistics.median(ratio):.2f}x; samples / a 1/8 decode "
                  f"alone (the ceiling): {statistics.median(floor):.2f}x")
    pipeline.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
