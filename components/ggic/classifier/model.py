"""A loaded model: the backend that runs it, the profile that feeds it, the labels that name
its classes -- one object, which the pipeline, ``ggic classify`` and the service share.

:func:`load_model` picks the backend (``Backend: auto`` by the directory's files), opens the
model, completes the profile from the model's inputs (and its ``.meta``) and reads the labels.
One model must be run from one thread at a time (see :mod:`.backends.base`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..config import ConfigError
from .backends.base import Backend, ModelLoadError, ModelSignature, TensorSpec
from .backends.registry import AUTO, choose_backend
from .labels import Labels, find_labels
from .profiles import AUTO_DEFAULTS, BUILTIN_PROFILES, ModelProfile, custom_profile

__all__ = ["LoadedModel", "ModelLoadError", "complete_profile", "input_layout", "load_model",
           "profile_for", "profile_from_meta", "resolve_input"]

log = logging.getLogger(__name__)


class LoadedModel:
    """A model ready to run: its backend, completed profile, labels and image input."""

    def __init__(self, backend: Backend, profile: ModelProfile, labels: Labels,
                 input_spec: TensorSpec, *, load_ms: float = 0.0) -> None:
        self.backend = backend
        self.profile = profile
        self.labels = labels
        self.input_spec = input_spec
        self.load_ms = load_ms
        self.name = backend.model.directory.resolve().name

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.input_spec.shape)

    @property
    def signature(self) -> ModelSignature:
        return self.backend.signature

    def summary(self) -> dict[str, str]:
        """The ``model`` field of a result."""
        return {"name": self.name, "profile": self.profile.name}

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """Run one inference on the image input and return the first output."""
        return self.backend.run({self.input_spec.name: tensor})[0]

    def warm_up(self) -> float:
        """One inference on zeros (first runs allocate and fault in pages); its time in ms."""
        started = time.perf_counter()
        self.run(np.zeros(self.input_shape, dtype=np.float32))
        return (time.perf_counter() - started) * 1000.0

    def close(self) -> None:
        self.backend.close()


def resolve_input(signature: ModelSignature, profile: ModelProfile) -> TensorSpec:
    if profile.input_name is not None:
        spec = signature.input_named(profile.input_name)
        if spec is not None:
            return spec
        names = ", ".join(s.name for s in signature.inputs) or "none"
        raise ModelLoadError(
            f"ModelProfile {profile.name} expects input {profile.input_name!r} but the model "
            f"has {names}: choose the matching ModelProfile (or auto)"
        )
    if len(signature.inputs) != 1:
        names = ", ".join(s.name for s in signature.inputs) or "none"
        raise ModelLoadError(
            f"cannot tell which input is the image (model inputs: {names}): "
            "give input_name in a custom ModelProfile"
        )
    return signature.inputs[0]


def profile_from_meta(signature: ModelSignature) -> ModelProfile | None:
    """With ``auto``: the profile the model's .meta names or describes, if any."""
    if signature.profile_name in BUILTIN_PROFILES:
        log.info("ModelProfile auto: the model's .meta names profile %s", signature.profile_name)
        return BUILTIN_PROFILES[signature.profile_name]
    if signature.preprocessing:
        try:
            profile = custom_profile({**signature.preprocessing,
                                      "name": signature.profile_name or "from-meta"})
        except ConfigError as exc:
            log.warning("ignoring the preprocessing in the model's .meta: %s", exc)
            return None
        log.info("ModelProfile auto: using the preprocessing the model's .meta describes")
        return profile
    return None


def input_layout(shape: tuple[int, ...]) -> tuple[str, tuple[int, int]] | None:
    """("NCHW"|"NHWC", (height, width)) for a 4-D image input shape, if it is unambiguous."""
    if len(shape) != 4:
        return None
    channels_first = shape[1] in (1, 3)
    channels_last = shape[3] in (1, 3)
    if channels_first and not channels_last:
        return "NCHW", (int(shape[2]), int(shape[3]))
    if channels_last and not channels_first:
        return "NHWC", (int(shape[1]), int(shape[2]))
    return None


