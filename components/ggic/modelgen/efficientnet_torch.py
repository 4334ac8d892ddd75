"""EfficientNet-Lite as a PyTorch module, built from our own spec: for tests and benchmarks only.

Nothing at run time imports this module (torch is not a dependency of ggic). It exists to
check the converted model against an independent implementation (PyTorch's convolutions and
batch norm, NCHW, TensorFlow "same" padding done with ``F.pad``) and to compare speed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .efficientnet_spec import NetworkSpec, same_padding


def build_torch_model(spec: NetworkSpec, state: Mapping[str, np.ndarray]) -> Any:
    """An ``nn.Module`` in eval mode taking normalised NCHW float32 images."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class SameConv(nn.Conv2d):
        def __init__(self, cin: int, cout: int, k: int, stride: int, groups: int = 1) -> None:
            super().__init__(cin, cout, k, stride=stride, padding=0, groups=groups, bias=False)

        def forward(self, x: Any) -> Any:
            k, s = self.kernel_size[0], self.stride[0]
            ph = same_padding(x.shape[2], k, s)
            pw = same_padding(x.shape[3], k, s)
            if ph.before or ph.after or pw.before or pw.after:
                x = F.pad(x, (pw.before, pw.after, ph.before, ph.after))
            return super().forward(x)

    def bn(channels: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(channels, eps=spec.bn_eps)

    class Block(nn.Module):
        def __init__(self, b: Any) -> None:
            super().__init__()
            self.b = b
            if b.has_expand:
                self._expand_conv = SameConv(b.in_channels, b.mid_channels, 1, 1)
                self._bn0 = bn(b.mid_channels)
            self._depthwise_conv = SameConv(
                b.mid_channels, b.mid_channels, b.kernel, b.stride, groups=b.mid_channels
            )
            self._bn1 = bn(b.mid_channels)
            self._project_conv = SameConv(b.mid_channels, b.out_channels, 1, 1)
            self._bn2 = bn(b.out_channels)

        def forward(self, inputs: Any) -> Any:
            x = inputs
            if self.b.has_expand:
                x = F.relu6(self._bn0(self._expand_conv(x)))
            x = F.relu6(self._bn1(self._depthwise_conv(x)))
            x = self._bn2(self._project_conv(x))
            if self.b.has_residual:
                x = x + inputs
            return x

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self._conv_stem = SameConv(3, spec.stem_channels, 3, 2)
            self._bn0 = bn(spec.stem_channels)
            self._blocks = nn.ModuleList(Block(b) for b in spec.blocks)
            self._conv_head = SameConv(spec.blocks[-1].out_channels, spec.head_channels, 1, 1)
            self._bn1 = bn(spec.head_channels)
            self._fc = nn.Linear(spec.head_channels, spec.num_classes)

        def forward(self, x: Any) -> Any:
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return self._fc(x.mean(dim=(2, 3)))

    net = Net()
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
    net.load_state_dict(tensors, strict=True)
    return net.eval()
