"""Two small, real DLR models for the classifier's tests, shaped like the two model kinds.

- :func:`write_modelstore_like`: like AWS's ModelStore ResNet-50 (``DLR-resnet50-…``): input
  ``data`` float32 [1,S,S,3] NHWC of raw 0..255 RGB, the ImageNet mean/std normalisation
  compiled into the graph, ``compiled.*`` files and ``synset.txt`` in the model directory.
- :func:`write_neo_like`: like a Neo-compiled PyTorch VGG16: input ``input0`` float32
  [1,3,S,S] NCHW, already normalised by the caller; Neo's output names (``compiled.so``,
  ``compiled.params``, ``compiled_model.json``, ``compiled.meta``) in a model directory and
  ``imagenet_class_index.json`` beside it (DLR refuses a directory with two ``*.json``).

Both average-pool the image to a 7x7 grid per channel, standardise the flattened features
and apply seeded random dense layers, so the output depends on channel order and spatial
layout (a swapped or transposed input changes the top-5). The logit scale is calibrated so
that the top-1 softmax probability is typically 0.2-0.9. Outputs are logits [1, classes], or
probabilities with ``probabilities=True`` (softmax inside the graph).

``poison_value`` compiles the kernels so that the first one fails through
``__TVMAPISetLastError`` (message mentioning "poison") when input element [0] equals it: a way
to provoke a real runtime error inside libdlr.

:meth:`TestNet.reference` recomputes the outputs with numpy (float64) from the same weights.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .compile import KERNELS_DIR
from .graph import GraphBuilder, Tensor
from .synthetic_labels import synthetic_labels, write_class_index, write_synset
from .writer import ModelFiles, write_model_dir

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRID = 7
HIDDEN = 64
STANDARDIZE_EPS = 1e-6
#: Median top-1 probability the logit scale is calibrated for.
TARGET_TOP1 = 0.45

KERNEL_SOURCE = KERNELS_DIR / "testnet_kernels.c"
_FAST_COMPILE = "-O2"

Reference = Callable[[np.ndarray], np.ndarray]


@dataclass
class TestNet:
    """A written test network and what a test needs to know about it."""

    __test__ = False  # not a pytest test class

    model_dir: Path
    labels_path: Path
    input_name: str
    input_shape: tuple[int, ...]
    layout: str  # "NHWC" | "NCHW"
    num_classes: int
    labels: list[str]
    output_kind: str = "logits"  # | "probabilities"
    output_name: str = ""
    poison_value: float | None = None
    files: ModelFiles | None = None
    _reference: Reference | None = field(default=None, repr=False, compare=False)

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The network's output for input ``x`` computed in numpy (float32 [1, classes])."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape != self.input_shape:
            raise ValueError(f"input shape {x.shape} != model input {self.input_shape}")
        assert self._reference is not None
        return self._reference(x)


# -- numpy reference pieces (independent of the C kernels) ------------------------------------
def _grid_pool_hw(image_hw: np.ndarray, grid: int) -> np.ndarray:
    """Average-pool a [H, W, ...] array into [grid, grid, ...] (adaptive pooling bins)."""
    h, w = image_hw.shape[:2]
    out = np.empty((grid, grid) + image_hw.shape[2:], dtype=np.float64)
    for gy in range(grid):
        y0, y1 = (gy * h) // grid, math.ceil((gy + 1) * h / grid)
        for gx in range(grid):
            x0, x1 = (gx * w) // grid, math.ceil((gx + 1) * w / grid)
            out[gy, gx] = image_hw[y0:y1, x0:x1].astype(np.float64).mean(axis=(0, 1))
    return out


def _standardize(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float64).ravel()
    return (v - v.mean()) / np.sqrt(v.var() + STANDARDIZE_EPS)


def _dense(v: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return weight.astype(np.float64) @ v + bias.astype(np.float64)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


# -- weights ------------------------------------------------------------------------------------
@functools.cache
def logit_scale(num_classes: int, target_top1: float = TARGET_TOP1) -> float:
    """Std of the logits for which softmax's median top-1 probability is ``target_top1``.

    With standardised features and i.i.d. normal weights, a network's logits for any input are
    i.i.d. N(0, s^2) across classes; this finds s by bisection on a fixed simulated sample.
    """
    if num_classes < 2:
        return 1.0
    z = np.random.default_rng(20240229).standard_normal((256, num_classes))
    z -= z.max(axis=1, keepdims=True)

    def median_top1(scale: float) -> float:
        p = np.exp(z * scale)
        return float(np.median(1.0 / p.sum(axis=1)))

    lo, hi = 0.0, 50.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if median_top1(mid) < target_top1 else (lo, mid)
    return (lo + hi) / 2


def _normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(np.float32)


def _classifier_weights(
    rng: np.random.Generator, features: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Dense weights turning ``features`` standardised values into calibrated logits."""
    scale = logit_scale(num_classes)
    weight = _normal(rng, (num_classes, features), scale / math.sqrt(features))
    bias = _normal(rng, (num_classes,), 0.1 * scale)
    return weight, bias


