"""Inference time of the converted EfficientNet-Lite0 through libdlr.so, and of PyTorch.

    python benchmarks/bench_efficientnet.py [--runs 50] [--warmup 10] [--profile]

Builds the model into a temporary directory (or uses --model-dir), then times ``run()`` on a
224x224 input: median and p90 per image. Where torch is installed, the same network (built
from our spec, NCHW, torch.set_num_threads(2)) is timed in a child process (two OpenMP
runtimes in one process would compete for the cores) and the ratio is printed.
``--profile`` times every graph node on its own by calling the kernel library's packed
functions directly, with the GFLOP/s each achieves.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ggic.classifier.backends.dlr import import_dlr
from ggic.modelgen.efficientnet_lite import build_demo_model, default_checkpoint
from ggic.modelgen.params import read_params


def summarize(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1e3
    return {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)),
            "min": float(ms.min())}


def time_calls(fn, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench_dlr(model_dir: Path, runs: int, warmup: int) -> dict[str, float]:
    model = import_dlr().DLRModel(str(model_dir), "cpu")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
    return summarize(time_calls(lambda: model.run({"data": x}), runs, warmup))


def bench_torch(runs: int, warmup: int, threads: int) -> dict[str, float]:
    import torch

    from ggic.modelgen.efficientnet_spec import lite0_spec
    from ggic.modelgen.efficientnet_torch import build_torch_model
    from ggic.modelgen.torch_legacy import read_checkpoint

    torch.set_num_threads(threads)
    net = build_torch_model(lite0_spec(), read_checkpoint(default_checkpoint()))
    x = torch.from_numpy(
        np.random.default_rng(0).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    )
    with torch.inference_mode():
        return summarize(time_calls(lambda: net(x), runs, warmup))


def torch_in_child(runs: int, warmup: int, threads: int) -> dict[str, float] | None:
    try:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return None
    except ImportError:
        return None
    out = subprocess.run(
        [sys.executable, __file__, "--torch-child", "--runs", str(runs), "--warmup",
         str(warmup), "--threads", str(threads)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- per-node profile ------------------------------------------------------------------------


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.c_void_p), ("byte_offset", ctypes.c_uint64)]


def _dltensor(array: np.ndarray, keep: list) -> DLTensor:
    shape = (ctypes.c_int64 * array.ndim)(*array.shape)
    keep.extend([array, shape])
    return DLTensor(array.ctypes.data, DLDevice(1, 0), array.ndim, DLDataType(2, 32, 1),
                    shape, None, 0)


def node_flops(func: str, shapes: list[tuple[int, ...]]) -> float:
    out = shapes[-1]
    if func.startswith("ggic_effnet_pw"):
        return 2.0 * np.prod(out[:3]) * shapes[0][3] * out[3]
    if func.startswith("ggic_effnet_dw"):
        k = shapes[1][0]
        return 2.0 * np.prod(out) * k * k
    if func.startswith("ggic_effnet_stem"):
        k, ci = shapes[1][0], shapes[1][2]
        return 2.0 * np.prod(out) * k * k * ci
    if func == "ggic_effnet_gap_dense":
        return 2.0 * shapes[1][0] * shapes[1][1]
    return 0.0


def profile_nodes(model_dir: Path, runs: int) -> None:
    graph = json.loads((model_dir / "compiled_model.json").read_text())
    params = read_params(model_dir / "compiled.params")
    lib = ctypes.CDLL(str(model_dir / "compiled.so"))
    shapes = graph["attrs"]["shape"][1]
    rng = np.random.default_rng(0)
    values: dict[int, np.ndarray] = {}
    for nid, node in enumerate(graph["nodes"]):
        if node["op"] == "null":
            values[nid] = params.get(node["name"], rng.uniform(-1, 1, shapes[nid]).astype(
                np.float32))
    rows, total_t, total_f = [], 0.0, 0.0
    for nid, node in enumerate(graph["nodes"]):
        if node["op"] == "null":
            continue
        func = node["attrs"]["func_name"]
        ins = [values[i[0]] for i in node["inputs"]]
        out = np.zeros(shapes[nid], np.float32)
        values[nid] = out
        keep: list = []
        tensors = [_dltensor(a, keep) for a in (*ins, out)]
        n = len(tensors)
        args = (ctypes.c_void_p * n)(*[ctypes.addressof(t) for t in tensors])
        codes = (ctypes.c_int * n)(*([7] * n))
        fn = getattr(lib, func)
        ret_v, ret_c = ctypes.c_int64(0), ctypes.c_int(0)

        def call(fn=fn, args=args, codes=codes, n=n, ret_v=ret_v, ret_c=ret_c,
                 func=func) -> None:
            if fn(args, codes, n, ctypes.byref(ret_v), ctypes.byref(ret_c), None) != 0:
                raise RuntimeError(f"kernel {func} failed")

        t = float(np.median(time_calls(call, runs, 3)))
        flops = node_flops(func, [a.shape for a in (*ins, out)])
        rows.append((node["name"], func, t, flops))
        total_t += t
        total_f += flops
    print(f"\nper-node profile ({runs} calls each, median):")
    print(f"{'node':22s} {'kernel':28s} {'us':>8s} {'MFLOP':>8s} {'GFLOP/s':>8s} {'share':>6s}")
    for name, func, t, flops in rows:
        print(f"{name:22s} {func:28s} {t * 1e6:8.1f} {flops / 1e6:8.1f} "
              f"{flops / t / 1e9:8.1f} {100 * t / total_t:5.1f}%")
    by_kind: dict[str, list[float]] = {}
    for _, func, t, flops in rows:
        kind = func.replace("ggic_effnet_", "").split("_")[0]
        acc = by_kind.setdefault(kind, [0.0, 0.0])
        acc[0] += t
        acc[1] += flops
    print("\nby kind:")
    for kind, (t, flops) in by_kind.items():
        print(f"  {kind:6s} {t * 1e3:7.2f} ms  {flops / 1e9:6.3f} GFLOP  "
              f"{flops / t / 1e9:7.1f} GFLOP/s  {100 * t / total_t:5.1f}%")
    print(f"  total  {total_t * 1e3:7.2f} ms  {total_f / 1e9:6.3f} GFLOP  "
          f"{total_f / total_t / 1e9:7.1f} GFLOP/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads")
    parser.add_argument("--model-dir", type=Path, help="an already built model directory")
    parser.add_argument("--march", default="native")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--profile", action="store_true", help="time every node on its own")
    parser.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_child:
        print(json.dumps(bench_torch(args.runs, args.warmup, args.threads)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            start = time.perf_counter()
            model_dir = build_demo_model(Path(tmp) / "efficientnet-lite0",
                                         march=args.march).directory
            print(f"converted + compiled in {time.perf_counter() - start:.2f} s")
        ours = bench_dlr(model_dir, args.runs, args.warmup)
        print(f"EfficientNet-Lite0 via libdlr.so, 224x224, {args.runs} runs: "
              f"median {ours['median']:.2f} ms, p90 {ours['p90']:.2f} ms, "
              f"min {ours['min']:.2f} ms")
        if not args.no_torch:
            theirs = torch_in_child(args.runs, args.warmup, args.threads)
            if theirs is None:
                print("PyTorch: not installed, no comparison")
            else:
                print(f"PyTorch (CPU, {args.threads} threads, NCHW), same network: "
                      f"median {theirs['median']:.2f} ms, p90 {theirs['p90']:.2f} ms, "
                      f"min {theirs['min']:.2f} ms")
                print(f"ratio PyTorch / ours (median): {theirs['median'] / ours['median']:.2f}x")
        if args.profile:
            profile_nodes(model_dir, args.runs)


if __name__ == "__main__":
    main()
