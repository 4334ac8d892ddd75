"""The classifier pipeline through the REAL native DLR runtime (libdlr.so of dlr==1.6.0) on real
model directories written by ggic.modelgen, with real photos decoded by OpenCV.

Each result must equal a numpy reference of the same network on the same preprocessed input.
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import socket
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ggic.classifier.backends.base import ModelLoadError
from ggic.classifier.inputs import InputLimits
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline
from ggic.classifier.postprocess import softmax
from ggic.classifier.preprocess import preprocess
from ggic.classifier.profiles import resolve_profile
from ggic.messages import ClassificationError, ErrorCode, ImageSource, SourceKind
from ggic.modelgen.testnets import (
    write_custom_probabilities_net,
    write_modelstore_like,
    write_neo_like,
)

LIMITS = InputLimits()
TOL = 1e-5


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("nets")
    return {
        "modelstore": write_modelstore_like(root / "DLR-resnet50-x86_64-cpu-ImageClassification"),
        "neo": write_neo_like(root / "vgg16", seed=3),
        "probabilities": write_custom_probabilities_net(root / "probs", kind="neo", seed=5),
        "poison": write_modelstore_like(root / "poison", poison_value=-7.0, seed=9),
    }


def pipeline_for(net, profile="auto", labels_path="") -> ClassificationPipeline:
    return ClassificationPipeline(load_model(net.model_dir, resolve_profile(profile),
                                             labels_path))


def reference_top(net, pipeline, photo: Path, k: int):
    """Decode and preprocess as the pipeline does (reduced JPEG decode included; preprocessing
    itself is checked against numpy in test_preprocess), run the numpy reference of the
    network, softmax, top-k."""
    image = pipeline.decode(photo.read_bytes(), LIMITS, photo.name)
    tensor = preprocess(image, pipeline.profile)
    output = net.reference(tensor)[0].astype(np.float64)
    probs = output if net.output_kind == "probabilities" else softmax(output)
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), float(probs[i])) for i in order]


def assert_matches_reference(net, pipeline, photos, k=5):
    for photo in photos:
        source = ImageSource(SourceKind.PATH, path=str(photo))
        predictions, timing = pipeline.classify(source, LIMITS, k, 0.0)
        want = reference_top(net, pipeline, photo, k)
        assert [p.class_id for p in predictions] == [i for i, _ in want], photo.name
        for p, (_, score) in zip(predictions, want):
            assert abs(p.score - score) <= TOL, (photo.name, p.score, score)
            assert p.label == net.labels[p.class_id]
        assert timing["inference"] > 0 and timing["total"] >= timing["inference"]


def test_modelstore_like_model_with_synset_labels(nets, photos):
    net = nets["modelstore"]
    pipeline = pipeline_for(net, "modelstore-resnet50")
    assert pipeline.profile.layout == "NHWC" and pipeline.model.input_spec.name == "data"
    assert_matches_reference(net, pipeline, photos)


def test_neo_like_model_with_class_index_labels(nets, jpeg_photos):
    net = nets["neo"]
    pipeline = pipeline_for(net, "neo-vgg16", str(net.labels_path))
    assert pipeline.profile.layout == "NCHW" and pipeline.model.input_spec.name == "input0"
    assert_matches_reference(net, pipeline, jpeg_photos)


def test_auto_profile_discovers_input_and_layout(nets):
    for kind, expected in (("modelstore", "modelstore-resnet50"), ("neo", "neo-vgg16")):
        pipeline = pipeline_for(nets[kind])
        assert pipeline.profile.name == expected
        assert pipeline.profile.size == (224, 224)


def test_discovery_from_the_graph_without_meta(nets, tmp_path, photos):
    net = nets["neo"]
    bare = tmp_path / "no-meta"
    shutil.copytree(net.model_dir, bare)
    for meta in bare.glob("*.meta"):
        meta.unlink()
    pipeline = pipeline_for(net, "auto", str(net.labels_path))
    bare_pipeline = ClassificationPipeline(load_model(bare, resolve_profile("auto"),
                                                       str(net.labels_path)))
    assert bare_pipeline.profile == pipeline.profile
    assert_matches_reference(net, bare_pipeline, photos[:2])


def test_probability_outputs_are_not_softmaxed_twice(nets, photos):
    net = nets["probabilities"]
    pipeline = pipeline_for(net, {"base": "neo-vgg16", "output": "probabilities"},
                            str(net.labels_path))
    assert_matches_reference(net, pipeline, photos[:2])


def test_labels_json_beside_the_graph_is_staged_around(nets, tmp_path, photos):
    """DLR refuses a directory with two *.json; the classifier stages links and loads it."""
    net = nets["neo"]
    crowded = tmp_path / "with:colon"
    shutil.copytree(net.model_dir, crowded)
    shutil.copy(net.labels_path, crowded / "imagenet_class_index.json")
    pipeline = pipeline_for(net, "neo-vgg16", str(crowded / "imagenet_class_index.json"))
    assert_matches_reference(net, pipeline, photos[:1])


def test_tensor_input_gives_the_same_result_as_the_image(nets, photos, tmp_path):
    net = nets["neo"]
    pipeline = pipeline_for(net, "neo-vgg16", str(net.labels_path))
    tensor = preprocess(cv2.imread(str(photos[0])), pipeline.profile)
    path = tmp_path / "x.npy"
    np.save(path, tensor[0])  # without the batch dimension, as samples save it
    from_tensor, _ = pipeline.classify(ImageSource(SourceKind.TENSOR, path=str(path)),
                                       LIMITS, 5, 0.0)
    from_image, _ = pipeline.classify(ImageSource(SourceKind.PATH, path=str(photos[0])),
                                      LIMITS, 5, 0.0)
    assert [p.class_id for p in from_tensor] == [p.class_id for p in from_image]


def test_a_runtime_error_inside_libdlr_is_a_model_error(nets, tmp_path):
    net = nets["poison"]
    pipeline = pipeline_for(net, "modelstore-resnet50")
    tensor = np.full(net.input_shape, -7.0, dtype=np.float32)
    buffer = io.BytesIO()
    np.save(buffer, tensor)
    (tmp_path / "poison.npy").write_bytes(buffer.getvalue())
    with pytest.raises(ClassificationError) as info:
        pipeline.classify(ImageSource(SourceKind.TENSOR, path=str(tmp_path / "poison.npy")),
                          LIMITS, 5, 0.0)
    assert info.value.code is ErrorCode.MODEL_ERROR
    assert "poison" in info.value.message
    # and the model still works afterwards
    ok, _ = pipeline.classify(ImageSource(SourceKind.INLINE, data=_png()), LIMITS, 5, 0.0)
    assert len(ok) == 5


def _png() -> bytes:
    image = (np.arange(64 * 48 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    return cv2.imencode(".png", image)[1].tobytes()


def test_profile_mismatch_and_missing_model_explain_the_fix(nets, tmp_path):
    with pytest.raises(ModelLoadError, match="expects input 'input0'.*choose the matching"):
        load_model(nets["modelstore"].model_dir, resolve_profile("neo-vgg16"))
    with pytest.raises(ModelLoadError, match="does not exist.*set ModelDir"):
        load_model(tmp_path / "nope", resolve_profile("auto"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="holds no model files.*kernel library.*onnx"):
        load_model(tmp_path / "empty", resolve_profile("auto"))
    with pytest.raises(ModelLoadError, match="fix LabelsPath"):
        load_model(nets["neo"].model_dir, resolve_profile("auto"), str(tmp_path / "x.json"))


def test_dlr_phone_home_is_off_and_nothing_reaches_the_network(nets, monkeypatch):
    """Loading a model opens no socket, and dlr's counter module is never imported."""
    import ggic.classifier.backends.dlr  # noqa: F401 - ensure our import path is used

    attempts = []

    def no_network(self, address):
        attempts.append(address)
        raise OSError("network disabled in tests")

    spec = importlib.util.find_spec("dlr")
    counter_config = Path(spec.origin).parent / "counter" / "ccm_config.json"

    def stamp():
        return counter_config.stat().st_mtime_ns if counter_config.exists() else None

    before = stamp()
    monkeypatch.setattr(socket.socket, "connect", no_network)
    model = load_model(nets["modelstore"].model_dir, resolve_profile("auto"))
    model.close()
    assert attempts == []
    assert "dlr.counter.phone_home" not in sys.modules
    assert stamp() == before  # nothing written into site-packages