def _compile_flags(poison_value: float | None) -> list[str]:
    flags = [_FAST_COMPILE]
    if poison_value is not None:
        value = float(poison_value)
        if not math.isfinite(value):
            raise ValueError(f"poison_value must be finite, got {poison_value!r}")
        flags.append(f"-DGGIC_POISON_VALUE={value!r}")
    return flags


def _finish(g: GraphBuilder, logits: Tensor, probabilities: bool) -> tuple[Tensor, str]:
    if probabilities:
        out = g.op("softmax0", "ggic_tn_softmax", [logits], logits.shape)
        g.output(out)
        return out, "probabilities"
    g.output(logits)
    return logits, "logits"


# -- the two networks ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelStoreLikeWeights:
    """The weights of :func:`write_modelstore_like` (also written as ONNX by
    :mod:`.onnx_export`, so both backends run the same network)."""

    mean: np.ndarray  # [3], pixel units
    std: np.ndarray  # [3], pixel units
    weight: np.ndarray  # [classes, GRID * GRID * 3]
    bias: np.ndarray  # [classes]

    def reference(self, probabilities: bool = False) -> Reference:
        def reference(x: np.ndarray) -> np.ndarray:
            image = (x[0].astype(np.float64) - self.mean) / self.std  # H, W, C
            v = _standardize(_grid_pool_hw(image, GRID))  # GRID, GRID, C flattened
            z = _dense(v, self.weight, self.bias)
            z = _softmax(z) if probabilities else z
            return z.astype(np.float32)[None, :]

        return reference


def modelstore_like_weights(seed: int = 0, num_classes: int = 1000) -> ModelStoreLikeWeights:
    rng = np.random.default_rng([seed, 1])
    mean = (np.array(IMAGENET_MEAN) * 255).astype(np.float32)
    std = (np.array(IMAGENET_STD) * 255).astype(np.float32)
    weight, bias = _classifier_weights(rng, GRID * GRID * 3, num_classes)
    return ModelStoreLikeWeights(mean, std, weight, bias)


def write_modelstore_like(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    num_classes: int = 1000,
    size: int = 224,
    poison_value: float | None = None,
    write_meta: bool = True,
    probabilities: bool = False,
) -> TestNet:
    """Write a ModelStore-ResNet-50-like model into ``out_dir`` (the model directory)."""
    _check_args(size, num_classes)
    weights = modelstore_like_weights(seed, num_classes)
    mean, std, weight, bias = weights.mean, weights.std, weights.weight, weights.bias
    features = GRID * GRID * 3

    g = GraphBuilder()
    data = g.input("data", (1, size, size, 3))
    norm = g.op(
        "normalize0",
        "ggic_tn_normalize_nhwc",
        [data, g.param("normalize0_mean", mean), g.param("normalize0_std", std)],
        (1, size, size, 3),
    )
    pooled = g.op("avgpool0", "ggic_tn_avgpool_grid_nhwc", [norm], (1, GRID, GRID, 3))
    feats = g.op("standardize0", "ggic_tn_standardize", [pooled], (1, features))
    logits = g.op(
        "dense0",
        "ggic_tn_dense",
        [feats, g.param("dense0_weight", weight), g.param("dense0_bias", bias)],
        (1, num_classes),
    )
    out, kind = _finish(g, logits, probabilities)
    reference = weights.reference(probabilities)

    model_dir = Path(out_dir)
    files = write_model_dir(
        model_dir,
        g,
        KERNEL_SOURCE,
        extra_flags=_compile_flags(poison_value),
        write_meta=write_meta,
    )
    labels = synthetic_labels(num_classes)
    labels_path = write_synset(files.directory / "synset.txt", labels)
    log.info("wrote ModelStore-like test net (%s) to %s", kind, files.directory)
    return TestNet(
        model_dir=files.directory,
        labels_path=labels_path,
        input_name="data",
        input_shape=data.shape,
        layout="NHWC",
        num_classes=num_classes,
        labels=[lab.synset for lab in labels],
        output_kind=kind,
        output_name=g.name_of(out),
        poison_value=poison_value,
        files=files,
        _reference=reference,
    )


