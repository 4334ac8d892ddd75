"""Loading a DLR model and running it, one inference at a time.

One ``DLRModel`` must never run from two threads at once (its input and output buffers are
shared), so :class:`LoadedModel` serialises ``run`` with a lock; the classifier service also
runs all inference on one thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError
from .dlr_locate import DlrUnavailable, prepare_dlr
from .labels import Labels, find_labels
from .model_files import (
    ModelFiles,
    ModelLoadError,
    ModelSignature,
    StagedModel,
    TensorSpec,
    find_model_files,
    input_layout,
    read_signature,
)
from .profiles import AUTO_DEFAULTS, BUILTIN_PROFILES, ModelProfile, custom_profile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    profile: ModelProfile
    input: TensorSpec
    output_names: tuple[str, ...]
    load_ms: float
    warmup_ms: float

    def summary(self) -> dict[str, str]:
        return {"name": self.name, "profile": self.profile.name}


def resolve_input(signature: ModelSignature, profile: ModelProfile) -> TensorSpec:
    if profile.input_name is not None:
        for spec in signature.inputs:
            if spec.name == profile.input_name:
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
    if profile.size is not None and tuple(profile.size) != tuple(size):
        raise ModelLoadError(
            f"ModelProfile {profile.name} expects {profile.size[0]}x{profile.size[1]} input but "
            f"the model takes {size[0]}x{size[1]} ({spec.name} {list(spec.shape)})"
        )
    if profile.name == "auto":
        profile = _builtin_matching(spec.name, layout) or profile
    return profile.with_discovered(spec.name, layout, (int(size[0]), int(size[1])))


def _builtin_matching(input_name: str, layout: str) -> ModelProfile | None:
    """With ``auto``: the built-in profile whose input name and layout the model has."""
    for profile in BUILTIN_PROFILES.values():
        if profile.input_name == input_name and profile.layout == layout:
            log.info("ModelProfile auto: input %s %s matches profile %s",
                     input_name, layout, profile.name)
            return profile
    log.info("ModelProfile auto: no built-in profile has input %s %s; using ImageNet "
             "conventions (%s)", input_name, layout, AUTO_DEFAULTS.describe())
    return None


class LoadedModel:
    """A DLR model ready to run, with its labels and completed profile."""

    def __init__(self, files: ModelFiles, profile: ModelProfile, labels: Labels,
                 signature: ModelSignature) -> None:
        self.files = files
        self.labels = labels
        self._lock = threading.Lock()
        if profile.name == "auto":
            profile = profile_from_meta(signature) or profile
        spec = resolve_input(signature, profile)
        self.profile = complete_profile(profile, spec)
        self.input_spec = spec
        self._staged = StagedModel(files)
        started = time.perf_counter()
        try:
            dlr = prepare_dlr(self._staged.path)
            self._model: Any = dlr.DLRModel(str(self._staged.path), "cpu", use_default_dlr=False)
        except DlrUnavailable:
            self._staged.close()
            raise
        except Exception as exc:
            self._staged.close()
            raise ModelLoadError(_explain_dlr_failure(files, exc)) from exc
        self.load_ms = (time.perf_counter() - started) * 1000.0
        self.output_names = tuple(self._model.get_output_names() or ())

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.input_spec.shape)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """Run one inference and return the first output."""
        if tuple(tensor.shape) != self.input_shape:
            raise ValueError(
                f"input shape {list(tensor.shape)} != model's {list(self.input_shape)}"
            )
        with self._lock:
            outputs = self._model.run({self.input_spec.name: tensor})
        return np.asarray(outputs[0])

    def warm_up(self) -> float:
        """One inference on zeros (first runs allocate and fault in pages); its time in ms."""
        started = time.perf_counter()
        self.run(np.zeros(self.input_shape, dtype=np.float32))
        return (time.perf_counter() - started) * 1000.0

    def close(self) -> None:
        with self._lock:
            self._model = None
        self._staged.close()


def _explain_dlr_failure(files: ModelFiles, exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if type(exc).__name__ == "DLRLibraryNotFound" or "Cannot find DLR Library" in text:
        return (
            "DLR's native library libdlr.so was not found. On x86_64 Linux install dlr==1.6.0 "
            "(its wheel ships libdlr.so); on aarch64/armv7l put a libdlr.so built for the device "
            f"in the model directory or name it in $DLR_LIBRARY_PATH. ({text})"
        )
    return (
        f"DLR could not load the model in {files.directory}: {text}. Check that the model was "
        "compiled for this device's architecture and for the 'cpu' target."
    )


def load_model(model_dir: str | Path, profile: ModelProfile, labels_path: str = "",
               *, warm_up: bool = True) -> tuple[LoadedModel, ModelInfo]:
    """Load, check and warm up a model; raise ModelLoadError saying how to fix any problem."""
    files = find_model_files(model_dir)
    signature = read_signature(files)
    try:
        labels = find_labels(labels_path, files.directory)
    except ValueError as exc:
        raise ModelLoadError(f"{exc}: fix LabelsPath") from None
    model = LoadedModel(files, profile, labels, signature)
    warmup_ms = 0.0
    if warm_up:
        try:
            warmup_ms = model.warm_up()
        except Exception as exc:
            model.close()
            raise ModelLoadError(f"warm-up inference failed: {exc}") from exc
    num_classes = _output_classes(signature)
    if num_classes and len(labels) and not labels.covers(num_classes):
        log.warning("labels %s have %d entries but the model outputs %d classes",
                    labels.source, len(labels), num_classes)
    info = ModelInfo(
        name=files.directory.resolve().name,
        profile=model.profile,
        input=model.input_spec,
        output_names=model.output_names,
        load_ms=model.load_ms,
        warmup_ms=warmup_ms,
    )
    warmed = f"warm-up {warmup_ms:.1f} ms" if warm_up else "not warmed up yet"
    log.info("loaded model %s in %.1f ms (%s): %s; labels: %s",
             files.directory, model.load_ms, warmed, model.profile.describe(), labels.source)
    return model, info


def _output_classes(signature: ModelSignature) -> int:
    if signature.outputs and signature.outputs[0].shape:
        return int(signature.outputs[0].shape[-1])
    return 0
