"""Choosing a backend: the ``Backend`` configuration key, ``auto`` by the directory's files,
and what a user is told when the choice is impossible. Real model directories (small DLR and
ONNX models from ggic.modelgen); no library is mocked except where its absence is the point."""

from __future__ import annotations

import shutil
import sys

import pytest

from ggic.classifier.backends.base import ModelLoadError
from ggic.classifier.backends.dlr import DlrBackend
from ggic.classifier.backends.onnx import OnnxBackend
from ggic.classifier.backends.registry import BACKEND_CHOICES, backend_class, choose_backend
from ggic.classifier.model_loader import default_model_loader
from ggic.config import ClassifierConfig, ConfigError, config_from_mapping
from ggic.modelgen.onnx_export import write_modelstore_like_onnx
from ggic.modelgen.testnets import write_modelstore_like


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    return {
        "dlr": write_modelstore_like(root / "dlr", num_classes=10, size=14).model_dir,
        "onnx": write_modelstore_like_onnx(root / "onnx", num_classes=10, size=14).model_dir,
    }


def test_the_backend_key_defaults_to_auto_and_takes_registered_names():
    assert ClassifierConfig().backend == "auto"
    assert BACKEND_CHOICES == ("auto", "dlr", "onnx")
    assert config_from_mapping(ClassifierConfig, {"Backend": " ONNX "}).backend == "onnx"
    with pytest.raises(ConfigError, match="Backend must be one of auto, dlr, onnx, got 'tflite'"):
        config_from_mapping(ClassifierConfig, {"Backend": "tflite"})


def test_auto_picks_by_the_files(dirs):
    assert choose_backend("auto", dirs["dlr"]) is DlrBackend
    assert choose_backend("auto", dirs["onnx"]) is OnnxBackend


def test_an_explicit_backend_is_used_as_named(dirs):
    assert choose_backend("onnx", dirs["dlr"]) is OnnxBackend
    with pytest.raises(ModelLoadError, match="is not a compiled DLR model"):
        backend_class("dlr").open(dirs["onnx"])
    with pytest.raises(ModelLoadError, match="Backend unknown backend 'tflite'; known: auto"):
        choose_backend("tflite", dirs["dlr"])


def test_a_directory_with_both_kinds_asks_for_the_backend(dirs, tmp_path):
    both = tmp_path / "both"
    shutil.copytree(dirs["dlr"], both)
    shutil.copy(dirs["onnx"] / "model.onnx", both)
    with pytest.raises(ModelLoadError, match=r"several backends \(dlr, onnx\): set Backend"):
        choose_backend("auto", both)
    assert choose_backend("onnx", both) is OnnxBackend


def test_a_directory_without_model_files_names_what_each_backend_needs(tmp_path):
    (tmp_path / "synset.txt").write_text("a\nb\n")
    with pytest.raises(ModelLoadError) as info:
        choose_backend("auto", tmp_path)
    message = str(info.value)
    assert "holds no model files" in message
    assert "one kernel library *.so, one *.params, one graph *.json (Backend: dlr)" in message
    assert "one *.onnx (Backend: onnx)" in message


def test_without_onnxruntime_the_user_is_told_what_to_install(dirs, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ModelLoadError, match=r"ONNX Runtime is not installed: pip install "
                       r"'ggic\[onnx\]'"):
        OnnxBackend.open(dirs["onnx"])


def test_the_component_loads_the_backend_its_configuration_names(dirs):
    config = config_from_mapping(ClassifierConfig, {"ModelDir": str(dirs["onnx"])})
    pipeline = default_model_loader(config)
    try:
        assert pipeline.model.backend.name == "onnx"
        # 14x14: not the 224x224 modelstore-resnet50, though its input name and layout match
        assert pipeline.model.summary() == {"name": "onnx", "profile": "auto"}
        assert pipeline.model.profile.size == (14, 14)
    finally:
        pipeline.close()
    forced = config_from_mapping(ClassifierConfig, {"ModelDir": str(dirs["onnx"]),
                                                    "Backend": "dlr"})
    with pytest.raises(ModelLoadError, match="is not a compiled DLR model"):
        default_model_loader(forced)


def test_model_info_shows_each_backends_files_without_loading_it(dirs, capsys):
    from ggic.cli import main

    assert main(["model", "info", str(dirs["dlr"])]) == 0
    out = capsys.readouterr().out
    assert "backend: dlr" in out
    for line in ("graph      compiled_model.json", "params     compiled.params",
                 "kernels    compiled.so", "meta       compiled.meta", "libdlr.so  -",
                 "input  data [1, 14, 14, 3] float32", "output dense0 [1, 10] float32"):
        assert line in out
    assert main(["model", "info", "--backend", "onnx", str(dirs["dlr"])]) == 2
    assert "is not an ONNX model: it needs exactly one *.onnx file (found none)" in (
        capsys.readouterr().err)


def test_tensor_completes_the_profile_from_an_onnx_model(dirs, photos, tmp_path):
    import numpy as np

    from ggic.cli import main

    out = tmp_path / "x.npy"
    assert main(["tensor", str(photos[0]), "-o", str(out), "--model-profile", "auto",
                 "--model-dir", str(dirs["onnx"])]) == 0
    assert np.load(out).shape == (1, 14, 14, 3)


def test_an_onnx_model_with_a_dynamic_batch_takes_one_image(tmp_path, photos):
    import numpy as np

    from ggic.classifier.model import load_model
    from ggic.classifier.profiles import resolve_profile

    net = write_modelstore_like_onnx(tmp_path / "dyn", num_classes=10, size=14,
                                     write_meta=False, dynamic_batch=True)
    model = load_model(net.model_dir, resolve_profile("auto"))
    try:
        assert model.input_spec.shape == (1, 14, 14, 3)
        assert model.signature.source.endswith("model.onnx")
        x = np.random.default_rng(3).uniform(0, 255, (1, 14, 14, 3)).astype(np.float32)
        np.testing.assert_allclose(model.run(x), net.reference(x), atol=1e-4, rtol=1e-4)
    finally:
        model.close()