def write_neo_like(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    num_classes: int = 1000,
    size: int = 224,
    poison_value: float | None = None,
    write_meta: bool = True,
    probabilities: bool = False,
    model_dir_name: str = "model",
    stem: str = "compiled",
    graph_file: str = "compiled_model.json",
) -> TestNet:
    """Write a Neo-PyTorch-VGG16-like model into ``out_dir/model_dir_name``.

    The labels go to ``out_dir/imagenet_class_index.json``, outside the model directory.
    """
    _check_args(size, num_classes)
    rng = np.random.default_rng([seed, 2])
    features = GRID * GRID * 3
    w1 = _normal(rng, (HIDDEN, features), 1.0 / math.sqrt(features))
    b1 = _normal(rng, (HIDDEN,), 0.1)
    w2, b2 = _classifier_weights(rng, HIDDEN, num_classes)

    g = GraphBuilder()
    data = g.input("input0", (1, 3, size, size))
    pooled = g.op("avgpool0", "ggic_tn_avgpool_grid_nchw", [data], (1, 3, GRID, GRID))
    feats = g.op("standardize0", "ggic_tn_standardize", [pooled], (1, features))
    hidden = g.op(
        "dense0",
        "ggic_tn_dense",
        [feats, g.param("classifier.0.weight", w1), g.param("classifier.0.bias", b1)],
        (1, HIDDEN),
    )
    hidden = g.op("relu0", "ggic_tn_relu", [hidden], (1, HIDDEN))
    hidden = g.op("standardize1", "ggic_tn_standardize", [hidden], (1, HIDDEN))
    logits = g.op(
        "dense1",
        "ggic_tn_dense",
        [hidden, g.param("classifier.3.weight", w2), g.param("classifier.3.bias", b2)],
        (1, num_classes),
    )
    out, kind = _finish(g, logits, probabilities)

    def reference(x: np.ndarray) -> np.ndarray:
        pooled_hwc = _grid_pool_hw(np.transpose(x[0], (1, 2, 0)), GRID)  # GRID, GRID, C
        v = _standardize(np.transpose(pooled_hwc, (2, 0, 1)))  # C, GRID, GRID order
        h = _standardize(np.maximum(_dense(v, w1, b1), 0.0))
        z = _dense(h, w2, b2)
        z = _softmax(z) if probabilities else z
        return z.astype(np.float32)[None, :]

    parent = Path(out_dir)
    files = write_model_dir(
        parent / model_dir_name,
        g,
        KERNEL_SOURCE,
        graph_file=graph_file,
        stem=stem,
        extra_flags=_compile_flags(poison_value),
        write_meta=write_meta,
    )
    labels = synthetic_labels(num_classes)
    labels_path = write_class_index(parent / "imagenet_class_index.json", labels)
    log.info("wrote Neo-like test net (%s) to %s", kind, files.directory)
    return TestNet(
        model_dir=files.directory,
        labels_path=labels_path.absolute(),
        input_name="input0",
        input_shape=data.shape,
        layout="NCHW",
        num_classes=num_classes,
        labels=[lab.short for lab in labels],
        output_kind=kind,
        output_name=g.name_of(out),
        poison_value=poison_value,
        files=files,
        _reference=reference,
    )


def write_custom_probabilities_net(
    out_dir: str | os.PathLike, *, kind: str = "modelstore", **kwargs: object
) -> TestNet:
    """A test net whose graph ends in softmax (outputs probabilities, not logits)."""
    writers = {"modelstore": write_modelstore_like, "neo": write_neo_like}
    if kind not in writers:
        raise ValueError(f"kind must be one of {', '.join(writers)}, got {kind!r}")
    return writers[kind](out_dir, probabilities=True, **kwargs)  # type: ignore[arg-type]


def _check_args(size: int, num_classes: int) -> None:
    if int(size) < GRID:
        raise ValueError(f"size must be at least {GRID}, got {size}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
