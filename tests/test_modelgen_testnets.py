"""The two test networks, loaded and run by the real libdlr.so on a real photo."""

from __future__ import annotations

import ast
import ctypes
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ggic.classifier.backends.dlr import import_dlr
from ggic.modelgen.testnets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TestNet,
    logit_scale,
    write_custom_probabilities_net,
    write_modelstore_like,
    write_neo_like,
)
from ggic.sample_images import SamplePhotosMissing, sample_photo_paths

SIZE = 224


@pytest.fixture(scope="module")
def dlr():
    return import_dlr()


@pytest.fixture(scope="module")
def photo_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real photos (scikit-image's) or, without scikit-image, a synthetic PNG."""
    try:
        return sample_photo_paths()
    except SamplePhotosMissing:
        yy, xx = np.mgrid[0:300, 0:400]
        image = np.stack([xx % 256, yy % 256, (xx * yy) % 256], axis=-1).astype(np.uint8)
        path = tmp_path_factory.mktemp("img") / "synthetic.png"
        assert cv2.imwrite(str(path), cv2.GaussianBlur(image, (0, 0), 4))
        return [path]


def _rgb_224(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def _modelstore_input(rgb: np.ndarray) -> np.ndarray:
    return rgb[None].astype(np.float32)  # [1,H,W,3], raw 0..255


def _neo_input(rgb: np.ndarray) -> np.ndarray:
    norm = (rgb / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return np.ascontiguousarray(norm.transpose(2, 0, 1)[None], dtype=np.float32)


def _input_for(net: TestNet, rgb: np.ndarray) -> np.ndarray:
    return _modelstore_input(rgb) if net.layout == "NHWC" else _neo_input(rgb)


@pytest.fixture(scope="module")
def modelstore(tmp_path_factory: pytest.TempPathFactory) -> TestNet:
    return write_modelstore_like(tmp_path_factory.mktemp("ms") / "DLR-resnet50-x86_64-cpu")


@pytest.fixture(scope="module")
def neo(tmp_path_factory: pytest.TempPathFactory) -> TestNet:
    return write_neo_like(tmp_path_factory.mktemp("neo"))


@pytest.fixture(scope="module", params=["modelstore", "neo"])
def net(request: pytest.FixtureRequest) -> TestNet:
    return request.getfixturevalue(request.param)


def _dlr_input_shape(model, index: int) -> tuple[int, ...]:
    impl = model._impl
    size, dim = ctypes.c_longlong(), ctypes.c_int()
    assert (
        impl._lib.GetDLRInputSizeDim(
            ctypes.byref(impl.handle), index, ctypes.byref(size), ctypes.byref(dim)
        )
        == 0
    )
    shape = (ctypes.c_longlong * dim.value)()
    assert impl._lib.GetDLRInputShape(ctypes.byref(impl.handle), index, shape) == 0
    return tuple(shape)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _top5(out: np.ndarray) -> list[int]:
    return [int(i) for i in np.argsort(-out.ravel(), kind="stable")[:5]]


# -- files ---------------------------------------------------------------------------------------
def test_modelstore_like_files_and_synset(modelstore: TestNet) -> None:
    assert sorted(p.name for p in modelstore.model_dir.iterdir()) == [
        "compiled.meta",
        "compiled.params",
        "compiled.so",
        "compiled_model.json",
        "synset.txt",
    ]
    assert modelstore.labels_path == modelstore.model_dir / "synset.txt"
    text = modelstore.labels_path.read_text()
    assert text.startswith("{0: 'tench, Tinca tinca',\n 1: 'goldfish, Carassius auratus',")
    mapping = ast.literal_eval(text)
    assert mapping == dict(enumerate(modelstore.labels))
    assert len(mapping) == 1000
    assert any("'" in v for v in mapping.values()) and any('"' in v for v in mapping.values())
    meta = json.loads((modelstore.model_dir / "compiled.meta").read_text())
    assert meta["Model"]["Inputs"] == [
        {"name": "data", "dtype": "float32", "shape": [1, SIZE, SIZE, 3]}
    ]
    assert meta["Model"]["Outputs"][0]["shape"] == [1, 1000]


def test_neo_like_files_and_class_index_outside_the_model_dir(neo: TestNet) -> None:
    assert sorted(p.name for p in neo.model_dir.iterdir()) == [
        "compiled.meta",
        "compiled.params",
        "compiled.so",
        "compiled_model.json",
    ]
    assert neo.labels_path.parent == neo.model_dir.parent
    assert neo.labels_path.name == "imagenet_class_index.json"
    index = json.loads(neo.labels_path.read_text())
    assert index["0"] == ["n01440764", "tench"]
    assert [index[str(i)][1] for i in range(1000)] == neo.labels
    assert all(len(v) == 2 and v[0].startswith("n") for v in index.values())


def test_file_names_of_the_neo_like_net_can_be_changed(tmp_path: Path, dlr) -> None:
    net = write_neo_like(
        tmp_path,
        num_classes=10,
        size=32,
        model_dir_name="vgg16",
        stem="deploy_lib",
        graph_file="deploy_graph.json",
        write_meta=False,
    )
    assert sorted(p.name for p in net.model_dir.iterdir()) == [
        "deploy_graph.json",
        "deploy_lib.params",
        "deploy_lib.so",
    ]
    model = dlr.DLRModel(str(net.model_dir), "cpu")
    x = np.random.default_rng(1).standard_normal(net.input_shape).astype(np.float32)
    np.testing.assert_allclose(model.run({"input0": x})[0], net.reference(x), rtol=1e-5, atol=1e-5)


# -- through libdlr ------------------------------------------------------------------------------
def test_dlr_reports_the_declared_input_and_output(net: TestNet, dlr) -> None:
    model = dlr.DLRModel(str(net.model_dir), "cpu")
    assert model.get_input_names() == [net.input_name]
    assert model.get_input_dtypes() == ["float32"]
    assert _dlr_input_shape(model, 0) == net.input_shape
    expected = (1, SIZE, SIZE, 3) if net.layout == "NHWC" else (1, 3, SIZE, SIZE)
    assert net.input_shape == expected
    assert model.get_output_names() == [net.output_name]
    assert [tuple(s) for s in model._impl.output_shapes] == [(1, net.num_classes)]
    assert len(model._impl.weight_names) >= 2


def test_outputs_equal_the_numpy_reference_on_real_photos(
    net: TestNet, dlr, photo_paths: list[Path]
) -> None:
    model = dlr.DLRModel(str(net.model_dir), "cpu")
    for path in photo_paths:
        x = _input_for(net, _rgb_224(path))
        (out,) = model.run({net.input_name: x})
        ref = net.reference(x)
        assert out.shape == ref.shape == (1, net.num_classes)
        np.testing.assert_allclose(
            out, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()), err_msg=path.name
        )
        assert _top5(out) == _top5(ref)


def test_softmax_is_clearly_non_uniform(net: TestNet, photo_paths: list[Path]) -> None:
    top1 = [float(_softmax(net.reference(_input_for(net, _rgb_224(p)))).max()) for p in photo_paths]
    assert all(10 / net.num_classes < p < 0.999 for p in top1), top1
    assert 0.1 < float(np.median(top1)) < 0.95, top1


def test_logit_scale_is_calibrated_for_the_class_count() -> None:
    rng = np.random.default_rng(7)
    for classes in (10, 1000):
        z = rng.standard_normal((400, classes)) * logit_scale(classes)
        top1 = np.exp(z.max(1)) / np.exp(z).sum(1)
        assert 0.35 < float(np.median(top1)) < 0.55
        assert float(np.percentile(top1, 10)) > 0.15 and float(np.percentile(top1, 90)) < 0.95


def test_swapped_channels_and_transposed_layout_change_the_top5(
    net: TestNet, dlr, photo_paths: list[Path]
) -> None:
    model = dlr.DLRModel(str(net.model_dir), "cpu")
    rgb = _rgb_224(photo_paths[0])
    straight = _top5(model.run({net.input_name: _input_for(net, rgb)})[0])
    bgr = _top5(model.run({net.input_name: _input_for(net, rgb[..., ::-1].copy())})[0])
    transposed = _top5(
        model.run({net.input_name: _input_for(net, rgb.transpose(1, 0, 2).copy())})[0]
    )
    assert bgr != straight
    assert transposed != straight


def test_seed_changes_the_weights(tmp_path: Path) -> None:
    a = write_modelstore_like(tmp_path / "a", seed=1, num_classes=10, size=16)
    b = write_modelstore_like(tmp_path / "b", seed=2, num_classes=10, size=16)
    c = write_modelstore_like(tmp_path / "c", seed=1, num_classes=10, size=16)
    x = np.random.default_rng(0).uniform(0, 255, a.input_shape).astype(np.float32)
    assert not np.allclose(a.reference(x), b.reference(x))
    np.testing.assert_array_equal(a.reference(x), c.reference(x))
    assert (tmp_path / "a" / "compiled.params").read_bytes() == (
        tmp_path / "c" / "compiled.params"
    ).read_bytes()


@pytest.mark.parametrize("kind", ["modelstore", "neo"])
def test_probabilities_variant_outputs_softmax_of_the_logits(
    kind: str, tmp_path: Path, dlr, photo_paths: list[Path], request: pytest.FixtureRequest
) -> None:
    logits_net: TestNet = request.getfixturevalue(kind)
    probs_net = write_custom_probabilities_net(tmp_path, kind=kind)
    assert probs_net.output_kind == "probabilities" and logits_net.output_kind == "logits"
    model = dlr.DLRModel(str(probs_net.model_dir), "cpu")
    x = _input_for(probs_net, _rgb_224(photo_paths[0]))
    (out,) = model.run({probs_net.input_name: x})
    assert out.shape == (1, 1000)
    assert abs(float(out.sum()) - 1.0) < 1e-5 and float(out.min()) >= 0.0
    np.testing.assert_allclose(out, probs_net.reference(x), atol=1e-6)
    np.testing.assert_allclose(
        out[0], _softmax(logits_net.reference(x)[0].astype(np.float64)), atol=1e-6
    )
    assert model.get_output_names() == ["softmax0"]


@pytest.mark.parametrize("writer", [write_modelstore_like, write_neo_like])
def test_poison_value_raises_from_run_with_its_message(writer, tmp_path: Path, dlr) -> None:
    net = writer(tmp_path / "m", num_classes=10, size=32, poison_value=123.5)
    assert net.poison_value == 123.5
    model = dlr.DLRModel(str(net.model_dir), "cpu")
    x = np.random.default_rng(3).uniform(0, 1, net.input_shape).astype(np.float32)
    np.testing.assert_allclose(
        model.run({net.input_name: x})[0], net.reference(x), rtol=1e-5, atol=1e-5
    )
    x.flat[0] = 123.5
    with pytest.raises(Exception, match="poison value 123.5 in input element 0"):
        model.run({net.input_name: x})
    x.flat[0] = 0.25  # still usable afterwards
    np.testing.assert_allclose(
        model.run({net.input_name: x})[0], net.reference(x), rtol=1e-5, atol=1e-5
    )


def test_reference_checks_the_input_shape(modelstore: TestNet) -> None:
    with pytest.raises(ValueError, match="input shape"):
        modelstore.reference(np.zeros((1, 3, SIZE, SIZE), np.float32))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 6}, "at least 7"),
        ({"poison_value": float("nan")}, "finite"),
        ({"num_classes": 0}, "at least 1"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_modelstore_like(tmp_path / "m", **kwargs)


def test_unknown_probabilities_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind"):
        write_custom_probabilities_net(tmp_path, kind="tflite")
