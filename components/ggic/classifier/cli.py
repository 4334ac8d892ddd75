"""``ggic classifier`` (the component) and ``ggic classify`` (in-process, no IPC)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..cli_options import add_config_flags, config_overrides
from ..config import ClassifierConfig, ConfigError, config_from_mapping
from ..messages import ClassificationError, ImageSource, SourceKind
from ..runtime_support import install_stop_signals
from .inputs import InputLimits
from .model import ModelLoadError
from .model_loader import default_model_loader
from .service import run_classifier

log = logging.getLogger(__name__)


def add_classifier_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "classifier",
        help="run the com.custom.ImageClassifier component (needs Greengrass IPC)",
        description=(
            "Run the image classifier component: subscribe to the request topic over "
            "Greengrass IPC, classify each request with the model, publish one result per "
            "request. Configuration comes from the component's Greengrass configuration (and "
            "follows its updates); the flags below override single keys. Connects to the "
            "nucleus (or `ggic local`) named by $AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_"
            "COMPONENT and $SVCUID, which Greengrass sets for a component's processes."
        ),
    )
    add_config_flags(parser, ClassifierConfig)
    parser.set_defaults(handler=run_classifier_command, component=True)


def run_classifier_command(args: argparse.Namespace) -> int:
    from ..ipc import IpcClient, connect_error_hint

    try:
        ipc = IpcClient()
    except Exception as exc:
        log.error("cannot connect to Greengrass IPC: %s. %s", exc, connect_error_hint())
        return 2
    try:  # requests arrive on a connection of their own (see ggic.classifier.intake)
        intake = IpcClient(network_thread_callbacks=True)
    except Exception as exc:
        log.error("cannot open the IPC connection for requests: %s. %s", exc,
                  connect_error_hint())
        ipc.close()
        return 2
    try:
        return run_classifier(ipc, config_overrides(args), install_signals=install_stop_signals,
                              intake=intake)
    finally:
        intake.close()
        ipc.close()


def add_classify_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="classify images in-process with a model (DLR or ONNX; no Greengrass needed)",
        description=(
            "Load a model (DLR or ONNX) and classify the given images (or .npy tensors) in this "
            "process: the quickest way to try a model. Same pipeline as the component."
        ),
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                        help="image files (JPEG, PNG, ...) or preprocessed .npy tensors")
    parser.add_argument("--json", action="store_true", help="print one JSON result per line")
    add_config_flags(parser, ClassifierConfig, skip=(
        "RequestTopic", "ResultTopic", "QueueSize", "Workers", "PublishToIoTCore",
        "IoTCoreTopic",
    ))
    parser.set_defaults(handler=run_classify_command)


def run_classify_command(args: argparse.Namespace) -> int:
    from ..messages import ClassificationResult, new_request_id
    from .inference_threads import apply_inference_threads

    try:
        config = config_from_mapping(ClassifierConfig, config_overrides(args))
        if not config.model_dir:
            raise ConfigError(["--model-dir is required"])
        pipeline = default_model_loader(config)
    except (ConfigError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # this (main) thread runs the model
    apply_inference_threads(config.inference_threads, pipeline.model.backend)
    limits = InputLimits.from_config(config)
    failures = 0
    for image in args.images:
        kind = SourceKind.TENSOR if image.suffix.lower() == ".npy" else SourceKind.PATH
        source = ImageSource(kind, path=str(image.resolve()))
        rid = new_request_id()
        try:
            predictions, timing = pipeline.classify(source, limits, config.top_k,
                                                    config.score_threshold)
            result = ClassificationResult.success(rid, predictions, pipeline.info.summary(),
                                                  timing)
        except ClassificationError as exc:
            failures += 1
            result = ClassificationResult.failure(rid, exc.code, exc.message)
        if args.json:
            print(json.dumps({"image": str(image), **result.to_dict()}))
        else:
            print(format_result_line(str(image), result))
    return 1 if failures else 0


def format_result_line(name: str, result) -> str:  # noqa: ANN001 - ClassificationResult
    if not result.ok:
        return f"{name}: error {result.error_code}: {result.error_message}"
    top = ", ".join(f"{p.label} ({p.score:.3f})" for p in result.predictions)
    top = top or "(nothing above the threshold)"
    return f"{name}: {top}  [inference {result.timing_ms.get('inference', 0):.1f} ms]"


def add_tensor_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tensor",
        help="convert an image into a preprocessed .npy tensor (for tensor_path requests)",
        description=(
            "Decode and preprocess an image exactly as the classifier would for a profile and "
            "save the model input as .npy, the format tensor_path requests take (the Neo/VGG16 "
            "sample's format). Give --model-dir to complete the profile from the model."
        ),
    )
    parser.add_argument("image", type=Path, help="the image to convert")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the .npy to write")
    parser.add_argument("--model-profile", default="neo-vgg16",
                        help="profile name or JSON object (default: neo-vgg16)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="read input name, layout and size from this model")
    parser.set_defaults(handler=run_tensor_command)


def run_tensor_command(args: argparse.Namespace) -> int:
    import numpy as np

    from ..config import model_profile_value
    from .backends.registry import AUTO, inspect_model
    from .decode import decode_image
    from .model import profile_for
    from .preprocess import preprocess
    from .profiles import resolve_profile

    try:
        profile = resolve_profile(model_profile_value(args.model_profile))
        if args.model_dir is not None:
            profile, _ = profile_for(inspect_model(AUTO, args.model_dir).signature, profile)
        if profile.size is None or profile.layout is None:
            raise ConfigError([f"profile {profile.name} leaves the input size open: "
                               "give --model-dir"])
        image = decode_image(args.image.read_bytes(), max_pixels=1_000_000_000,
                             what=str(args.image))
    except (ConfigError, ModelLoadError, ClassificationError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tensor = preprocess(image, profile)
    np.save(args.output, tensor)
    print(f"{args.output}: {list(tensor.shape)} float32 for {profile.describe()}")
    return 0
