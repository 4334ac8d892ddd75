"""AWS event-stream framing and the event-stream RPC conventions Greengrass IPC uses.

Wire format (all integers big-endian)::

    u32 total_length | u32 headers_length | u32 prelude_crc      (prelude, 12 bytes)
    headers[headers_length] | payload | u32 message_crc

``prelude_crc`` is the CRC32 of the first 8 bytes, ``message_crc`` the CRC32 of everything
before it. A header is ``u8 name_length, name (UTF-8), u8 type, value``; the ten value types are
listed in :class:`HeaderType`.

Decoding is strict: a frame is accepted only if both checksums match, the lengths are
consistent, every header parses to exactly the end of the headers section, names are non-empty
UTF-8 and appear once. Anything else raises :class:`EventStreamError` (a ``ValueError``).

The RPC layer adds three int32 headers to every message (``:message-type``,
``:message-flags``, ``:stream-id``); :func:`encode_rpc_message` builds such a frame.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Any

PRELUDE_LENGTH = 12
MESSAGE_CRC_LENGTH = 4
MIN_MESSAGE_LENGTH = PRELUDE_LENGTH + MESSAGE_CRC_LENGTH
CLIENT_MAX_MESSAGE_LENGTH = 24 * 1024 * 1024
"""aws-c-event-stream's ``AWS_EVENT_STREAM_MAX_MESSAGE_SIZE`` in awscrt 0.36 (measured): the
client refuses to send a larger frame and drops the connection when it receives one."""
MAX_HEADERS_LENGTH = 128 * 1024
"""aws-c-event-stream's ``AWS_EVENT_STREAM_MAX_HEADERS_SIZE``."""
MAX_HEADER_NAME_LENGTH = 127
MAX_HEADER_VALUE_LENGTH = 32767

_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")


class EventStreamError(ValueError):
    """A frame or header that does not follow the event-stream format."""


class ChecksumError(EventStreamError):
    """A prelude or message CRC32 does not match the bytes it covers."""


class HeaderType(IntEnum):
    """Header value types (the type byte on the wire)."""

    BOOL_TRUE = 0
    BOOL_FALSE = 1
    BYTE = 2
    INT16 = 3
    INT32 = 4
    INT64 = 5
    BYTES = 6
    STRING = 7
    TIMESTAMP = 8
    """int64 milliseconds since the Unix epoch (kept as an int here)."""
    UUID = 9


_INT_FORMATS = {
    HeaderType.BYTE: struct.Struct(">b"),
    HeaderType.INT16: struct.Struct(">h"),
    HeaderType.INT32: struct.Struct(">i"),
    HeaderType.INT64: struct.Struct(">q"),
    HeaderType.TIMESTAMP: struct.Struct(">q"),
}


@dataclass(frozen=True)
class Header:
    """One header: a name, a value type and a value of the matching Python type.

    bool for BOOL_TRUE/BOOL_FALSE, int for the integer types and TIMESTAMP (milliseconds),
    bytes for BYTES, str for STRING, :class:`uuid.UUID` for UUID.
    """

    name: str
    type: HeaderType
    value: Any

    @classmethod
    def bool_(cls, name: str, value: bool) -> Header:
        return cls(name, HeaderType.BOOL_TRUE if value else HeaderType.BOOL_FALSE, bool(value))

    @classmethod
    def byte(cls, name: str, value: int) -> Header:
        return cls(name, HeaderType.BYTE, value)

    @classmethod
    def int16(cls, name: str, value: int) -> Header:
        return cls(name, HeaderType.INT16, value)

    @classmethod
    def int32(cls, name: str, value: int) -> Header:
        return cls(name, HeaderType.INT32, value)

    @classmethod
    def int64(cls, name: str, value: int) -> Header:
        return cls(name, HeaderType.INT64, value)

    @classmethod
    def bytes_(cls, name: str, value: bytes) -> Header:
        return cls(name, HeaderType.BYTES, bytes(value))

    @classmethod
    def string(cls, name: str, value: str) -> Header:
        return cls(name, HeaderType.STRING, value)

    @classmethod
    def timestamp_ms(cls, name: str, value: int) -> Header:
        return cls(name, HeaderType.TIMESTAMP, value)

    @classmethod
    def uuid(cls, name: str, value: uuid.UUID) -> Header:
        return cls(name, HeaderType.UUID, value)


