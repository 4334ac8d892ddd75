"""DLR vs ONNX Runtime on the same model and the same inputs, measured side by side.

    python benchmarks/bench_backends.py [--rounds 10] [--runs 20] [--threads N]

Builds EfficientNet-Lite0 both ways (``ggic model build-demo`` and ``--format onnx``: the
same weights, input and preprocessing), loads both through the classifier's backends, and
times ``LoadedModel.run`` on the sample photos preprocessed once with the model's profile.
Each round times a block of runs of one backend, then of the other (alternating which goes
first, with a pause at each switch so the other library's spinning worker threads go idle);
the figures are the min and median per image over all rounds, and the median of the per-round
ratios. Both libraries use their default thread counts (one per core) unless ``--threads``
sets both (OMP_NUM_THREADS for DLR's OpenMP kernels, intra-op threads for ONNX Runtime).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (f"{platform.machine()} {model or platform.processor()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, load average {load[0]:.2f} at start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=20, help="runs per backend per round")
    parser.add_argument("--threads", type=int, default=0, help="0: each library's default")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before libgomp starts

    import numpy as np
    import onnxruntime

    from ggic.classifier.decode import decode_image
    from ggic.classifier.model import load_model
    from ggic.classifier.preprocess import preprocess
    from ggic.classifier.profiles import resolve_profile
    from ggic.modelgen.efficientnet_lite import build_demo_model
    from ggic.modelgen.onnx_export import build_demo_onnx
    from ggic.sample_images import copy_sample_photos

    with tempfile.TemporaryDirectory(prefix="ggic-bench-backends-") as tmp:
        root = Path(tmp)
        build_demo_model(root / "dlr")
        build_demo_onnx(root / "onnx")
        models = {name: load_model(root / name, resolve_profile("auto"))
                  for name in ("dlr", "onnx")}
        if args.threads:
            models["onnx"].backend.set_threads(args.threads)
        photos = copy_sample_photos(root / "photos")
        profile = models["dlr"].profile
        tensors = [preprocess(decode_image(p.read_bytes(), max_pixels=50_000_000, what=p.name),
                              profile) for p in photos]
        for model in models.values():  # warm up: first runs allocate and start thread pools
            for tensor in tensors:
                model.run(tensor)
        agree = all(int(models["dlr"].run(t).argmax()) == int(models["onnx"].run(t).argmax())
                    for t in tensors)

        times: dict[str, list[float]] = {name: [] for name in models}
        ratios = []
        for r in range(args.rounds):
            order = ["dlr", "onnx"] if r % 2 == 0 else ["onnx", "dlr"]
            medians = {}
            for name in order:
                time.sleep(0.2)
                block = []
                for i in range(args.runs):
                    tensor = tensors[i % len(tensors)]
                    started = time.perf_counter()
                    models[name].run(tensor)
                    block.append((time.perf_counter() - started) * 1000.0)
                times[name] += block
                medians[name] = float(np.median(block))
            ratios.append(medians["onnx"] / medians["dlr"])
        for model in models.values():
            model.close()

    from ggic.classifier.backends.dlr import import_dlr

    dlr = import_dlr()  # already imported by the backend, phone-home off

    print(f"machine: {machine()}")
    print(f"libraries: dlr {getattr(dlr, '__version__', '?')} (libdlr.so, kernels by gcc "
          f"-march=native), onnxruntime {onnxruntime.__version__} (CPUExecutionProvider); "
          f"threads: {args.threads or 'defaults'}")
    print(f"EfficientNet-Lite0, 224x224, {len(tensors)} sample photos; {args.rounds} rounds x "
          f"{args.runs} runs per backend, interleaved; same top-1 on every photo: {agree}")
    for name, label in (("dlr", "DLR (libdlr.so)"), ("onnx", "ONNX Runtime")):
        ms = np.asarray(times[name])
        print(f"  {label:16} min {ms.min():6.2f} ms   median {np.median(ms):6.2f} ms")
    print(f"  ONNX Runtime / DLR, median of per-round median ratios: {np.median(ratios):.2f} "
          f"(rounds: {min(ratios):.2f}..{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
