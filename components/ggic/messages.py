"""The message contract (v1) between requesters and the classifier.

Requests arrive on the request topic (``local/inference``) as JSON, results leave on the
result topic (``local/result``) or the request's ``reply_to``. Every request gets exactly one
result: ``status: "ok"`` with predictions, or ``status: "error"`` with a typed error.

This module is pure: parsing, validation and encoding, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CONTRACT_VERSION = 1

#: Longest request id we echo back; longer ids are refused as INVALID_REQUEST.
MAX_REQUEST_ID_CHARS = 128
#: Upper bound of a per-request ``top_k`` override.
MAX_TOP_K = 100
#: Longest file path accepted (UTF-8 bytes; Linux's PATH_MAX) and most components in it, both
#: checked before the path is resolved.
MAX_PATH_BYTES = 4096
MAX_PATH_COMPONENTS = 256

_REQUEST_ID_RE = re.compile(rf"^[A-Za-z0-9._:@/+=-]{{1,{MAX_REQUEST_ID_CHARS}}}$")
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
        code_value = code.value if isinstance(code, ErrorCode) else str(code)
        return cls(request_id, "error", error_code=code_value, error_message=message)

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
        """Decode a result received on the result topic (used by requesters)."""
        if not isinstance(data, Mapping):
            raise ValueError("a result must be a JSON object")
        request_id = data.get("request_id")
        status = data.get("status")
        if not isinstance(request_id, str) or status not in ("ok", "error"):
            raise ValueError("a result needs a string request_id and status 'ok' or 'error'")
        if status == "error":
            error = data.get("error") or {}
            return cls.failure(request_id, str(error.get("code")), str(error.get("message")))
        predictions = tuple(
            Prediction(str(p["label"]), int(p["class_id"]), float(p["score"]))
            for p in data.get("predictions", [])
        )
        return cls.success(
            request_id,
            predictions,
            {str(k): str(v) for k, v in (data.get("model") or {}).items()},
            {str(k): float(v) for k, v in (data.get("timing_ms") or {}).items()},
        )


def new_request_id() -> str:
    return uuid.uuid4().hex


def decode_payload(payload: Any) -> Any:
    """Turn an IPC message body into a JSON value.

    ``jsonMessage`` bodies arrive already decoded; ``binaryMessage`` bodies arrive as bytes and
    must hold UTF-8 JSON.
    """
    if isinstance(payload, (bytes, bytearray, memoryview)):
        try:
            return json.loads(bytes(payload).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ClassificationError(
                ErrorCode.INVALID_REQUEST, f"binary message is not UTF-8 JSON: {exc}"
            ) from None
    if isinstance(payload, str):
        try:
            return json.loads(payload)
        except ValueError as exc:
            raise ClassificationError(
                ErrorCode.INVALID_REQUEST, f"message is not JSON: {exc}"
            ) from None
    return payload


def request_id_of(message: Any) -> str | None:
    """The request id a (possibly invalid) message carries, if it carries a usable one."""
    if isinstance(message, Mapping):
        rid = message.get("request_id")
        if isinstance(rid, str) and _REQUEST_ID_RE.match(rid):
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

    if not isinstance(message, Mapping):
        raise fail(ErrorCode.INVALID_REQUEST, "a request must be a JSON object")
    if "request_id" in message and request_id_of(message) is None:
        raise fail(
            ErrorCode.INVALID_REQUEST,
            f"request_id must be 1-{MAX_REQUEST_ID_CHARS} characters "
            "of letters, digits and ._:@/+=-",
        )
    unknown = sorted(str(k) for k in message if k not in _KNOWN_REQUEST_KEYS)
    if unknown:
        raise fail(ErrorCode.INVALID_REQUEST, f"unknown field(s): {', '.join(unknown)}")

    source = _parse_source(message, max_inline_bytes, fail)
    top_k = _parse_top_k(message.get("top_k"), fail)
    threshold = _parse_threshold(message.get("threshold"), fail)
    reply_to = message.get("reply_to")
    if reply_to is not None and (
        not isinstance(reply_to, str) or not reply_to or any(c in reply_to for c in "#+")
    ):
        raise fail(ErrorCode.INVALID_REQUEST, "reply_to must be a topic name without wildcards")
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
