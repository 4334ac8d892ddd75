"""Preprocessing writes into reused tensors; a tensor queued for inference is never overwritten.

Through the real parts: a real model directory run by the real libdlr.so, real photos. Several
requests are prepared before any is inferred (as the service's workers run ahead of its
inference thread), and each gets the answer it gets alone."""

from __future__ import annotations

import numpy as np
import pytest

from ggic.classifier.inputs import InputLimits
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline
from ggic.classifier.profiles import resolve_profile
from ggic.messages import ImageSource, SourceKind
from ggic.modelgen.testnets import write_modelstore_like

LIMITS = InputLimits()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> ClassificationPipeline:
    net = write_modelstore_like(tmp_path_factory.mktemp("net") / "modelstore")
    return ClassificationPipeline(load_model(net.model_dir, resolve_profile("auto")))


def scores_alone(pipeline, photo) -> np.ndarray:
    prepared = pipeline.prepare(ImageSource(SourceKind.PATH, path=str(photo)), LIMITS)
    return pipeline.run_model(prepared).scores


def test_inputs_prepared_ahead_keep_their_own_tensors(pipeline, photos, jpeg_photos):
    images = list(photos) + list(jpeg_photos)
    alone = [scores_alone(pipeline, photo) for photo in images]
    assert len({round(float(s.max()), 6) for s in alone}) > 1  # the photos differ
    for _round in range(3):  # tensors given back in one round are reused in the next
        prepared = [pipeline.prepare(ImageSource(SourceKind.PATH, path=str(p)), LIMITS)
                    for p in images]
        tensors = {id(p.tensor) for p in prepared}
        assert len(tensors) == len(images)  # no two queued inputs share a tensor
        for want, item in zip(alone, prepared):
            assert np.array_equal(pipeline.run_model(item).scores, want)
            assert item.release is None  # given back exactly once


def test_tensors_are_reused_once_inference_consumed_them(pipeline, photos):
    first = pipeline.prepare(ImageSource(SourceKind.PATH, path=str(photos[0])), LIMITS)
    kept = first.tensor
    pipeline.run_model(first)
    second = pipeline.prepare(ImageSource(SourceKind.PATH, path=str(photos[1])), LIMITS)
    assert second.tensor is kept  # steady state: no new allocation
    pipeline.run_model(second)


def test_a_failed_inference_gives_its_tensor_back(pipeline, photos):
    prepared = pipeline.prepare(ImageSource(SourceKind.PATH, path=str(photos[0])), LIMITS)
    real_run = pipeline.model.run

    def failing_run(tensor):
        raise RuntimeError("kernel failed")

    pipeline.model.run = failing_run
    try:
        with pytest.raises(Exception, match="kernel failed"):
            pipeline.run_model(prepared)
    finally:
        pipeline.model.run = real_run
    assert prepared.release is None
