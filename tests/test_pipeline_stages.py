"""The request path reads an image's header once and passes it on, and each stage returns
its own timing (a real DLR model, real photos decoded by OpenCV)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import ggic.classifier.decode as decode_module
import ggic.classifier.pipeline as pipeline_module
from ggic.classifier.formats import ImageFormat, ImageProbe
from ggic.classifier.inputs import InputLimits, load_tensor
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline, ModelRun, PreparedInput
from ggic.classifier.profiles import resolve_profile
from ggic.messages import ClassificationError, ErrorCode, ImageSource, SourceKind
from ggic.modelgen.testnets import write_neo_like


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> ClassificationPipeline:
    net = write_neo_like(tmp_path_factory.mktemp("stages") / "vgg", seed=3)
    return ClassificationPipeline(load_model(net.model_dir, resolve_profile("neo-vgg16"),
                                             str(net.labels_path)))


@pytest.fixture
def big_jpeg(photos, tmp_path):
    path = tmp_path / "big.jpg"
    image = cv2.resize(cv2.imread(str(photos[0])), (1600, 1200))
    assert cv2.imwrite(str(path), image)
    return path


def test_the_header_is_read_once_and_passed_on(pipeline, big_jpeg, monkeypatch):
    reads = []
    original = pipeline_module.probe_image

    def counting(*args, **kwargs):
        reads.append(1)
        return original(*args, **kwargs)

    for module in (pipeline_module, decode_module):
        monkeypatch.setattr(module, "probe_image", counting)
    prepared = pipeline.prepare(ImageSource(SourceKind.PATH, path=str(big_jpeg)), InputLimits())
    assert len(reads) == 1
    assert prepared.probe == ImageProbe(ImageFormat.JPEG, 1600, 1200)
    assert prepared.tensor.shape == (1, 3, 224, 224)


def test_each_stage_returns_its_own_timing(pipeline, big_jpeg):
    limits = InputLimits()
    prepared = pipeline.prepare(ImageSource(SourceKind.PATH, path=str(big_jpeg)), limits)
    assert set(prepared.timing_ms) == {"load", "preprocess"}
    assert prepared.load_ms > 0 and prepared.preprocess_ms > 0
    run = pipeline.run_model(prepared)
    assert isinstance(run, ModelRun) and run.inference_ms > 0 and run.scores.shape == (1000,)
    assert set(prepared.timing_ms) == {"load", "preprocess"}  # run_model did not write to it
    predictions, timing = pipeline.classify(
        ImageSource(SourceKind.PATH, path=str(big_jpeg)), limits, 3, 0.0)
    assert list(timing) == ["load", "preprocess", "inference", "total"]
    assert timing["total"] >= timing["load"] + timing["preprocess"] + timing["inference"]
    assert [p.class_id for p in predictions] == list(np.argsort(-run.scores)[:3])


def test_accepted_formats_apply_in_the_pipeline(pipeline, big_jpeg):
    limits = InputLimits.create([], 10**7, 10**8, ["PNG"])
    with pytest.raises(ClassificationError) as info:
        pipeline.prepare(ImageSource(SourceKind.PATH, path=str(big_jpeg)), limits)
    assert info.value.code is ErrorCode.UNSUPPORTED_IMAGE and "JPEG" in info.value.message


def test_prepared_input_keeps_its_constructor():
    prepared = PreparedInput(np.zeros(1), {"load": 1.0, "preprocess": 2.0})
    assert (prepared.load_ms, prepared.preprocess_ms, prepared.probe) == (1.0, 2.0, None)


def mutations(data: bytes, rng: np.random.Generator, n: int):
    """``n`` damaged copies of ``data``: bytes overwritten, cut short, or repeated."""
    for _ in range(n):
        buf = bytearray(data)
        choice = rng.integers(3)
        if choice == 0:
            for pos in rng.integers(0, len(buf), rng.integers(1, 8)):
                buf[pos] = int(rng.integers(256))
        elif choice == 1:
            del buf[int(rng.integers(1, len(buf))):]
        else:
            start = int(rng.integers(len(buf)))
            buf[start:start] = buf[start : start + int(rng.integers(1, 64))] * 3
        yield bytes(buf)


def test_damaged_inputs_only_ever_get_typed_errors(pipeline, photos):
    """INTERNAL_ERROR is unreachable from input: every damaged image or tensor through the
    whole prepare stage (header, OpenCV decode, preprocessing, .npy parsing) either works or
    raises ClassificationError."""
    rng = np.random.default_rng(8)
    image = cv2.resize(cv2.imread(str(photos[0])), (96, 64))
    seeds = [cv2.imencode(ext, image, params)[1].tobytes() for ext, params in (
        (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".png", []), (".bmp", []),
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]))]
    limits = InputLimits.create([], 10**6, 10**6)
    outcomes = {"ok": 0, "error": 0}
    for seed in seeds:
        for data in mutations(seed, rng, 150):
            try:
                pipeline.prepare(ImageSource(SourceKind.INLINE, data=data), limits)
                outcomes["ok"] += 1
            except ClassificationError:
                outcomes["error"] += 1
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 224, 224), np.float32))
    for data in mutations(buffer.getvalue()[:512], rng, 300):
        with pytest.raises(ClassificationError) as info:
            load_tensor(data, (1, 3, 224, 224), "t")
        assert info.value.code is ErrorCode.BAD_TENSOR
    assert outcomes["ok"] > 0 and outcomes["error"] > 0, outcomes


def test_ggic_classify_honours_accepted_image_formats(tmp_path, photos):
    """The real ``ggic classify`` process with AcceptedImageFormats set to PNG only."""
    net = write_neo_like(tmp_path / "vgg", seed=3)
    png, jpeg = tmp_path / "a.png", tmp_path / "b.jpg"
    image = cv2.imread(str(photos[0]))
    assert cv2.imwrite(str(png), image) and cv2.imwrite(str(jpeg), image)
    done = subprocess.run(
        [sys.executable, "-m", "ggic", "classify", "--model-dir", str(net.model_dir),
         "--model-profile", "neo-vgg16", "--accepted-image-formats", "png", "--json",
         str(png), str(jpeg)], capture_output=True, text=True, timeout=120)
    results = {Path(r["image"]).name: r for r in map(json.loads, done.stdout.splitlines())}
    assert done.returncode == 1, done.stderr
    assert results["a.png"]["status"] == "ok"
    assert results["b.jpg"]["error"]["code"] == "UNSUPPORTED_IMAGE"
    assert "is a JPEG image" in results["b.jpg"]["error"]["message"]