@dataclass(frozen=True)
class Prelude:
    total_length: int
    headers_length: int

    @property
    def payload_length(self) -> int:
        return self.total_length - MIN_MESSAGE_LENGTH - self.headers_length


@dataclass(frozen=True)
class Message:
    headers: tuple[Header, ...] = ()
    payload: bytes = b""
    _by_name: dict[str, Header] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_name.update((h.name, h) for h in self.headers)

    def header(self, name: str) -> Header | None:
        return self._by_name.get(name)

    def value(self, name: str, default: Any = None) -> Any:
        header = self._by_name.get(name)
        return default if header is None else header.value


# --- encoding -----------------------------------------------------------------------------------


def _encode_header(header: Header) -> bytes:
    name = header.name.encode("utf-8")
    if not 1 <= len(name) <= MAX_HEADER_NAME_LENGTH:
        raise EventStreamError(
            f"header name must be 1..{MAX_HEADER_NAME_LENGTH} UTF-8 bytes: {header.name!r}"
        )
    try:
        htype = HeaderType(header.type)
    except ValueError:
        raise EventStreamError(f"unknown header type {header.type!r}") from None
    prefix = bytes((len(name),)) + name + bytes((htype,))
    value = header.value
    if htype in (HeaderType.BOOL_TRUE, HeaderType.BOOL_FALSE):
        if value is not (htype is HeaderType.BOOL_TRUE):
            raise EventStreamError(
                f"header {header.name!r}: value {value!r} contradicts {htype.name}"
            )
        return prefix
    if htype in _INT_FORMATS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EventStreamError(f"header {header.name!r}: {htype.name} needs an int")
        try:
            return prefix + _INT_FORMATS[htype].pack(value)
        except struct.error:
            raise EventStreamError(
                f"header {header.name!r}: {value} out of range for {htype.name}"
            ) from None
    if htype is HeaderType.UUID:
        if not isinstance(value, uuid.UUID):
            raise EventStreamError(f"header {header.name!r}: UUID needs a uuid.UUID")
        return prefix + value.bytes
    if htype is HeaderType.STRING:
        if not isinstance(value, str):
            raise EventStreamError(f"header {header.name!r}: STRING needs a str")
        data = value.encode("utf-8")
    else:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise EventStreamError(f"header {header.name!r}: BYTES needs bytes")
        data = bytes(value)
    if len(data) > MAX_HEADER_VALUE_LENGTH:
        raise EventStreamError(
            f"header {header.name!r}: value of {len(data)} bytes exceeds {MAX_HEADER_VALUE_LENGTH}"
        )
    return prefix + struct.pack(">H", len(data)) + data


def encode_headers(headers: Iterable[Header]) -> bytes:
    seen: set[str] = set()
    parts = []
    for header in headers:
        if header.name in seen:
            raise EventStreamError(f"duplicate header {header.name!r}")
        seen.add(header.name)
        parts.append(_encode_header(header))
    return b"".join(parts)


def encode_message(headers: Iterable[Header] = (), payload: bytes = b"") -> bytes:
    """One complete frame; raises :class:`EventStreamError` for unencodable headers."""
    header_bytes = encode_headers(headers)
    total = MIN_MESSAGE_LENGTH + len(header_bytes) + len(payload)
    if total > 0xFFFFFFFF:
        raise EventStreamError(f"message of {total} bytes cannot be framed")
    prelude = struct.pack(">II", total, len(header_bytes))
    prelude += _U32.pack(zlib.crc32(prelude))
    crc = zlib.crc32(payload, zlib.crc32(header_bytes, zlib.crc32(prelude)))
    return b"".join((prelude, header_bytes, payload, _U32.pack(crc)))


