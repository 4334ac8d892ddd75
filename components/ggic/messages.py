"""The message contract (v1) between requesters and the classifier.

Requests arrive on the request topic (``local/inference``) as JSON, results leave on the
result topic (``local/result``) or the request's ``reply_to``. Every request gets exactly one
result: ``status: "ok"`` with predictions, or ``status: "error"`` with a typed error.

Whatever arrives, parsing ends in a request or a :class:`ClassificationError` with a typed code
(never another exception), and an error result's message is one printable line of bounded
length that quotes client values escaped and cut (:mod:`ggic.log_text`), so it always fits an
IPC frame.

This module is pure: parsing, validation and encoding, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .log_text import escape, json_type, quote
from .topic_names import publish_topic_problem

CONTRACT_VERSION = 1

#: Longest request id we echo back; longer ids are refused as INVALID_REQUEST.
MAX_REQUEST_ID_CHARS = 128
#: Upper bound of a per-request ``top_k`` override.
MAX_TOP_K = 100
#: Longest file path accepted (UTF-8 bytes; Linux's PATH_MAX) and most components in it, both
#: checked before the path is resolved.
MAX_PATH_BYTES = 4096
MAX_PATH_COMPONENTS = 256
#: Longest error message in a result (client values in it are cut much shorter).
MAX_ERROR_MESSAGE_CHARS = 1000
#: Unknown field names an INVALID_REQUEST error lists.
MAX_LISTED_FIELDS = 5

#: Matched with ``fullmatch`` (``$`` alone would let a trailing newline through).
_REQUEST_ID_RE = re.compile(rf"[A-Za-z0-9._:@/+=-]{{1,{MAX_REQUEST_ID_CHARS}}}")
_IMAGE_SOURCE_KEYS = ("image_path", "image_dir", "image_b64", "tensor_path")
_KNOWN_REQUEST_KEYS = frozenset(
    ("request_id", "fname", "top_k", "threshold", "reply_to", *_IMAGE_SOURCE_KEYS)
)


class ErrorCode(str, enum.Enum):
    """Typed error codes carried by error results."""

    INVALID_REQUEST = "INVALID_REQUEST"
    IMAGE_NOT_FOUND = "IMAGE_NOT_FOUND"
    PATH_NOT_ALLOWED = "PATH_NOT_ALLOWED"
    UNSUPPORTED_IMAGE = "UNSUPPORTED_IMAGE"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    BAD_TENSOR = "BAD_TENSOR"
    BUSY = "BUSY"
    MODEL_ERROR = "MODEL_ERROR"
    #: The classifier is shutting down and no longer accepts requests.
    UNAVAILABLE = "UNAVAILABLE"
    #: A bug on our side; the message says what happened.
    INTERNAL_ERROR = "INTERNAL_ERROR"


class ClassificationError(Exception):
    """An error that becomes an error result for one request."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"


class SourceKind(str, enum.Enum):
    PATH = "path"
    INLINE = "inline"
    TENSOR = "tensor"


@dataclass(frozen=True)
class ImageSource:
    """Where the request's input comes from."""

    kind: SourceKind
    path: str | None = None
    data: bytes | None = None

    def describe(self) -> str:
        if self.kind is SourceKind.INLINE:
            return f"inline image ({len(self.data or b'')} bytes)"
        return str(self.path)


