"""EfficientNet-Lite checkpoint -> TVM graph for the kernels in ``kernels/efficientnet_*.c``.

Batch norm is folded into the convolution before it (``w' = w * g / sqrt(v + eps)``,
``b' = beta - mean * g / sqrt(v + eps)``), and each graph node is one fused kernel call, as
TVM would fuse them: convolution + bias + ReLU6, projection + bias (+ the residual add).

The input is what a camera gives: raw 0..255 RGB pixels, NHWC, like the ModelStore's
graphs; the network's own normalisation ((x - 127) / 128, TensorFlow's for EfficientNet-Lite)
is the graph's first node. (Folding it into the stem's weights would be wrong at the border:
the stem's zero padding must be zero AFTER normalisation.)

Layout is NHWC throughout: the 1x1 convolutions are then plain matrix products over pixels and
the depthwise convolutions vectorise over contiguous channels. Weight layouts in ``.params``:

========================  ======================  =================================
layer                     kernel                  weight layout
========================  ======================  =================================
(x - mean) / std          ggic_effnet_normalize    mean [3], 1 / std [3]
stem 3x3/2 + ReLU6        ggic_effnet_stem_s2_relu6  [kh, kw, in, out]
expand 1x1 + ReLU6        ggic_effnet_pw_relu6     [in, out]
depthwise kxk + ReLU6     ggic_effnet_dw_s{1,2}_relu6  [kh, kw, channels]
project 1x1 (+ skip)      ggic_effnet_pw_linear(_add)  [in, out]
head 1x1 + ReLU6          ggic_effnet_pw_relu6     [in, out]
pool + dense              ggic_effnet_gap_dense    [in, classes]
========================  ======================  =================================
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .compile import KERNELS_DIR
from .efficientnet_spec import NetworkSpec, same_padding
from .graph import GraphBuilder, Tensor

#: Kernel sources of the EfficientNet graph (compiled together into the model's library).
KERNEL_SOURCES: tuple[Path, ...] = (
    KERNELS_DIR / "efficientnet_pointwise.c",
    KERNELS_DIR / "efficientnet_depthwise.c",
    KERNELS_DIR / "efficientnet_stem_head.c",
)

INPUT_NAME = "data"
OUTPUT_NAME = "logits"

#: The normalisation EfficientNet-Lite was trained with (TensorFlow's efficientnet_lite_builder:
#: MEAN_RGB = 127, STDDEV_RGB = 128), applied inside the graph.
INPUT_MEAN = (127.0, 127.0, 127.0)
INPUT_STD = (128.0, 128.0, 128.0)


def fold_batch_norm(
    weight: np.ndarray, state: Mapping[str, np.ndarray], bn_prefix: str, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of a convolution (OIHW weight, no bias) followed by batch norm."""
    gamma = state[f"{bn_prefix}.weight"].astype(np.float64)
    beta = state[f"{bn_prefix}.bias"].astype(np.float64)
    mean = state[f"{bn_prefix}.running_mean"].astype(np.float64)
    var = state[f"{bn_prefix}.running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + eps)
    folded = weight.astype(np.float64) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    return folded, beta - mean * scale


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


class _Builder:
    def __init__(self, spec: NetworkSpec, state: Mapping[str, np.ndarray]) -> None:
        self.spec = spec
        self.state = state
        self.g = GraphBuilder()

    def conv_params(self, name: str, conv_key: str, bn_prefix: str, layout: str) -> list[Tensor]:
        w, b = fold_batch_norm(self.state[conv_key], self.state, bn_prefix, self.spec.bn_eps)
        if layout == "pointwise":  # [O, I, 1, 1] -> [I, O]
            w = w[:, :, 0, 0].T
        elif layout == "depthwise":  # [C, 1, k, k] -> [k, k, C]
            w = w[:, 0].transpose(1, 2, 0)
        elif layout == "dense":  # [O, I, kh, kw] -> [kh, kw, I, O]
            w = w.transpose(2, 3, 1, 0)
        else:
            raise ValueError(f"unknown weight layout {layout}")
        return [self.g.param(f"{name}.weight", _f32(w)), self.g.param(f"{name}.bias", _f32(b))]

    def pointwise(self, name: str, x: Tensor, conv_key: str, bn_prefix: str, out_ch: int,
                  *, relu6: bool, residual: Tensor | None = None) -> Tensor:
        params = self.conv_params(name, conv_key, bn_prefix, "pointwise")
        shape = x.shape[:3] + (out_ch,)
        if relu6:
            return self.g.op(name, "ggic_effnet_pw_relu6", [x, *params], shape)
        if residual is not None:
            return self.g.op(name, "ggic_effnet_pw_linear_add", [x, *params, residual], shape)
        return self.g.op(name, "ggic_effnet_pw_linear", [x, *params], shape)

    def build(self, input_name: str) -> GraphBuilder:
        spec, g = self.spec, self.g
        size = spec.image_size
        x = g.input(input_name, (1, size, size, 3))
        mean = g.param("input.mean", _f32(np.asarray(INPUT_MEAN)))
        inv_std = g.param("input.inv_std", _f32(1.0 / np.asarray(INPUT_STD)))
        x = g.op("normalize", "ggic_effnet_normalize", [x, mean, inv_std], x.shape)
        stem = same_padding(size, 3, 2).out_size
        x = g.op(
            "stem",
            "ggic_effnet_stem_s2_relu6",
            [x, *self.conv_params("stem", "_conv_stem.weight", "_bn0", "dense")],
            (1, stem, stem, spec.stem_channels),
        )
        for b in spec.blocks:
            p, name = b.prefix, f"block{b.index}"
            inputs = x
            if b.has_expand:
                x = self.pointwise(f"{name}.expand", x, f"{p}._expand_conv.weight", f"{p}._bn0",
                                   b.mid_channels, relu6=True)
            out = same_padding(x.shape[1], b.kernel, b.stride).out_size
            x = g.op(
                f"{name}.depthwise",
                f"ggic_effnet_dw_s{b.stride}_relu6",
                [x, *self.conv_params(f"{name}.depthwise", f"{p}._depthwise_conv.weight",
                                      f"{p}._bn1", "depthwise")],
                (1, out, out, b.mid_channels),
            )
            x = self.pointwise(f"{name}.project", x, f"{p}._project_conv.weight", f"{p}._bn2",
                               b.out_channels, relu6=False,
                               residual=inputs if b.has_residual else None)
        x = self.pointwise("head", x, "_conv_head.weight", "_bn1", spec.head_channels, relu6=True)
        fc_w = g.param("fc.weight", _f32(self.state["_fc.weight"].T))
        fc_b = g.param("fc.bias", _f32(self.state["_fc.bias"]))
        logits = g.op(OUTPUT_NAME, "ggic_effnet_gap_dense", [x, fc_w, fc_b], (1, spec.num_classes))
        g.output(logits)
        return g


def build_graph(
    spec: NetworkSpec, state: Mapping[str, np.ndarray], *, input_name: str = INPUT_NAME
) -> GraphBuilder:
    """The graph of ``spec`` with the checkpoint's weights (batch norm folded).

    Input ``input_name``: float32 [1, S, S, 3] NHWC, RGB pixels 0..255 (normalised inside).
    Output ``logits``: float32 [1, classes].
    """
    return _Builder(spec, state).build(input_name)
