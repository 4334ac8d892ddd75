"""The contract every registered inference backend keeps, run for EACH backend in the registry
through its real library (libdlr.so of dlr==1.6.0, onnxruntime) on a real model directory
written by ggic.modelgen: the same ModelStore-like network (same weights, same numpy
reference) as a compiled DLR model and as an ONNX model, fed real photos decoded by OpenCV.

A backend added to the registry without a contract model here fails
``test_every_registered_backend_has_a_contract_model``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ggic.classifier.backends.base import BackendClosedError, ModelLoadError, TensorSpec
from ggic.classifier.backends.registry import BACKENDS, backend_class, choose_backend
from ggic.classifier.decode import decode_image
from ggic.classifier.model import load_model
from ggic.classifier.preprocess import preprocess
from ggic.classifier.profiles import resolve_profile
from ggic.modelgen.onnx_export import write_modelstore_like_onnx
from ggic.modelgen.testnets import TestNet, write_modelstore_like

SEED = 11
SHAPE = (1, 224, 224, 3)

#: backend name -> writer of the contract's model directory (the same network for all).
MODEL_WRITERS: dict[str, Callable[..., TestNet]] = {
    "dlr": write_modelstore_like,
    "onnx": write_modelstore_like_onnx,
}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def _break_dlr(directory: Path) -> str:
    _truncate(directory / "compiled.so")
    return r"DLR could not load the model in .*compiled for this device"


def _break_onnx(directory: Path) -> str:
    _truncate(directory / "model.onnx")
    return r"ONNX Runtime could not load .*model\.onnx.*complete ONNX model"


def _incomplete_dlr(directory: Path) -> str:
    (directory / "compiled.params").unlink()
    return r"is not a compiled DLR model: no \*\.params"


def _incomplete_onnx(directory: Path) -> str:
    (directory / "second.onnx").write_bytes((directory / "model.onnx").read_bytes())
    return r"is not an ONNX model: it needs exactly one \*\.onnx file \(found model\.onnx, " \
        r"second\.onnx\)"


#: backend name -> (corrupt a file, remove/add one): each returns the message expected.
BREAKERS: dict[str, tuple[Callable[[Path], str], Callable[[Path], str]]] = {
    "dlr": (_break_dlr, _incomplete_dlr),
    "onnx": (_break_onnx, _incomplete_onnx),
}


def test_every_registered_backend_has_a_contract_model():
    assert set(MODEL_WRITERS) == set(BACKENDS) == set(BREAKERS)


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def net(request, tmp_path_factory) -> TestNet:
    directory = tmp_path_factory.mktemp(request.param) / "model"
    written = MODEL_WRITERS[request.param](directory, seed=SEED)
    written.backend = request.param  # type: ignore[attr-defined]
    return written


@pytest.fixture(scope="module")
def images(photos) -> list[np.ndarray]:
    return [decode_image(p.read_bytes(), max_pixels=50_000_000, what=p.name) for p in photos]


def _copy(net: TestNet, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    target.mkdir()
    for path in net.model_dir.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_auto_picks_the_backend_and_reads_the_signature(net):
    cls = choose_backend("auto", net.model_dir)
    assert cls is backend_class(net.backend) and cls.name == net.backend
    inspected = cls.inspect(net.model_dir)  # without loading the library
    backend = cls.open(net.model_dir)
    try:
        assert backend.signature.inputs == (TensorSpec("data", SHAPE, "float32"),)
        assert [(o.shape, o.dtype) for o in backend.signature.outputs] == [((1, 1000),
                                                                            "float32")]
        assert inspected.signature.inputs == backend.signature.inputs
        assert inspected.backend == net.backend
        assert inspected.directory == net.model_dir
    finally:
        backend.close()


def test_real_photos_give_the_references_answer(net, images):
    model = load_model(net.model_dir, resolve_profile("auto"), backend=net.backend)
    try:
        assert model.backend.name == net.backend
        assert model.profile.name == "modelstore-resnet50"
        for image in images:
            tensor = preprocess(image, model.profile)
            got = model.run(tensor)
            want = net.reference(tensor)
            assert got.shape == (1, 1000) and got.dtype == np.float32
            assert int(got.argmax()) == int(want.argmax())
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    finally:
        model.close()


def test_run_returns_every_output_in_order(net):
    backend = backend_class(net.backend).open(net.model_dir)
    try:
        x = np.random.default_rng(1).uniform(0, 255, SHAPE).astype(np.float32)
        outputs = backend.run({"data": x})
        assert len(outputs) == len(backend.signature.outputs) == 1
        assert isinstance(outputs[0], np.ndarray)
        np.testing.assert_allclose(outputs[0], net.reference(x), atol=1e-4, rtol=1e-4)
    finally:
        backend.close()


@pytest.mark.parametrize("inputs, message", [
    ({"data": np.zeros((1, 224, 224), np.float32)},
     r"input data has shape \[1, 224, 224\]; the model takes \[1, 224, 224, 3\]"),
    ({"data": np.zeros((1, 3, 224, 224), np.float32)},
     r"input data has shape \[1, 3, 224, 224\]; the model takes \[1, 224, 224, 3\]"),
    ({"data": np.zeros(SHAPE, np.float64)}, r"input data is float64; the model takes float32"),
    ({"image": np.zeros(SHAPE, np.float32)}, r"the model takes inputs data; got image"),
    ({}, r"the model takes inputs data; got none"),
])
def test_wrong_inputs_are_refused_clearly(net, inputs, message):
    backend = backend_class(net.backend).open(net.model_dir)
    try:
        with pytest.raises(ValueError, match=message):
            backend.run(inputs)
        # and the backend still works afterwards
        x = np.full(SHAPE, 128.0, np.float32)
        np.testing.assert_allclose(backend.run({"data": x})[0], net.reference(x), atol=1e-4,
                                   rtol=1e-4)
    finally:
        backend.close()


def test_a_thread_count_hint_keeps_the_answers(net):
    backend = backend_class(net.backend).open(net.model_dir)
    try:
        backend.set_threads(1)
        x = np.random.default_rng(4).uniform(0, 255, SHAPE).astype(np.float32)
        np.testing.assert_allclose(backend.run({"data": x})[0], net.reference(x), atol=1e-4,
                                   rtol=1e-4)
    finally:
        backend.close()


def test_run_after_close_is_a_clear_error(net):
    backend = backend_class(net.backend).open(net.model_dir)
    backend.close()
    backend.close()  # idempotent
    assert backend.closed
    with pytest.raises(BackendClosedError, match=rf"the {net.backend} model .* is closed"):
        backend.run({"data": np.zeros(SHAPE, np.float32)})


@pytest.mark.parametrize("which", [0, 1], ids=["corrupt-file", "wrong-files"])
def test_a_broken_model_directory_is_a_model_load_error_that_says_why(net, tmp_path, which):
    broken = _copy(net, tmp_path)
    message = BREAKERS[net.backend][which](broken)
    with pytest.raises(ModelLoadError, match=message):
        load_model(broken, resolve_profile("auto"), backend=net.backend)


def test_concurrent_runs_are_serialised_not_mixed_up(net):
    """Thread confinement: the libraries are not thread-safe; run() takes the backend's lock,
    so two threads running at once still each get their own input's answer."""
    backend = backend_class(net.backend).open(net.model_dir)
    rng = np.random.default_rng(2)
    inputs = [rng.uniform(0, 255, SHAPE).astype(np.float32) for _ in range(2)]
    wants = [net.reference(x) for x in inputs]
    failures: list[str] = []

    def worker(i: int) -> None:
        for n in range(15):
            got = backend.run({"data": inputs[i]})[0]
            if not np.allclose(got, wants[i], atol=1e-4, rtol=1e-4):
                failures.append(f"thread {i} run {n}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert failures == []
    finally:
        backend.close()
