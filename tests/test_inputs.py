from __future__ import annotations

import io
import os

import numpy as np
import pytest

from ggic.classifier.inputs import InputLimits, check_allowed, load_tensor, read_file
from ggic.messages import ClassificationError, ErrorCode


def code_of(fn, *args):
    with pytest.raises(ClassificationError) as info:
        fn(*args)
    return info.value.code


def test_allowed_dirs_follow_symlinks(tmp_path):
    allowed = tmp_path / "allowed"
    secret = tmp_path / "secret"
    allowed.mkdir()
    secret.mkdir()
    (secret / "s.jpg").write_bytes(b"x")
    (allowed / "link.jpg").symlink_to(secret / "s.jpg")
    (allowed / "ok.jpg").write_bytes(b"y")
    limits = InputLimits.create([str(allowed)], 100, 100)
    assert check_allowed(str(allowed / "ok.jpg"), limits) == os.path.realpath(allowed / "ok.jpg")
    assert code_of(check_allowed, str(allowed / "link.jpg"), limits) is ErrorCode.PATH_NOT_ALLOWED
    assert code_of(check_allowed, str(allowed / ".." / "secret" / "s.jpg"),
                   limits) is ErrorCode.PATH_NOT_ALLOWED
    # a sibling whose name starts like the allowed dir is not inside it
    (tmp_path / "allowed2").mkdir()
    (tmp_path / "allowed2" / "x.jpg").write_bytes(b"z")
    assert code_of(check_allowed, str(tmp_path / "allowed2" / "x.jpg"),
                   limits) is ErrorCode.PATH_NOT_ALLOWED


def test_read_file_errors(tmp_path):
    limits = InputLimits.create([], 10, 100)
    assert code_of(read_file, str(tmp_path / "missing.jpg"), limits) is ErrorCode.IMAGE_NOT_FOUND
    assert code_of(read_file, str(tmp_path), limits) is ErrorCode.IMAGE_NOT_FOUND
    big = tmp_path / "big.jpg"
    big.write_bytes(b"x" * 11)
    assert code_of(read_file, str(big), limits) is ErrorCode.IMAGE_TOO_LARGE
    small = tmp_path / "small.jpg"
    small.write_bytes(b"x" * 10)
    assert read_file(str(small), limits) == b"x" * 10


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_tensor_is_checked_and_batched():
    x = np.random.default_rng(0).normal(size=(3, 8, 8)).astype(np.float64)
    got = load_tensor(npy(x), (1, 3, 8, 8), "t")
    assert got.dtype == np.float32 and got.shape == (1, 3, 8, 8)
    np.testing.assert_allclose(got[0], x.astype(np.float32))


@pytest.mark.parametrize("data", [
    b"not npy",
    npy(np.zeros((1, 3, 8, 9), np.float32)),
    npy(np.array([[[[np.nan]]]], np.float32)),
    npy(np.array(["a", "b"])),
])
def test_bad_tensors(data):
    assert code_of(load_tensor, data, (1, 3, 8, 8), "t") is ErrorCode.BAD_TENSOR


def test_pickled_object_arrays_are_refused():
    assert code_of(load_tensor, npy(np.array([{"a": 1}], dtype=object)), (1,),
                   "t") is ErrorCode.BAD_TENSOR