def complete_profile(profile: ModelProfile, spec: TensorSpec) -> ModelProfile:
    """Fill in what the profile leaves open (input name, layout, size) from the model."""
    discovered = input_layout(spec.shape)
    layout = profile.layout or (discovered[0] if discovered else None)
    if layout is None:
        raise ModelLoadError(
            f"cannot tell the layout of input {spec.name} with shape {list(spec.shape)}: "
            "give layout (NHWC or NCHW) in a custom ModelProfile"
        )
    if len(spec.shape) != 4:
        raise ModelLoadError(
            f"input {spec.name} has shape {list(spec.shape)}; an image model needs a 4-D input"
        )
    size = (spec.shape[1], spec.shape[2]) if layout == "NHWC" else (spec.shape[2], spec.shape[3])
    channels = spec.shape[3] if layout == "NHWC" else spec.shape[1]
    if channels != 3:
        raise ModelLoadError(
            f"input {spec.name} {list(spec.shape)} has {channels} channels in {layout}; "
            "the classifier feeds 3-channel images"
        )
    if min(size) < 1:
        raise ModelLoadError(
            f"input {spec.name} {list(spec.shape)} has a dynamic image size; the classifier "
            "needs a model with a fixed input size"
        )
    if profile.size is not None and tuple(profile.size) != tuple(size):
        raise ModelLoadError(
            f"ModelProfile {profile.name} expects {profile.size[0]}x{profile.size[1]} input but "
            f"the model takes {size[0]}x{size[1]} ({spec.name} {list(spec.shape)})"
        )
    size = (int(size[0]), int(size[1]))
    if profile.name == "auto":
        profile = _builtin_matching(spec.name, layout, size) or profile
    return profile.with_discovered(spec.name, layout, size)


def _builtin_matching(input_name: str, layout: str,
                      size: tuple[int, int]) -> ModelProfile | None:
    """With ``auto``: the built-in profile whose input name, layout and size the model has."""
    for profile in BUILTIN_PROFILES.values():
        if (profile.input_name == input_name and profile.layout == layout
                and profile.size in (None, size)):
            log.info("ModelProfile auto: input %s %s matches profile %s",
                     input_name, layout, profile.name)
            return profile
    log.info("ModelProfile auto: no built-in profile has input %s %s; using ImageNet "
             "conventions (%s)", input_name, layout, AUTO_DEFAULTS.describe())
    return None


def profile_for(signature: ModelSignature, profile: ModelProfile) -> tuple[ModelProfile,
                                                                           TensorSpec]:
    """The completed profile for a model and its image input (``auto``: from the .meta, then
    from the input's name and layout)."""
    if profile.name == "auto":
        profile = profile_from_meta(signature) or profile
    spec = resolve_input(signature, profile)
    return complete_profile(profile, spec), spec


def load_model(model_dir: str | Path, profile: ModelProfile, labels_path: str = "",
               *, backend: str = AUTO, warm_up: bool = True) -> LoadedModel:
    """Load, check and (optionally) warm up a model; ModelLoadError saying how to fix any
    problem. ``backend``: a registered backend name, or ``auto`` (by the directory's files)."""
    backend_cls = choose_backend(backend, model_dir)
    started = time.perf_counter()
    opened = backend_cls.open(Path(model_dir))
    load_ms = (time.perf_counter() - started) * 1000.0
    try:
        completed, spec = profile_for(opened.signature, profile)
        try:
            labels = find_labels(labels_path, opened.model.directory)
        except ValueError as exc:
            raise ModelLoadError(f"{exc}: fix LabelsPath") from None
        model = LoadedModel(opened, completed, labels, spec, load_ms=load_ms)
        warmup_ms = model.warm_up() if warm_up else 0.0
    except ModelLoadError:
        opened.close()
        raise
    except Exception as exc:
        opened.close()
        raise ModelLoadError(f"warm-up inference failed: {exc}") from exc
    num_classes = _output_classes(opened.signature)
    if num_classes and len(labels) and not labels.covers(num_classes):
        log.warning("labels %s have %d entries but the model outputs %d classes",
                    labels.source, len(labels), num_classes)
    warmed = f"warm-up {warmup_ms:.1f} ms" if warm_up else "not warmed up yet"
    log.info("loaded %s model %s in %.1f ms (%s): %s; labels: %s", backend_cls.name,
             opened.model.directory, load_ms, warmed, completed.describe(), labels.source)
    return model


def _output_classes(signature: ModelSignature) -> int:
    if signature.outputs and signature.outputs[0].shape:
        return int(signature.outputs[0].shape[-1])
    return 0