# --- decoding -----------------------------------------------------------------------------------


def decode_prelude(data: bytes) -> Prelude:
    """Check the 12-byte prelude (CRC and lengths) and return the lengths it announces."""
    if len(data) != PRELUDE_LENGTH:
        raise EventStreamError(f"prelude must be {PRELUDE_LENGTH} bytes, got {len(data)}")
    total, headers_length, crc = _PRELUDE.unpack(data)
    if zlib.crc32(data[:8]) != crc:
        raise ChecksumError("prelude CRC32 mismatch")
    if total < MIN_MESSAGE_LENGTH:
        raise EventStreamError(f"total length {total} is below the minimum {MIN_MESSAGE_LENGTH}")
    if headers_length > total - MIN_MESSAGE_LENGTH:
        raise EventStreamError(
            f"headers length {headers_length} does not fit in a {total}-byte frame"
        )
    return Prelude(total, headers_length)


def _take(data: memoryview, pos: int, count: int, what: str) -> tuple[bytes, int]:
    end = pos + count
    if end > len(data):
        raise EventStreamError(f"headers end inside {what}")
    return bytes(data[pos:end]), end


def decode_headers(data: bytes) -> tuple[Header, ...]:
    view = memoryview(data)
    pos = 0
    headers: list[Header] = []
    seen: set[str] = set()
    while pos < len(view):
        name_length = view[pos]
        pos += 1
        if name_length == 0:
            raise EventStreamError("header with an empty name")
        raw_name, pos = _take(view, pos, name_length, "a header name")
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise EventStreamError(f"header name is not UTF-8: {raw_name!r}") from None
        if name in seen:
            raise EventStreamError(f"duplicate header {name!r}")
        seen.add(name)
        raw_type, pos = _take(view, pos, 1, f"the type of header {name!r}")
        try:
            htype = HeaderType(raw_type[0])
        except ValueError:
            raise EventStreamError(f"header {name!r} has unknown type {raw_type[0]}") from None
        value: Any
        if htype is HeaderType.BOOL_TRUE:
            value = True
        elif htype is HeaderType.BOOL_FALSE:
            value = False
        elif htype in _INT_FORMATS:
            fmt = _INT_FORMATS[htype]
            raw, pos = _take(view, pos, fmt.size, f"the value of header {name!r}")
            value = fmt.unpack(raw)[0]
        elif htype is HeaderType.UUID:
            raw, pos = _take(view, pos, 16, f"the value of header {name!r}")
            value = uuid.UUID(bytes=raw)
        else:
            raw_length, pos = _take(view, pos, 2, f"the length of header {name!r}")
            raw, pos = _take(view, pos, struct.unpack(">H", raw_length)[0], f"header {name!r}")
            if htype is HeaderType.STRING:
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise EventStreamError(f"header {name!r}: string value is not UTF-8") from None
            else:
                value = raw
        headers.append(Header(name, htype, value))
    return tuple(headers)


def decode_message(data: bytes, *, max_headers_length: int = MAX_HEADERS_LENGTH) -> Message:
    """Decode exactly one complete frame (``data`` must hold nothing else)."""
    if len(data) < MIN_MESSAGE_LENGTH:
        raise EventStreamError(f"frame of {len(data)} bytes is shorter than {MIN_MESSAGE_LENGTH}")
    prelude = decode_prelude(bytes(data[:PRELUDE_LENGTH]))
    if prelude.total_length != len(data):
        raise EventStreamError(
            f"frame announces {prelude.total_length} bytes but {len(data)} were given"
        )
    if prelude.headers_length > max_headers_length:
        raise EventStreamError(
            f"headers of {prelude.headers_length} bytes exceed the {max_headers_length}-byte limit"
        )
    (crc,) = _U32.unpack_from(data, len(data) - MESSAGE_CRC_LENGTH)
    if zlib.crc32(memoryview(data)[: len(data) - MESSAGE_CRC_LENGTH]) != crc:
        raise ChecksumError("message CRC32 mismatch")
    headers_end = PRELUDE_LENGTH + prelude.headers_length
    headers = decode_headers(bytes(data[PRELUDE_LENGTH:headers_end]))
    return Message(headers, bytes(data[headers_end : len(data) - MESSAGE_CRC_LENGTH]))


