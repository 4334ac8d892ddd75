"""Reading a request's file never hangs, never escapes AllowedImageDirs, never reaches
INTERNAL_ERROR: real FIFOs, sockets, devices, symlink races, hostile paths and .npy headers."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ggic.classifier.inputs import InputLimits, load_tensor, read_file
from ggic.config import ClassifierConfig, ConfigError, config_from_mapping
from ggic.messages import (
    MAX_PATH_BYTES,
    MAX_PATH_COMPONENTS,
    ClassificationError,
    ErrorCode,
    parse_request,
)

SHAPE = (1, 3, 8, 8)


def code_of(fn, *args) -> ErrorCode:
    with pytest.raises(ClassificationError) as info:
        fn(*args)
    return info.value.code


def read_in_thread(path: Path, limits: InputLimits, unblock: Path | None = None):
    """read_file in a thread; (outcome, still_running). A blocked read is released by opening
    ``unblock`` (the FIFO) for writing, so a failing test fails instead of hanging."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(read_file(str(path), limits))
        except ClassificationError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    blocked = thread.is_alive()
    if blocked and unblock is not None:
        fd = os.open(unblock, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(10)
    return (outcome[0] if outcome else None), blocked


def test_a_fifo_is_refused_at_once_without_blocking(tmp_path):
    fifo = tmp_path / "camera.jpg"
    os.mkfifo(fifo)
    outcome, blocked = read_in_thread(fifo, InputLimits.create([str(tmp_path)], 1000, 100),
                                      unblock=fifo)
    assert not blocked, "reading a FIFO blocked"
    assert isinstance(outcome, ClassificationError), outcome
    assert outcome.code is ErrorCode.IMAGE_NOT_FOUND and "FIFO" in outcome.message


def test_sockets_devices_and_directories_are_refused(tmp_path):
    limits = InputLimits.create([], 1000, 100)
    sock_path = tmp_path / "s.jpg"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    try:
        for path, kind in ((sock_path, "socket"), (Path("/dev/zero"), "character device"),
                           (tmp_path, "directory")):
            outcome, blocked = read_in_thread(path, limits)
            assert not blocked
            assert isinstance(outcome, ClassificationError), (path, outcome)
            assert outcome.code is ErrorCode.IMAGE_NOT_FOUND and kind in outcome.message
    finally:
        server.close()


def test_a_symlink_to_a_fifo_is_refused_too(tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    (tmp_path / "link.jpg").symlink_to(fifo)
    outcome, blocked = read_in_thread(tmp_path / "link.jpg", InputLimits(), unblock=fifo)
    assert not blocked and isinstance(outcome, ClassificationError)
    assert outcome.code is ErrorCode.IMAGE_NOT_FOUND


# Swaps allowed/sub between the real directory and a symlink to the outside directory, as
# fast as it can, in its own process (on its own core), until the stop file appears.
FLIPPER = """
import os, sys
sub, parked, outside, stop = sys.argv[1:5]
open(stop + ".started", "w").close()
while not os.path.exists(stop):
    os.rename(sub, parked)
    os.symlink(outside, sub)
    os.unlink(sub)
    os.rename(parked, sub)
"""


def test_swapping_a_directory_for_a_symlink_never_escapes_the_allowed_dirs(tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / "sub" / "img.jpg").write_bytes(b"inside")
    (outside / "img.jpg").write_bytes(b"SECRET")
    limits = InputLimits.create([str(allowed)], 1000, 100)
    stop = tmp_path / "stop"
    flipper = subprocess.Popen([sys.executable, "-c", FLIPPER, str(allowed / "sub"),
                                str(allowed / "parked"), str(outside), str(stop)])
    seen: Counter = Counter()
    try:
        while not Path(str(stop) + ".started").exists():
            assert flipper.poll() is None
        attempts = 0
        while attempts < 20_000 or (seen["inside"] < 100 and attempts < 200_000):
            attempts += 1
            try:
                data = read_file(str(allowed / "sub" / "img.jpg"), limits)
            except ClassificationError as exc:
                seen[exc.code.value] += 1
            except Exception as exc:  # would be INTERNAL_ERROR: the path vanished mid-check
                seen[f"untyped {type(exc).__name__}"] += 1
            else:
                seen["outside" if data == b"SECRET" else "inside"] += 1
    finally:
        stop.touch()
        flipper.wait(10)
    assert seen["outside"] == 0, seen
    assert seen["inside"] > 0, seen  # the race was really run
    assert set(seen) <= {"inside", "IMAGE_NOT_FOUND", "PATH_NOT_ALLOWED"}, seen


def test_outside_paths_are_not_allowed_whether_or_not_they_exist(tmp_path):
    """No oracle: the answer for a path outside AllowedImageDirs does not say whether it
    exists (and nothing outside is opened)."""
    (tmp_path / "allowed").mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    limits = InputLimits.create([str(tmp_path / "allowed")], 100, 100)
    for name in ("secret.jpg", "missing.jpg", "allowed/../secret.jpg", "allowed/../missing"):
        assert code_of(read_file, str(tmp_path / name), limits) is ErrorCode.PATH_NOT_ALLOWED
    assert code_of(read_file, str(tmp_path / "allowed" / "missing.jpg"),
                   limits) is ErrorCode.IMAGE_NOT_FOUND


def test_a_long_symlink_chain_is_a_typed_error(tmp_path):
    (tmp_path / "target.jpg").write_bytes(b"x")
    previous = "target.jpg"
    for i in range(1100):
        (tmp_path / f"l{i}").symlink_to(previous)
        previous = f"l{i}"
    limits = InputLimits.create([str(tmp_path)], 100, 100)
    assert code_of(read_file, str(tmp_path / previous), limits) is ErrorCode.IMAGE_NOT_FOUND


@pytest.mark.parametrize("path", [
    "/tmp/\ud800.jpg", "/tmp/\udc80.jpg", "/tmp/a\x00b.jpg",
    "/" + "a" * (MAX_PATH_BYTES + 1), "/" + "a/" * (MAX_PATH_COMPONENTS + 1),
    "/" + "a/" * 200_000,  # 400 KB: took seconds of realpath() before
])
def test_hostile_path_text_is_an_invalid_request(path):
    for key in ("image_path", "tensor_path"):
        with pytest.raises(ClassificationError) as info:
            parse_request({"request_id": "r", key: path}, max_inline_bytes=100)
        assert info.value.code is ErrorCode.INVALID_REQUEST and info.value.request_id == "r"
    assert code_of(read_file, path, InputLimits()) is ErrorCode.INVALID_REQUEST


def test_hostile_fname_is_an_invalid_request():
    for fname in ("\ud800.jpg", "a" * MAX_PATH_BYTES):
        with pytest.raises(ClassificationError) as info:
            parse_request({"image_dir": "/tmp", "fname": fname}, max_inline_bytes=100)
        assert info.value.code is ErrorCode.INVALID_REQUEST


def test_paths_at_the_limits_are_accepted():
    longest = "/" + "a" * (MAX_PATH_BYTES - 1)
    assert parse_request({"image_path": longest}, max_inline_bytes=1).source.path == longest
    deepest = "/a" * MAX_PATH_COMPONENTS
    assert parse_request({"image_path": deepest}, max_inline_bytes=1).source.path == deepest
    # not there: the kernel says so, a typed error
    assert code_of(read_file, deepest, InputLimits()) is ErrorCode.IMAGE_NOT_FOUND


# --- .npy tensors: the header is checked before anything is allocated ---------------------


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npy_claiming(shape: tuple[int, ...], descr: str = "<f4", version: bytes = b"\x01\x00",
                 payload: bytes = b"\x00" * 64) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    size = len(header).to_bytes(2 if version == b"\x01\x00" else 4, "little")
    return b"\x93NUMPY" + version + size + header + payload


def npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros(SHAPE, np.float32))
    return buffer.getvalue()


def zip_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("data", [
    npy_claiming((100_000, 100_000, 100)),               # 3.7 TiB claimed
    npy_claiming((1, 3, 8, 8), descr="<f8", payload=b"\x00" * 10),  # truncated
    npy_claiming((1, 3, 8, 8), payload=b"\x00" * (4 * 192 + 1)),    # trailing bytes
    npy_claiming((1, 3, 8, 8), descr="|O"),               # objects
    npy_claiming((1, 3, 8, 8), descr="<c8"),              # complex
    npy_claiming((1, 3, 8, 8), descr="[('a', '<f4')]"),   # structured
    npy_claiming((1, 3, 8, 8), version=b"\x09\x00"),
    npy_claiming((-1, 3, 8, 8)),
    npz(), zip_of("x.npy", npy(np.zeros(SHAPE, np.float32))), b"PK\x03\x04garbage",
    b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 65535,           # header too long
    b"\x93NUMPY\x01\x00\x40\x00" + b"(" * 64,              # not a literal
    b"\x93NUMPY\x02\x00\x00\x10\x00\x00" + b"[" * 4096,     # nesting
    b"\x93NUMPY\x01",                                      # truncated magic
])
def test_hostile_npy_files_are_bad_tensors(data):
    assert code_of(load_tensor, data, SHAPE, "t") is ErrorCode.BAD_TENSOR


def test_npy_shapes_with_and_without_batch_and_fortran_order():
    x = np.arange(192, dtype=np.int16).reshape(3, 8, 8)
    np.testing.assert_array_equal(load_tensor(npy(x), SHAPE, "t")[0], x.astype(np.float32))
    f = np.asfortranarray(x[np.newaxis].astype(">f8"))
    np.testing.assert_array_equal(load_tensor(npy(f), SHAPE, "t"), f.astype(np.float32))
    assert code_of(load_tensor, npy(x.reshape(1, 1, 3, 8, 8)), SHAPE, "t") is \
        ErrorCode.BAD_TENSOR


# --- AcceptedImageFormats ---------------------------------------------------------------


def test_accepted_image_formats_configuration():
    config = config_from_mapping(ClassifierConfig, {"AcceptedImageFormats": "jpeg, WEBP"})
    assert config.accepted_image_formats == ("JPEG", "WebP")
    limits = InputLimits.from_config(config)
    assert [f.value for f in limits.accepted_formats] == ["JPEG", "WebP"]
    assert ClassifierConfig().accepted_image_formats == ("JPEG", "PNG", "BMP", "WebP")
    for bad in (["TIFF"], [], "", ["JPEG", "GIF"]):
        with pytest.raises(ConfigError) as info:
            config_from_mapping(ClassifierConfig, {"AcceptedImageFormats": bad})
        assert "AcceptedImageFormats" in str(info.value)
