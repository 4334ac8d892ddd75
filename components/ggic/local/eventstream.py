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
_PRELUDE_LENGTHS = struct.Struct(">II")
_U16 = struct.Struct(">H")


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


#: Encoded STRING and BOOL headers by (name, type, value): the server sends the same few (content
#: type, model types, operation names) in every frame. Bounded: past this many, no more are kept.
_ENCODED_CACHE_LIMIT = 256
_encoded: dict[tuple[str, Any, Any], bytes] = {}
_CACHED_TYPES = (HeaderType.STRING, HeaderType.BOOL_TRUE, HeaderType.BOOL_FALSE)


def _encode_header_cached(header: Header) -> bytes:
    key = (header.name, header.type, header.value)
    try:
        return _encoded[key]
    except (KeyError, TypeError):  # TypeError: an unhashable value (refused below)
        pass
    data = _encode_header(header)  # raises for anything unencodable: nothing is cached
    if header.type in _CACHED_TYPES and len(_encoded) < _ENCODED_CACHE_LIMIT:
        _encoded[key] = data
    return data


def encode_headers(headers: Iterable[Header]) -> bytes:
    seen: set[str] = set()
    parts = []
    for header in headers:
        if header.name in seen:
            raise EventStreamError(f"duplicate header {header.name!r}")
        seen.add(header.name)
        parts.append(_encode_header_cached(header))
    return b"".join(parts)


def encode_message(headers: Iterable[Header] = (), payload: bytes = b"") -> bytes:
    """One complete frame; raises :class:`EventStreamError` for unencodable headers."""
    return _frame(encode_headers(headers), payload)


def _frame(header_bytes: bytes, payload: bytes) -> bytes:
    total = MIN_MESSAGE_LENGTH + len(header_bytes) + len(payload)
    if total > 0xFFFFFFFF:
        raise EventStreamError(f"message of {total} bytes cannot be framed")
    prelude = _PRELUDE_LENGTHS.pack(total, len(header_bytes))
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


#: The header type of each type byte (the index), and the fixed value size of each type.
_TYPES_BY_BYTE = tuple(HeaderType)
_FIXED_SIZES = {HeaderType.UUID: 16, **{t: f.size for t, f in _INT_FORMATS.items()}}


def _end_of(pos: int, count: int, limit: int, what: str) -> int:
    end = pos + count
    if end > limit:
        raise EventStreamError(f"headers end inside {what}")
    return end


def decode_headers(data: bytes) -> tuple[Header, ...]:
    data = bytes(data)
    limit = len(data)
    pos = 0
    headers: list[Header] = []
    seen: set[str] = set()
    while pos < limit:
        name_length = data[pos]
        pos += 1
        if name_length == 0:
            raise EventStreamError("header with an empty name")
        end = _end_of(pos, name_length, limit, "a header name")
        raw_name, pos = data[pos:end], end
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise EventStreamError(f"header name is not UTF-8: {raw_name!r}") from None
        if name in seen:
            raise EventStreamError(f"duplicate header {name!r}")
        seen.add(name)
        pos = _end_of(pos, 1, limit, f"the type of header {name!r}")
        type_byte = data[pos - 1]
        if type_byte >= len(_TYPES_BY_BYTE):
            raise EventStreamError(f"header {name!r} has unknown type {type_byte}")
        htype = _TYPES_BY_BYTE[type_byte]
        value: Any
        if htype is HeaderType.BOOL_TRUE:
            value = True
        elif htype is HeaderType.BOOL_FALSE:
            value = False
        elif htype in _FIXED_SIZES:
            end = _end_of(pos, _FIXED_SIZES[htype], limit, f"the value of header {name!r}")
            if htype is HeaderType.UUID:
                value = uuid.UUID(bytes=data[pos:end])
            else:
                value = _INT_FORMATS[htype].unpack_from(data, pos)[0]
            pos = end
        else:
            end = _end_of(pos, 2, limit, f"the length of header {name!r}")
            (length,) = _U16.unpack_from(data, pos)
            pos, end = end, _end_of(end, length, limit, f"header {name!r}")
            raw, pos = data[pos:end], end
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


def _int32_prefix(name: str) -> bytes:
    raw = name.encode("utf-8")
    return bytes((len(raw),)) + raw + bytes((HeaderType.INT32,))


#: The three RPC headers as encoded by _encode_header, with their three int32 values packed in.
_RPC_PREFIX = struct.Struct(
    "".join(f">{len(_int32_prefix(n))}si" if i == 0 else f"{len(_int32_prefix(n))}si"
            for i, n in enumerate((MESSAGE_TYPE_HEADER, MESSAGE_FLAGS_HEADER, STREAM_ID_HEADER))))
_RPC_NAMES = tuple(_int32_prefix(n)
                   for n in (MESSAGE_TYPE_HEADER, MESSAGE_FLAGS_HEADER, STREAM_ID_HEADER))


def encode_rpc_message(
    message_type: MessageType,
    *,
    stream_id: int = 0,
    flags: MessageFlag = MessageFlag.NONE,
    headers: Sequence[Header] = (),
    payload: bytes = b"",
) -> bytes:
    values = (int(message_type), int(flags), stream_id)
    if type(stream_id) is not int or not all(-(2**31) <= v < 2**31 for v in values):
        # what _encode_header says about such a value (a bool, a str, out of range)
        encode_headers(Header.int32(n, v) for n, v in zip(
            (MESSAGE_TYPE_HEADER, MESSAGE_FLAGS_HEADER, STREAM_ID_HEADER), values))
    names = _RPC_NAMES
    rpc = _RPC_PREFIX.pack(names[0], values[0], names[1], values[1], names[2], values[2])
    extra = encode_headers(h for h in headers if h.name not in RPC_HEADERS)
    return _frame(rpc + extra, payload)


def json_headers(model_type: str) -> tuple[Header, Header]:
    """``:content-type: application/json`` plus ``service-model-type``."""
    return (
        Header.string(CONTENT_TYPE_HEADER, CONTENT_TYPE_JSON),
        Header.string(SERVICE_MODEL_TYPE_HEADER, model_type),
    )