# --- event-stream RPC ---------------------------------------------------------------------------

MESSAGE_TYPE_HEADER = ":message-type"
MESSAGE_FLAGS_HEADER = ":message-flags"
STREAM_ID_HEADER = ":stream-id"
OPERATION_HEADER = "operation"
VERSION_HEADER = ":version"
CONTENT_TYPE_HEADER = ":content-type"
SERVICE_MODEL_TYPE_HEADER = "service-model-type"
CONTENT_TYPE_JSON = "application/json"
RPC_VERSION = "0.1.0"
RPC_HEADERS = frozenset((MESSAGE_TYPE_HEADER, MESSAGE_FLAGS_HEADER, STREAM_ID_HEADER))


class MessageType(IntEnum):
    APPLICATION_MESSAGE = 0
    APPLICATION_ERROR = 1
    PING = 2
    PING_RESPONSE = 3
    CONNECT = 4
    CONNECT_ACK = 5
    PROTOCOL_ERROR = 6
    INTERNAL_ERROR = 7


class MessageFlag(IntFlag):
    NONE = 0
    CONNECTION_ACCEPTED = 1
    TERMINATE_STREAM = 2


@dataclass(frozen=True)
class RpcMessage:
    """A decoded frame seen through the RPC headers."""

    message_type: MessageType
    flags: MessageFlag
    stream_id: int
    message: Message

    @property
    def operation(self) -> str | None:
        return self.message.value(OPERATION_HEADER)

    @property
    def payload(self) -> bytes:
        return self.message.payload


def rpc_view(message: Message) -> RpcMessage:
    """Read the three RPC headers (all int32); :class:`EventStreamError` if any is missing."""
    values = []
    for name in (MESSAGE_TYPE_HEADER, MESSAGE_FLAGS_HEADER, STREAM_ID_HEADER):
        header = message.header(name)
        if header is None or header.type is not HeaderType.INT32:
            raise EventStreamError(f"RPC header {name} is missing or not an int32")
        values.append(header.value)
    raw_type, raw_flags, stream_id = values
    try:
        message_type = MessageType(raw_type)
    except ValueError:
        raise EventStreamError(f"unknown RPC message type {raw_type}") from None
    if stream_id < 0:
        raise EventStreamError(f"negative stream id {stream_id}")
    return RpcMessage(message_type, MessageFlag(raw_flags & 0x3), stream_id, message)


def encode_rpc_message(
    message_type: MessageType,
    *,
    stream_id: int = 0,
    flags: MessageFlag = MessageFlag.NONE,
    headers: Sequence[Header] = (),
    payload: bytes = b"",
) -> bytes:
    rpc_headers = (
        Header.int32(MESSAGE_TYPE_HEADER, int(message_type)),
        Header.int32(MESSAGE_FLAGS_HEADER, int(flags)),
        Header.int32(STREAM_ID_HEADER, stream_id),
    )
    extra = tuple(h for h in headers if h.name not in RPC_HEADERS)
    return encode_message(rpc_headers + extra, payload)


def json_headers(model_type: str) -> tuple[Header, Header]:
    """``:content-type: application/json`` plus ``service-model-type``."""
    return (
        Header.string(CONTENT_TYPE_HEADER, CONTENT_TYPE_JSON),
        Header.string(SERVICE_MODEL_TYPE_HEADER, model_type),
    )
