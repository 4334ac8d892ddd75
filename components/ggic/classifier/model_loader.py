"""Which model the classifier loads: the one its configuration names."""

from __future__ import annotations

import os
from typing import Callable

from ..config import ClassifierConfig
from .model import load_model
from .pipeline import ClassificationPipeline
from .profiles import resolve_profile

DEFAULT_MODEL_DIR_ENV = "GGIC_DEFAULT_MODEL_DIR"

ModelLoader = Callable[[ClassifierConfig], ClassificationPipeline]


def default_model_loader(config: ClassifierConfig) -> ClassificationPipeline:
    """Load the model the configuration names (ModelDir empty: $GGIC_DEFAULT_MODEL_DIR, which
    the recipe sets to the ModelStore model copied for this platform). Not warmed up: the
    service does that on its inference thread."""
    model_dir = config.model_dir or os.environ.get(DEFAULT_MODEL_DIR_ENV, "")
    return ClassificationPipeline(load_model(
        model_dir, resolve_profile(config.model_profile), config.labels_path,
        backend=config.backend, warm_up=False))