@dataclass(frozen=True)
class ClassificationRequest:
    request_id: str
    source: ImageSource
    top_k: int | None = None
    threshold: float | None = None
    reply_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Encode as the wire form (used by requesters)."""
        out: dict[str, Any] = {"request_id": self.request_id}
        if self.source.kind is SourceKind.PATH:
            out["image_path"] = self.source.path
        elif self.source.kind is SourceKind.TENSOR:
            out["tensor_path"] = self.source.path
        else:
            out["image_b64"] = base64.b64encode(self.source.data or b"").decode("ascii")
        if self.top_k is not None:
            out["top_k"] = self.top_k
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.reply_to is not None:
            out["reply_to"] = self.reply_to
        return out


@dataclass(frozen=True)
class Prediction:
    label: str
    class_id: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "class_id": self.class_id, "score": round(self.score, 6)}


@dataclass(frozen=True)
class ClassificationResult:
    """One result: ``ok`` with predictions, or ``error`` with a code and message."""

    request_id: str
    status: str
    predictions: tuple[Prediction, ...] = ()
    model: Mapping[str, str] = field(default_factory=dict)
    timing_ms: Mapping[str, float] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def success(
        cls,
        request_id: str,
        predictions: list[Prediction] | tuple[Prediction, ...],
        model: Mapping[str, str],
        timing_ms: Mapping[str, float],
    ) -> ClassificationResult:
        return cls(request_id, "ok", tuple(predictions), dict(model), dict(timing_ms))

    @classmethod
    def failure(cls, request_id: str, code: ErrorCode | str, message: str) -> ClassificationResult:
        """An error result; its message is escaped to one printable line and cut to
        MAX_ERROR_MESSAGE_CHARS, whatever client text it quotes."""
        code_value = code.value if isinstance(code, ErrorCode) else str(code)
        return cls(request_id, "error", error_code=code_value,
                   error_message=escape(message, MAX_ERROR_MESSAGE_CHARS))

    @classmethod
    def from_error(cls, error: ClassificationError, request_id: str) -> ClassificationResult:
        return cls.failure(error.request_id or request_id, error.code, error.message)

    def to_dict(self) -> dict[str, Any]:
        if not self.ok:
            return {
                "request_id": self.request_id,
                "status": "error",
                "error": {"code": self.error_code, "message": self.error_message},
            }
        return {
            "request_id": self.request_id,
            "status": "ok",
            "predictions": [p.to_dict() for p in self.predictions],
            "model": dict(self.model),
            "timing_ms": {k: round(v, 3) for k, v in self.timing_ms.items()},
        }

    @classmethod
    def from_dict(cls, data: Any) -> ClassificationResult:
        """Decode a result received on the result topic (used by requesters). Raises
        ValueError for anything that is not a well-formed result: wrong types, a missing
        error code or message, more than MAX_TOP_K predictions, non-finite numbers."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a result must be a JSON object, got {json_type(data)}")
        request_id = data.get("request_id")
        status = data.get("status")
        if not isinstance(request_id, str) or status not in ("ok", "error"):
            raise ValueError("a result needs a string request_id and status 'ok' or 'error'")
        if status == "error":
            error = data.get("error")
            if not isinstance(error, Mapping) or not isinstance(error.get("code"), str) \
                    or not isinstance(error.get("message"), str):
                raise ValueError("an error result needs an error object with string code and "
                                 "message")
            return cls.failure(request_id, error["code"], error["message"])
        raw_predictions = data.get("predictions", [])
        if not isinstance(raw_predictions, list) or len(raw_predictions) > MAX_TOP_K:
            raise ValueError(f"predictions must be an array of at most {MAX_TOP_K}")
        predictions = tuple(_prediction_from_dict(p) for p in raw_predictions)
        model = data.get("model", {})
        if not isinstance(model, Mapping) or not all(
                isinstance(v, str) for v in model.values()):
            raise ValueError("model must be an object of strings")
        timing = data.get("timing_ms", {})
        if not isinstance(timing, Mapping) or not all(_is_number(v) for v in timing.values()):
            raise ValueError("timing_ms must be an object of numbers")
        return cls.success(request_id, predictions, {str(k): v for k, v in model.items()},
                           {str(k): float(v) for k, v in timing.items()})


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _prediction_from_dict(data: Any) -> Prediction:
    if not isinstance(data, Mapping):
        raise ValueError("a prediction must be an object")
    label, class_id, score = data.get("label"), data.get("class_id"), data.get("score")
    if not isinstance(label, str) or not isinstance(class_id, int) \
            or isinstance(class_id, bool) or not _is_number(score):
        raise ValueError("a prediction needs a string label, an integer class_id and a "
                         "finite number score")
    return Prediction(label, class_id, float(score))


