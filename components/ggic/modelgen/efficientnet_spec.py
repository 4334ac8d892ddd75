"""The EfficientNet-Lite0 architecture: block list, layer names, TensorFlow "same" padding.

EfficientNet-Lite (Google, 2020) is EfficientNet-B0 made friendly to integer accelerators:
no squeeze-and-excitation, ReLU6 instead of swish, and the stem (32 channels) and head (1280
channels) kept fixed when the network is scaled. Lite0 is the unscaled member (224x224 input).

Every convolution is followed by batch normalisation (eps 1e-3); activations are ReLU6 except
after the projection convolution of each block, which is linear. A block adds its input to its
output when its stride is 1 and its input and output widths are equal.

Layer names follow the PyTorch port (``efficientnet-lite-pytorch`` 0.1.0, itself following
``efficientnet_pytorch``): ``_conv_stem``/``_bn0``, ``_blocks.{i}._expand_conv``/``_bn0``,
``._depthwise_conv``/``_bn1``, ``._project_conv``/``_bn2``, ``_conv_head``/``_bn1``, ``_fc``.

The weights were trained in TensorFlow, whose "same" padding puts the odd pixel of padding at
the END (bottom/right): a 3x3 stride-2 convolution on 224 pixels pads 0 before and 1 after.
"""

from __future__ import annotations

from dataclasses import dataclass

BN_EPS = 1e-3


@dataclass(frozen=True)
class StageSpec:
    """One row of the block table: ``repeats`` blocks; only the first one strides."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


#: EfficientNet-Lite0 (TensorFlow's efficientnet_lite_builder: r1_k3_s11_e1_i32_o16, ...).
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual (MBConv) block."""

    index: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int

    @property
    def mid_channels(self) -> int:
        return self.in_channels * self.expand

    @property
    def has_expand(self) -> bool:
        return self.expand != 1

    @property
    def has_residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def prefix(self) -> str:
        return f"_blocks.{self.index}"


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    image_size: int
    stem_channels: int
    head_channels: int
    num_classes: int
    blocks: tuple[BlockSpec, ...]
    bn_eps: float = BN_EPS


def expand_stages(stages: tuple[StageSpec, ...]) -> tuple[BlockSpec, ...]:
    blocks = []
    for stage in stages:
        for r in range(stage.repeats):
            blocks.append(
                BlockSpec(
                    index=len(blocks),
                    kernel=stage.kernel,
                    stride=stage.stride if r == 0 else 1,
                    expand=stage.expand,
                    in_channels=stage.in_channels if r == 0 else stage.out_channels,
                    out_channels=stage.out_channels,
                )
            )
    return tuple(blocks)


def lite0_spec(num_classes: int = 1000) -> NetworkSpec:
    return NetworkSpec(
        name="efficientnet-lite0",
        image_size=224,
        stem_channels=32,
        head_channels=1280,
        num_classes=num_classes,
        blocks=expand_stages(LITE0_STAGES),
    )


@dataclass(frozen=True)
class SamePadding:
    """TensorFlow "same" padding along one axis."""

    out_size: int
    before: int
    after: int


def same_padding(in_size: int, kernel: int, stride: int) -> SamePadding:
    """Output size ceil(in/stride); total padding split with the extra pixel AFTER."""
    out_size = -(-in_size // stride)
    total = max((out_size - 1) * stride + kernel - in_size, 0)
    return SamePadding(out_size, total // 2, total - total // 2)


def expected_shapes(spec: NetworkSpec) -> dict[str, tuple[int, ...]]:
    """Checkpoint tensor name -> shape (PyTorch OIHW convolution weights)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, channels: int) -> None:
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{leaf}"] = (channels,)

    shapes["_conv_stem.weight"] = (spec.stem_channels, 3, 3, 3)
    bn("_bn0", spec.stem_channels)
    for b in spec.blocks:
        if b.has_expand:
            shapes[f"{b.prefix}._expand_conv.weight"] = (b.mid_channels, b.in_channels, 1, 1)
            bn(f"{b.prefix}._bn0", b.mid_channels)
        shapes[f"{b.prefix}._depthwise_conv.weight"] = (b.mid_channels, 1, b.kernel, b.kernel)
        bn(f"{b.prefix}._bn1", b.mid_channels)
        shapes[f"{b.prefix}._project_conv.weight"] = (b.out_channels, b.mid_channels, 1, 1)
        bn(f"{b.prefix}._bn2", b.out_channels)
    last = spec.blocks[-1].out_channels
    shapes["_conv_head.weight"] = (spec.head_channels, last, 1, 1)
    bn("_bn1", spec.head_channels)
    shapes["_fc.weight"] = (spec.num_classes, spec.head_channels)
    shapes["_fc.bias"] = (spec.num_classes,)
    return shapes


def check_checkpoint(spec: NetworkSpec, state: dict) -> None:
    """Raise ValueError naming every missing or mis-shaped tensor."""
    problems = []
    for name, shape in expected_shapes(spec).items():
        if name not in state:
            problems.append(f"missing {name}")
        elif tuple(state[name].shape) != shape:
            problems.append(f"{name} has shape {tuple(state[name].shape)}, expected {shape}")
    if problems:
        raise ValueError(
            f"checkpoint does not match {spec.name}: " + "; ".join(problems[:10])
            + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else "")
        )
