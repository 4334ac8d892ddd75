"""Hostile inputs through the live classifier process over the real IPC: each gets its typed
error at once, none costs memory, and the next good request is answered."""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np
import pytest

import image_bombs
from live_classifier import live_classifier


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("live-inputs")
    (root / "good.png").write_bytes(photos[0].read_bytes())
    with live_classifier(root) as live:
        yield live


def good_request_is_answered(classifier, rid: str) -> None:
    classifier.request({"request_id": rid, "image_path": str(classifier.root / "good.png")})
    (result,) = classifier.take(1)
    assert result["request_id"] == rid and result["status"] == "ok", result


def test_a_fifo_gets_its_typed_error_at_once_and_the_next_request_is_answered(classifier):
    fifo = classifier.root / "camera.jpg"
    os.mkfifo(fifo)
    try:
        classifier.request({"request_id": "fifo", "image_path": str(fifo)})
        (result,) = classifier.take(1)  # before: the only worker blocked in open() for good
        assert result["request_id"] == "fifo" and result["status"] == "error"
        assert result["error"]["code"] == "IMAGE_NOT_FOUND"
        assert "FIFO" in result["error"]["message"]
        good_request_is_answered(classifier, "after-fifo")
    finally:
        # release a worker blocked in open() (the old behaviour), so the fixture can stop;
        # no reader (ENXIO): nothing is blocked
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_bombs_and_hostile_requests_get_typed_errors_without_memory(classifier):
    root = classifier.root
    files = {"webp": image_bombs.webp_bomb(), "tiff": image_bombs.tiff_bomb(),
             "jp2": image_bombs.jpeg2000_bomb()}
    for name, data in files.items():
        (root / f"bomb.{name}").write_bytes(data)
    huge = root / "huge.npy"
    header = repr({"descr": "<f4", "fortran_order": False, "shape": (100_000, 100_000, 100)})
    huge.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                     + header.encode() + bytes(64))
    np.save(root / "ok.npy", np.zeros((3, 224, 224), np.float32))
    good_request_is_answered(classifier, "warm")
    before = classifier.peak_rss_kib()
    expected = {
        "webp": "IMAGE_TOO_LARGE", "tiff": "UNSUPPORTED_IMAGE", "jp2": "UNSUPPORTED_IMAGE",
        "huge": "BAD_TENSOR", "long": "INVALID_REQUEST", "surrogate": "INVALID_REQUEST",
    }
    for name in files:
        classifier.request({"request_id": name, "image_path": str(root / f"bomb.{name}")})
    classifier.request({"request_id": "huge", "tensor_path": str(huge)})
    classifier.request({"request_id": "long", "image_path": "/" + "a/" * 200_000})
    surrogate = json.dumps({"request_id": "surrogate", "image_path": str(root) + "/\ud800"})
    classifier.request(surrogate.encode("ascii"))  # JSON escapes: a lone surrogate when parsed
    classifier.request({"request_id": "tensor", "tensor_path": str(root / "ok.npy")})
    got = {r["request_id"]: r for r in classifier.take(len(expected) + 1)}
    for rid, code in expected.items():
        assert got[rid]["status"] == "error" and got[rid]["error"]["code"] == code, got[rid]
    assert "AcceptedImageFormats" in got["tiff"]["error"]["message"]
    assert got["tensor"]["status"] == "ok", got["tensor"]
    assert classifier.peak_rss_kib() - before < 50 * 1024  # before: ~1 GB per bomb
    good_request_is_answered(classifier, "after-bombs")
    assert "INTERNAL_ERROR" not in classifier.log.read_text()