def new_request_id() -> str:
    return uuid.uuid4().hex


def decode_payload(payload: Any) -> Any:
    """Turn an IPC message body into a JSON value, or raise ClassificationError
    (INVALID_REQUEST) whatever the body holds.

    ``jsonMessage`` bodies arrive already decoded (a JSON string is decoded once more: a
    requester may send its JSON as text); ``binaryMessage`` bodies arrive as bytes and must
    hold UTF-8 JSON.
    """
    if isinstance(payload, (bytes, bytearray, memoryview)):
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeError as exc:
            raise ClassificationError(
                ErrorCode.INVALID_REQUEST, f"binary message is not UTF-8: {exc}") from None
        except MemoryError:
            raise ClassificationError(
                ErrorCode.INVALID_REQUEST, "binary message is too large to decode") from None
        return _loads(text, "binary message")
    if isinstance(payload, str):
        return _loads(payload, "message")
    return payload


def _loads(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise ClassificationError(
            ErrorCode.INVALID_REQUEST, f"{what} nests JSON arrays/objects too deeply") from None
    except MemoryError:
        raise ClassificationError(
            ErrorCode.INVALID_REQUEST, f"{what} is too large to decode") from None
    except ValueError as exc:  # JSONDecodeError, too many digits, ...
        raise ClassificationError(
            ErrorCode.INVALID_REQUEST, f"{what} is not JSON: {escape(str(exc))}") from None


def request_id_of(message: Any) -> str | None:
    """The request id a (possibly invalid) message carries, if it carries a usable one."""
    if isinstance(message, Mapping):
        rid = message.get("request_id")
        if isinstance(rid, str) and _REQUEST_ID_RE.fullmatch(rid):
            return rid
    return None


def parse_request(message: Any, *, max_inline_bytes: int) -> ClassificationRequest:
    """Validate one request message and return it, or raise ClassificationError.

    The error carries the request id when the message had a usable one, otherwise a fresh id
    (which is then the id of the error result, so every request still gets exactly one result).
    """
    rid = request_id_of(message) or new_request_id()

    def fail(code: ErrorCode, text: str) -> ClassificationError:
        return ClassificationError(code, text, rid)

    try:
        return _parse_fields(message, rid, max_inline_bytes, fail)
    except ClassificationError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        # input no check foresaw (UnicodeError is a ValueError): still a typed answer
        raise fail(ErrorCode.INVALID_REQUEST,
                   f"unreadable request ({type(exc).__name__}: {escape(str(exc))})") from None


def _parse_fields(message: Any, rid: str, max_inline_bytes: int,
                  fail: Any) -> ClassificationRequest:
    if not isinstance(message, Mapping):
        raise fail(ErrorCode.INVALID_REQUEST, "a request must be a JSON object")
    if "request_id" in message and request_id_of(message) is None:
        raise fail(
            ErrorCode.INVALID_REQUEST,
            f"request_id must be 1-{MAX_REQUEST_ID_CHARS} characters "
            "of letters, digits and ._:@/+=-",
        )
    unknown = [k for k in message if k not in _KNOWN_REQUEST_KEYS]
    if unknown:
        listed = ", ".join(quote(str(k), 60) for k in unknown[:MAX_LISTED_FIELDS])
        more = len(unknown) - MAX_LISTED_FIELDS
        raise fail(ErrorCode.INVALID_REQUEST, f"unknown field(s): {listed}"
                   + (f" and {more} more" if more > 0 else ""))

    source = _parse_source(message, max_inline_bytes, fail)
    top_k = _parse_top_k(message.get("top_k"), fail)
    threshold = _parse_threshold(message.get("threshold"), fail)
    reply_to = message.get("reply_to")
    if reply_to is not None:
        problem = publish_topic_problem(reply_to)
        if problem is not None:
            raise fail(ErrorCode.INVALID_REQUEST, f"reply_to {problem}")
    return ClassificationRequest(rid, source, top_k, threshold, reply_to)


def _parse_source(message: Mapping[str, Any], max_inline_bytes: int, fail: Any) -> ImageSource:
    given = [k for k in _IMAGE_SOURCE_KEYS if message.get(k) is not None]
    if "fname" in message and "image_dir" not in given:
        raise fail(ErrorCode.INVALID_REQUEST, "fname needs image_dir")
    if len(given) != 1:
        raise fail(
            ErrorCode.INVALID_REQUEST,
            "give exactly one of image_path, image_dir + fname, image_b64, tensor_path"
            + (f" (got {', '.join(given)})" if given else ""),
        )
    key = given[0]
    value = message[key]
    if key == "image_b64":
        return ImageSource(SourceKind.INLINE, data=_decode_b64(value, max_inline_bytes, fail))
    if not isinstance(value, str) or not value:
        raise fail(ErrorCode.INVALID_REQUEST, f"{key} must be a non-empty string")
    if key == "image_dir":
        fname = message.get("fname")
        if not isinstance(fname, str) or not fname or "/" in fname or fname in (".", ".."):
            raise fail(ErrorCode.INVALID_REQUEST, "fname must be a file name (no '/')")
        value = value.rstrip("/") + "/" + fname
    problem = path_problem(value)
    if problem is not None:
        raise fail(ErrorCode.INVALID_REQUEST, f"{key} {problem}")
    if not value.startswith("/"):
        raise fail(ErrorCode.INVALID_REQUEST, f"{key} must be an absolute path, got {value!r}")
    kind = SourceKind.TENSOR if key == "tensor_path" else SourceKind.PATH
    return ImageSource(kind, path=value)


def path_problem(path: str) -> str | None:
    """What makes ``path`` unusable as a file path before anything resolves it (a NUL, a lone
    surrogate, above MAX_PATH_BYTES or MAX_PATH_COMPONENTS), or None. Cheap for any length."""
    if "\x00" in path:
        return "contains a NUL character"
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    if size > MAX_PATH_BYTES:
        return f"is {size} bytes long; at most {MAX_PATH_BYTES} are accepted"
    components = sum(1 for part in path.split("/") if part)
    if components > MAX_PATH_COMPONENTS:
        return f"has {components} components; at most {MAX_PATH_COMPONENTS} are accepted"
    return None


def _decode_b64(value: Any, max_inline_bytes: int, fail: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise fail(ErrorCode.INVALID_REQUEST, "image_b64 must be a non-empty base64 string")
    # Refuse before decoding: base64 inflates by 4/3.
    if len(value) * 3 // 4 > max_inline_bytes + 3:
        raise fail(
            ErrorCode.IMAGE_TOO_LARGE,
            f"inline image of about {len(value) * 3 // 4} bytes exceeds MaxImageBytes "
            f"({max_inline_bytes}); send a path instead",
        )
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise fail(ErrorCode.INVALID_REQUEST, f"image_b64 is not valid base64: {exc}") from None
    if len(data) > max_inline_bytes:
        raise fail(
            ErrorCode.IMAGE_TOO_LARGE,
            f"inline image of {len(data)} bytes exceeds MaxImageBytes ({max_inline_bytes})",
        )
    return data


def _parse_top_k(value: Any, fail: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise fail(ErrorCode.INVALID_REQUEST, f"top_k must be an integer from 1 to {MAX_TOP_K}")
    return value


def _parse_threshold(value: Any, fail: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise fail(ErrorCode.INVALID_REQUEST, "threshold must be a number from 0 to 1")
    return float(value)
