"""Model profiles: how a model wants its input and what its output means.

A profile fixes everything between "decoded image" and "tensor the model runs on":
channel order, resize/crop, scale, mean/std, layout, and whether the output is logits or
probabilities. Fields left ``None`` (input name, layout, size) are discovered from the model's
``.meta`` or graph when the model is loaded (``ModelProfile: auto`` leaves all three open).

Channel order: OpenCV decodes to BGR. All built-in profiles feed RGB, because the models were
trained on RGB images (GluonCV's ResNet-50 in the ModelStore, torchvision's VGG16, the TF-Lite
EfficientNet-Lite0). AWS's own DLR component feeds ``cv2.imread``'s BGR straight in; that
swaps red and blue for the ModelStore model and costs accuracy on colour-dependent classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, as_float, as_int, as_str

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

LAYOUTS = ("NHWC", "NCHW")
CHANNEL_ORDERS = ("RGB", "BGR")
RESIZE_MODES = ("stretch", "crop")
OUTPUT_KINDS = ("logits", "probabilities")
INTERPOLATIONS = ("linear", "area", "cubic", "nearest")


@dataclass(frozen=True)
class ModelProfile:
    name: str
    #: Input tensor name; None: discover (the model's only input).
    input_name: str | None = None
    #: "NHWC" or "NCHW"; None: discover from the input shape.
    layout: str | None = None
    #: (height, width) of the input; None: discover from the input shape.
    size: tuple[int, int] | None = None
    channel_order: str = "RGB"
    #: "stretch": resize to size directly; "crop": resize the short side to ``resize_short``
    #: (keeping the aspect ratio) then cut the centre ``size``.
    resize: str = "crop"
    #: Short side before the centre crop; None: size / 0.875 (256 for 224), the usual ratio.
    resize_short: int | None = None
    interpolation: str = "linear"
    #: Pixels (0..255) are multiplied by ``scale``, then ``(x - mean) / std`` per channel,
    #: with mean/std in the scaled units and in the profile's channel order.
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    output: str = "logits"

    def check(self) -> None:
        problems = []
        if self.layout is not None and self.layout not in LAYOUTS:
            problems.append(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            problems.append(f"channel_order must be RGB or BGR, got {self.channel_order!r}")
        if self.resize not in RESIZE_MODES:
            problems.append(f"resize must be stretch or crop, got {self.resize!r}")
        if self.interpolation not in INTERPOLATIONS:
            problems.append(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                f"got {self.interpolation!r}"
            )
        if self.output not in OUTPUT_KINDS:
            problems.append(f"output must be logits or probabilities, got {self.output!r}")
        if self.size is not None and (min(self.size) < 1 or max(self.size) > 4096):
            problems.append(f"size must be between 1 and 4096, got {self.size}")
        if self.resize_short is not None and self.size is not None and (
            self.resize_short < min(self.size)
        ):
            problems.append(f"resize_short ({self.resize_short}) is below size {self.size}")
        if any(s == 0 for s in self.std):
            problems.append("std must not contain 0")
        if self.scale <= 0:
            problems.append("scale must be positive")
        if problems:
            raise ConfigError([f"ModelProfile {p}" for p in problems])

    def short_side_for(self, size: tuple[int, int]) -> int:
        if self.resize_short is not None:
            return self.resize_short
        return round(min(size) / 0.875)

    def with_discovered(
        self, input_name: str, layout: str, size: tuple[int, int]
    ) -> ModelProfile:
        return dataclasses.replace(
            self,
            input_name=self.input_name or input_name,
            layout=self.layout or layout,
            size=self.size or size,
        )

    def describe(self) -> str:
        resize = (
            f"stretch to {self.size}"
            if self.resize == "stretch"
            else f"short side {self.resize_short or 'size/0.875'} + centre crop {self.size}"
        )
        return (
            f"{self.name}: input {self.input_name} {self.layout} {self.channel_order}, {resize}, "
            f"x*{self.scale:g}, mean {self.mean}, std {self.std}, output {self.output}"
        )


BUILTIN_PROFILES: dict[str, ModelProfile] = {
    # GluonCV resnet50_v1 compiled by Neo: mean/std and the NHWC->NCHW transform are inside the
    # graph, so the input is raw 0..255 pixels. GluonCV evaluates with resize 256 + crop 224.
    "modelstore-resnet50": ModelProfile(
        name="modelstore-resnet50",
        input_name="data",
        layout="NHWC",
        size=(224, 224),
        resize="crop",
        resize_short=256,
        scale=1.0,
        output="logits",
    ),
    # torchvision VGG16 compiled by Neo (the Edge Manager sample): ToTensor + Normalize.
    "neo-vgg16": ModelProfile(
        name="neo-vgg16",
        input_name="input0",
        layout="NCHW",
        size=(224, 224),
        resize="crop",
        resize_short=256,
        scale=1.0 / 255.0,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        output="logits",
    ),
    # EfficientNet-Lite0 converted by `ggic model build-demo` (TF-Lite's ImageNet weights): the
    # graph normalises (x - 127) / 128 itself, so the input is raw 0..255 RGB like the
    # ModelStore's; its authors evaluate on the centre 224/256 crop, resized bicubically.
    "efficientnet-lite0": ModelProfile(
        name="efficientnet-lite0",
        input_name="data",
        layout="NHWC",
        size=(224, 224),
        resize="crop",
        resize_short=256,
        interpolation="cubic",
        scale=1.0,
        output="logits",
    ),
}

#: Used by ``auto`` for what the model files cannot tell: ImageNet conventions.
AUTO_DEFAULTS = ModelProfile(
    name="auto",
    resize="crop",
    scale=1.0 / 255.0,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)


def register_profile(profile: ModelProfile) -> None:
    profile.check()
    BUILTIN_PROFILES[profile.name] = profile


def _triple(value: Any, key: str) -> tuple[float, float, float]:
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ValueError(f"{key} must be three numbers")
    return (as_float(value[0]), as_float(value[1]), as_float(value[2]))


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (as_int(value[0]), as_int(value[1]))
    side = as_int(value)
    return (side, side)


_CUSTOM_FIELDS = {
    "input_name": as_str,
    "layout": lambda v: as_str(v).upper(),
    "size": _size,
    "channel_order": lambda v: as_str(v).upper(),
    "resize": lambda v: as_str(v).lower(),
    "resize_short": as_int,
    "interpolation": lambda v: as_str(v).lower(),
    "scale": as_float,
    "mean": lambda v: _triple(v, "mean"),
    "std": lambda v: _triple(v, "std"),
    "output": lambda v: as_str(v).lower(),
}


def custom_profile(spec: Mapping[str, Any]) -> ModelProfile:
    """A profile from a configuration object.

    ``base`` names a built-in profile to start from (default: the ImageNet conventions of
    ``auto``); every other key overrides one field.
    """
    base_name = spec.get("base", "auto")
    if base_name == "auto":
        base = AUTO_DEFAULTS
    elif base_name in BUILTIN_PROFILES:
        base = BUILTIN_PROFILES[base_name]
    else:
        raise ConfigError([f"ModelProfile base {base_name!r} is not a known profile"])
    unknown = sorted(set(spec) - set(_CUSTOM_FIELDS) - {"base", "name"})
    if unknown:
        raise ConfigError(
            [f"ModelProfile has unknown key(s) {', '.join(unknown)}; known: "
             f"base, name, {', '.join(_CUSTOM_FIELDS)}"]
        )
    changes: dict[str, Any] = {"name": as_str(spec.get("name") or "custom")}
    problems = []
    for key, coerce in _CUSTOM_FIELDS.items():
        if key in spec and spec[key] is not None:
            try:
                changes[key] = coerce(spec[key])
            except ValueError as exc:
                problems.append(f"ModelProfile {key} {exc}")
    if problems:
        raise ConfigError(problems)
    profile = dataclasses.replace(base, **changes)
    profile.check()
    return profile


def resolve_profile(value: str | Mapping[str, Any]) -> ModelProfile:
    """The profile for a ``ModelProfile`` configuration value."""
    if isinstance(value, Mapping):
        return custom_profile(value)
    if value == "auto":
        return AUTO_DEFAULTS
    if value in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[value]
    raise ConfigError(
        [f"ModelProfile {value!r} is unknown; use auto, "
         f"{', '.join(sorted(BUILTIN_PROFILES))} or an object describing the model"]
    )
