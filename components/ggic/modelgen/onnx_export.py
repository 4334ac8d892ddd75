"""Write the same networks as ONNX models, for the ONNX Runtime backend (needs ``onnx``).

- :func:`build_demo_onnx`: EfficientNet-Lite0 with the same weights as the DLR demo model
  (batch norm folded the same way), the same input (``data``: raw 0..255 RGB pixels, float32
  NHWC [1, 224, 224, 3], normalised (x - 127) / 128 inside the graph), the same output
  (``logits`` [1, 1000]), the same ``.meta`` fields (so ``ModelProfile: auto`` picks
  ``efficientnet-lite0``) and the same labels.
- :func:`write_modelstore_like_onnx`: the ModelStore-like test network of :mod:`.testnets`
  with the same weights and numpy reference.

Graphs are built with ``onnx.helper`` from standard operators (opset 13, IR version 7, so
onnxruntime 1.16 and later load them). Convolutions run in NCHW: the graph transposes the
normalised NHWC input once. TensorFlow's "same" padding (the odd pixel after) is explicit.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .efficientnet_graph import INPUT_MEAN, INPUT_NAME, INPUT_STD, OUTPUT_NAME, fold_batch_norm
from .efficientnet_spec import NetworkSpec, check_checkpoint, lite0_spec, same_padding
from .synthetic_labels import synthetic_labels, write_synset
from .testnets import GRID, STANDARDIZE_EPS, TestNet, modelstore_like_weights

log = logging.getLogger(__name__)

OPSET = 13
IR_VERSION = 7
DEMO_STEM = "efficientnet-lite0"
TESTNET_STEM = "model"


class OnnxExportError(RuntimeError):
    """The ONNX model cannot be written (the ``onnx`` package is missing, or it is invalid)."""


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise OnnxExportError(
            "the Python package 'onnx' is not installed: pip install 'ggic[onnx]'") from None
    return onnx


class OnnxGraph:
    """Nodes and weights of one ONNX graph, named as they are added."""

    def __init__(self) -> None:
        self.onnx = _onnx()
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray, dtype: Any = np.float32) -> str:
        array = np.ascontiguousarray(value, dtype=dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], name: str | None = None,
           **attrs: Any) -> str:
        self._count += 1
        out = name or f"{op_type.lower()}_{self._count}"
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], name=out,
                                                     **attrs))
        return out

    def model(self, input_name: str, input_shape: Sequence[int], output: str,
              output_shape: Sequence[int], doc: str) -> Any:
        helper, tensor = self.onnx.helper, self.onnx.TensorProto.FLOAT
        graph = helper.make_graph(
            self.nodes, "ggic",
            [helper.make_tensor_value_info(input_name, tensor, list(input_shape))],
            [helper.make_tensor_value_info(output, tensor, list(output_shape))],
            initializer=self.initializers)
        model = helper.make_model(graph, producer_name="ggic.modelgen",
                                  opset_imports=[helper.make_opsetid("", OPSET)], doc_string=doc)
        model.ir_version = IR_VERSION
        self.onnx.checker.check_model(model)
        return model

    def save(self, model: Any, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.onnx.save(model, str(path))
        return path


def _same_pads(size: int, kernel: int, stride: int) -> list[int]:
    pad = same_padding(size, kernel, stride)
    return [pad.before, pad.before, pad.after, pad.after]  # top, left, bottom, right


def efficientnet_graph(spec: NetworkSpec, state: dict[str, np.ndarray]) -> tuple[OnnxGraph,
                                                                                  Any]:
    """The ONNX model of ``spec`` with the checkpoint's weights (batch norm folded), and the
    graph that saves it."""
    g = OnnxGraph()
    size = spec.image_size
    mean = g.const("input.mean", np.asarray(INPUT_MEAN))
    inv_std = g.const("input.inv_std", 1.0 / np.asarray(INPUT_STD))
    x = g.op("Mul", [g.op("Sub", [INPUT_NAME, mean]), inv_std], "normalize")
    x = g.op("Transpose", [x], "to_nchw", perm=[0, 3, 1, 2])
    zero, six = g.const("relu6.min", np.float32(0)), g.const("relu6.max", np.float32(6))

    def conv(name: str, x: str, key: str, bn: str, in_size: int, stride: int, groups: int = 1,
             relu6: bool = True) -> str:
        weight, bias = fold_batch_norm(state[key], state, bn, spec.bn_eps)
        k = weight.shape[2]
        y = g.op("Conv", [x, g.const(f"{name}.weight", weight), g.const(f"{name}.bias", bias)],
                 name, kernel_shape=[k, k], strides=[stride, stride], group=groups,
                 pads=_same_pads(in_size, k, stride))
        return g.op("Clip", [y, zero, six], f"{name}.relu6") if relu6 else y

    x = conv("stem", x, "_conv_stem.weight", "_bn0", size, 2)
    size = same_padding(size, 3, 2).out_size
    for b in spec.blocks:
        p, name, inputs = b.prefix, f"block{b.index}", x
        if b.has_expand:
            x = conv(f"{name}.expand", x, f"{p}._expand_conv.weight", f"{p}._bn0", size, 1)
        x = conv(f"{name}.depthwise", x, f"{p}._depthwise_conv.weight", f"{p}._bn1", size,
                 b.stride, groups=b.mid_channels)
        size = same_padding(size, b.kernel, b.stride).out_size
        x = conv(f"{name}.project", x, f"{p}._project_conv.weight", f"{p}._bn2", size, 1,
                 relu6=False)
        if b.has_residual:
            x = g.op("Add", [x, inputs], f"{name}.add")
    x = conv("head", x, "_conv_head.weight", "_bn1", size, 1)
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x], "pool")], "flatten", axis=1)
    logits = g.op("Gemm", [x, g.const("fc.weight", state["_fc.weight"]),
                           g.const("fc.bias", state["_fc.bias"])], OUTPUT_NAME, transB=1)
    return g, g.model(INPUT_NAME, (1, spec.image_size, spec.image_size, 3), logits,
                      (1, spec.num_classes), f"{spec.name}: RGB 0..255 NHWC in, logits out")


@dataclass(frozen=True)
class OnnxDemoModel:
    """What :func:`build_demo_onnx` wrote."""

    directory: Path
    model: Path
    meta: Path
    labels: Path
    checkpoint: Path
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    build_seconds: float = 0.0


def _meta(inputs: Sequence[tuple[str, Sequence[int]]], outputs: Sequence[tuple[str,
          Sequence[int]]], **model: Any) -> dict[str, Any]:
    def describe(items: Sequence[tuple[str, Sequence[int]]]) -> list[dict[str, Any]]:
        return [{"name": n, "dtype": "float32", "shape": list(s)} for n, s in items]

    return {
        "Requirements": {"TargetDevice": "onnx", "TargetDeviceType": "cpu"},
        "Compilation": {"CreatedTime": time.time(), "Format": "onnx", "Opset": OPSET,
                        "Host": platform.machine()},
        "Model": {"Inputs": describe(inputs), "Outputs": describe(outputs), **model},
    }


def build_demo_onnx(out_dir: Path, *, checkpoint: Path | None = None,
                    labels_out: Path | None = None) -> OnnxDemoModel:
    """Write EfficientNet-Lite0 as ``out_dir/efficientnet-lite0.onnx`` with its ``.meta`` and
    ``synset.txt``; the weights come from the same checkpoint as the DLR demo model's."""
    from .efficientnet_lite import (
        DEFAULT_LABELS_NAME,
        NORMALIZATION,
        PREPROCESSING,
        default_checkpoint,
        imagenet_labels,
        write_labels,
    )
    from .torch_legacy import read_checkpoint

    started = time.perf_counter()
    out_dir = Path(out_dir)
    stale = sorted(p.name for p in out_dir.glob("*.onnx")) if out_dir.is_dir() else []
    stale = [name for name in stale if name != f"{DEMO_STEM}.onnx"]
    if stale:
        raise OnnxExportError(f"{out_dir} already holds {', '.join(stale)}: an ONNX model "
                              "directory holds one *.onnx; write into an empty directory")
    source = Path(checkpoint) if checkpoint is not None else default_checkpoint()
    spec = lite0_spec()
    state = read_checkpoint(source)
    check_checkpoint(spec, state)
    graph, model = efficientnet_graph(spec, state)
    path = graph.save(model, out_dir / f"{DEMO_STEM}.onnx")
    shape = (1, spec.image_size, spec.image_size, 3)
    meta = _meta([(INPUT_NAME, shape)], [(OUTPUT_NAME, (1, spec.num_classes))],
                 Name=DEMO_STEM, Layout="NHWC",
                 InputDescription="RGB pixels 0..255, NHWC; the graph normalises with "
                 "(x - 127) / 128",
                 Preprocessing=_jsonable(PREPROCESSING),
                 NormalizationInGraph=_jsonable(NORMALIZATION))
    meta_path = out_dir / f"{DEMO_STEM}.meta"
    meta_path.write_text(json.dumps(meta, indent=4) + "\n", encoding="utf-8")
    labels_path = Path(labels_out) if labels_out is not None else out_dir / DEFAULT_LABELS_NAME
    labels = write_labels(labels_path, imagenet_labels())
    seconds = time.perf_counter() - started
    log.info("wrote ONNX model %s from %s in %.1f s", path, source, seconds)
    return OnnxDemoModel(out_dir, path, meta_path, labels, source, INPUT_NAME, shape,
                         OUTPUT_NAME, seconds)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def write_modelstore_like_onnx(out_dir: str | Path, *, seed: int = 0, num_classes: int = 1000,
                               size: int = 224, write_meta: bool = True,
                               dynamic_batch: bool = False) -> TestNet:
    """The network of :func:`.testnets.write_modelstore_like` (same seed, same weights, same
    numpy reference) as ``out_dir/model.onnx`` with ``synset.txt``. ``dynamic_batch``: the
    batch dimension is a symbol (``N``), as exporters often write it."""
    if size % GRID:
        raise ValueError(f"size must be a multiple of {GRID} for the ONNX pooling, got {size}")
    weights = modelstore_like_weights(seed, num_classes)
    g = OnnxGraph()
    x = g.op("Sub", ["data", g.const("normalize0_mean", weights.mean)])
    x = g.op("Div", [x, g.const("normalize0_std", weights.std)], "normalize0")
    x = g.op("Transpose", [x], perm=[0, 3, 1, 2])
    cell = size // GRID
    x = g.op("AveragePool", [x], kernel_shape=[cell, cell], strides=[cell, cell])
    x = g.op("Transpose", [x], perm=[0, 2, 3, 1])  # features in GRID, GRID, C order
    x = g.op("Flatten", [x], axis=1)
    centred = g.op("Sub", [x, g.op("ReduceMean", [x], axes=[1], keepdims=1)])
    var = g.op("ReduceMean", [g.op("Mul", [centred, centred])], axes=[1], keepdims=1)
    eps = g.const("standardize0_eps", np.float32(STANDARDIZE_EPS))
    x = g.op("Div", [centred, g.op("Sqrt", [g.op("Add", [var, eps])])], "standardize0")
    logits = g.op("Gemm", [x, g.const("dense0_weight", weights.weight),
                           g.const("dense0_bias", weights.bias)], "dense0", transB=1)
    shape = (1, size, size, 3)
    batch: Any = "N" if dynamic_batch else 1
    model = g.model("data", (batch, size, size, 3), logits, (batch, num_classes),
                    "ModelStore-like test network")
    directory = Path(out_dir)
    path = g.save(model, directory / f"{TESTNET_STEM}.onnx")
    if write_meta:
        meta = _meta([("data", shape)], [(logits, (1, num_classes))])
        (directory / f"{TESTNET_STEM}.meta").write_text(json.dumps(meta, indent=4) + "\n",
                                                        encoding="utf-8")
    labels = synthetic_labels(num_classes)
    labels_path = write_synset(directory / "synset.txt", labels)
    log.info("wrote ModelStore-like ONNX test net to %s", path)
    return TestNet(model_dir=directory, labels_path=labels_path, input_name="data",
                   input_shape=shape, layout="NHWC", num_classes=num_classes,
                   labels=[lab.synset for lab in labels], output_kind="logits",
                   output_name=logits, _reference=weights.reference())
