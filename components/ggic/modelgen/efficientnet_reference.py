"""A plain numpy forward pass of EfficientNet-Lite, for tests.

Independent of the C kernels and of the batch-norm folding: it works in NCHW on the
checkpoint's own tensors (PyTorch OIHW weights), applies batch norm explicitly, pads the
TensorFlow way (extra pixel at the end) and convolves with sliding windows + einsum.
Slow (about a second per image) and simple on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .efficientnet_spec import NetworkSpec, same_padding


def pad_same(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """Zero-pad an NCHW tensor for a TensorFlow "same" convolution."""
    ph = same_padding(x.shape[2], kernel, stride)
    pw = same_padding(x.shape[3], kernel, stride)
    return np.pad(x, ((0, 0), (0, 0), (ph.before, ph.after), (pw.before, pw.after)))


def conv2d_same(x: np.ndarray, weight: np.ndarray, stride: int, groups: int = 1) -> np.ndarray:
    """NCHW convolution, OIHW weight, "same" padding; groups == channels for depthwise."""
    k = weight.shape[2]
    padded = pad_same(x.astype(np.float64), k, stride)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]  # N, C, OH, OW, k, k
    w = weight.astype(np.float64)
    if groups == 1:
        return np.einsum("nchwij,ocij->nohw", windows, w, optimize=True)
    if groups != x.shape[1] or weight.shape[1] != 1:
        raise ValueError("only dense and depthwise convolutions are supported")
    return np.einsum("nchwij,cij->nchw", windows, w[:, 0], optimize=True)


def batch_norm(
    x: np.ndarray, state: Mapping[str, np.ndarray], prefix: str, eps: float
) -> np.ndarray:
    shape = (1, -1, 1, 1)
    mean = state[f"{prefix}.running_mean"].astype(np.float64).reshape(shape)
    var = state[f"{prefix}.running_var"].astype(np.float64).reshape(shape)
    gamma = state[f"{prefix}.weight"].astype(np.float64).reshape(shape)
    beta = state[f"{prefix}.bias"].astype(np.float64).reshape(shape)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def forward(
    spec: NetworkSpec, state: Mapping[str, np.ndarray], images_nchw: np.ndarray
) -> np.ndarray:
    """Logits [N, classes] (float64) for normalised images [N, 3, H, W]."""
    eps = spec.bn_eps
    x = conv2d_same(images_nchw, state["_conv_stem.weight"], stride=2)
    x = relu6(batch_norm(x, state, "_bn0", eps))
    for b in spec.blocks:
        p = b.prefix
        inputs = x
        if b.has_expand:
            x = conv2d_same(x, state[f"{p}._expand_conv.weight"], stride=1)
            x = relu6(batch_norm(x, state, f"{p}._bn0", eps))
        x = conv2d_same(x, state[f"{p}._depthwise_conv.weight"], b.stride, groups=x.shape[1])
        x = relu6(batch_norm(x, state, f"{p}._bn1", eps))
        x = conv2d_same(x, state[f"{p}._project_conv.weight"], stride=1)
        x = batch_norm(x, state, f"{p}._bn2", eps)
        if b.has_residual:
            x = x + inputs
    x = conv2d_same(x, state["_conv_head.weight"], stride=1)
    x = relu6(batch_norm(x, state, "_bn1", eps))
    pooled = x.mean(axis=(2, 3))
    return pooled @ state["_fc.weight"].astype(np.float64).T + state["_fc.bias"].astype(np.float64)
