from __future__ import annotations

import base64
import json

import pytest

from ggic.messages import (
    MAX_TOP_K,
    ClassificationError,
    ClassificationRequest,
    ClassificationResult,
    ErrorCode,
    ImageSource,
    Prediction,
    SourceKind,
    decode_payload,
    parse_request,
)

LIMIT = 1000


def parse(message):
    return parse_request(message, max_inline_bytes=LIMIT)


def error_of(message) -> ClassificationError:
    with pytest.raises(ClassificationError) as info:
        parse(message)
    return info.value


def test_image_path_request_keeps_id_and_overrides():
    request = parse({"request_id": "r-1", "image_path": "/data/cat.jpg", "top_k": 3,
                     "threshold": 0.25, "reply_to": "local/mine"})
    assert request.request_id == "r-1"
    assert request.source == ImageSource(SourceKind.PATH, path="/data/cat.jpg")
    assert (request.top_k, request.threshold, request.reply_to) == (3, 0.25, "local/mine")


def test_missing_request_id_is_generated_and_unique():
    a = parse({"image_path": "/a.jpg"})
    b = parse({"image_path": "/a.jpg"})
    assert a.request_id and b.request_id and a.request_id != b.request_id


def test_public_samples_image_dir_and_fname_form():
    request = parse({"image_dir": "/imgs/", "fname": "dog.jpg"})
    assert request.source.path == "/imgs/dog.jpg"


def test_inline_image_is_decoded():
    request = parse({"request_id": "x", "image_b64": base64.b64encode(b"\x89PNG...").decode()})
    assert request.source.kind is SourceKind.INLINE
    assert request.source.data == b"\x89PNG..."


def test_tensor_path():
    assert parse({"tensor_path": "/t/x.npy"}).source.kind is SourceKind.TENSOR


@pytest.mark.parametrize(
    "message, code, fragment",
    [
        ([1, 2], ErrorCode.INVALID_REQUEST, "JSON object"),
        ({}, ErrorCode.INVALID_REQUEST, "exactly one"),
        ({"image_path": "/a", "image_b64": "AAAA"}, ErrorCode.INVALID_REQUEST, "exactly one"),
        ({"image_path": "relative.jpg"}, ErrorCode.INVALID_REQUEST, "absolute"),
        ({"image_path": 5}, ErrorCode.INVALID_REQUEST, "non-empty string"),
        ({"image_dir": "/x", "fname": "../etc/passwd"}, ErrorCode.INVALID_REQUEST, "file name"),
        ({"fname": "a.jpg"}, ErrorCode.INVALID_REQUEST, "needs image_dir"),
        ({"image_b64": "not base64!"}, ErrorCode.INVALID_REQUEST, "base64"),
        ({"image_b64": base64.b64encode(b"x" * (LIMIT + 10)).decode()},
         ErrorCode.IMAGE_TOO_LARGE, "MaxImageBytes"),
        ({"image_path": "/a", "top_k": 0}, ErrorCode.INVALID_REQUEST, "top_k"),
        ({"image_path": "/a", "top_k": MAX_TOP_K + 1}, ErrorCode.INVALID_REQUEST, "top_k"),
        ({"image_path": "/a", "top_k": True}, ErrorCode.INVALID_REQUEST, "top_k"),
        ({"image_path": "/a", "threshold": 1.5}, ErrorCode.INVALID_REQUEST, "threshold"),
        ({"image_path": "/a", "reply_to": "local/#"}, ErrorCode.INVALID_REQUEST, "wildcards"),
        ({"image_path": "/a", "topk": 3}, ErrorCode.INVALID_REQUEST, "unknown field"),
        ({"image_path": "/a", "request_id": "bad id with spaces"},
         ErrorCode.INVALID_REQUEST, "request_id"),
    ],
)
def test_invalid_requests_give_typed_errors(message, code, fragment):
    error = error_of(message)
    assert error.code is code
    assert fragment in error.message
    assert error.request_id  # every error can be answered


def test_error_keeps_the_callers_request_id():
    assert error_of({"request_id": "abc", "image_path": "rel"}).request_id == "abc"


def test_binary_payload_must_be_utf8_json():
    assert decode_payload(b'{"a": 1}') == {"a": 1}
    with pytest.raises(ClassificationError) as info:
        decode_payload(b"\xff\xfe")
    assert info.value.code is ErrorCode.INVALID_REQUEST


def test_request_round_trips_through_the_wire_form():
    for source in (ImageSource(SourceKind.PATH, path="/a.jpg"),
                   ImageSource(SourceKind.INLINE, data=b"abc"),
                   ImageSource(SourceKind.TENSOR, path="/t.npy")):
        request = ClassificationRequest("id-1", source, top_k=2, threshold=0.1, reply_to="r/t")
        wire = json.loads(json.dumps(request.to_dict()))
        assert parse(wire) == request


def test_results_round_trip_and_match_the_contract():
    ok = ClassificationResult.success(
        "r", [Prediction("pelican", 144, 0.93)], {"name": "m", "profile": "p"},
        {"load": 1.0, "preprocess": 2.0, "inference": 3.0, "total": 6.5})
    wire = json.loads(json.dumps(ok.to_dict()))
    assert wire == {"request_id": "r", "status": "ok",
                    "predictions": [{"label": "pelican", "class_id": 144, "score": 0.93}],
                    "model": {"name": "m", "profile": "p"},
                    "timing_ms": {"load": 1.0, "preprocess": 2.0, "inference": 3.0,
                                  "total": 6.5}}
    assert ClassificationResult.from_dict(wire) == ok
    err = ClassificationResult.failure("r", ErrorCode.BUSY, "full")
    wire = err.to_dict()
    assert wire == {"request_id": "r", "status": "error",
                    "error": {"code": "BUSY", "message": "full"}}
    assert ClassificationResult.from_dict(wire) == err
