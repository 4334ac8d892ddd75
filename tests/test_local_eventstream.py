"""The event-stream codec: round trips, strict rejection of corrupt and truncated frames."""

from __future__ import annotations

import random
import struct
import uuid
import zlib

import pytest

from ggic.local.eventstream import (
    MIN_MESSAGE_LENGTH,
    ChecksumError,
    EventStreamError,
    Header,
    HeaderType,
    Message,
    MessageFlag,
    MessageType,
    decode_headers,
    decode_message,
    decode_prelude,
    encode_headers,
    encode_message,
    encode_rpc_message,
    json_headers,
    rpc_view,
)

ALL_TYPES = [
    Header.bool_("t", True),
    Header.bool_("f", False),
    Header.byte("b", -128),
    Header.int16("s", 32767),
    Header.int32("i", -(2**31)),
    Header.int64("l", 2**63 - 1),
    Header.bytes_("buf", b"\x00\xffbinary"),
    Header.string("str", "héllo ☃"),
    Header.timestamp_ms("ts", 1_700_000_000_123),
    Header.uuid("id", uuid.UUID("12345678-1234-5678-1234-567812345678")),
]


def frame(header_bytes: bytes, payload: bytes = b"") -> bytes:
    """A frame with correct CRCs around arbitrary (possibly malformed) header bytes."""
    total = MIN_MESSAGE_LENGTH + len(header_bytes) + len(payload)
    prelude = struct.pack(">II", total, len(header_bytes))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + header_bytes + payload
    return body + struct.pack(">I", zlib.crc32(body))


def test_every_header_type_round_trips() -> None:
    data = encode_message(ALL_TYPES, b"payload")
    message = decode_message(data)
    assert message.headers == tuple(ALL_TYPES)
    assert message.payload == b"payload"
    assert [h.type for h in message.headers] == list(HeaderType)
    assert message.value("str") == "héllo ☃"
    assert message.value("missing", "default") == "default"


def test_known_frame_layout() -> None:
    data = encode_message([Header.string("k", "v")], b"{}")
    # prelude: total 16 + header (1+1+1+2+1) + payload 2 = 24; headers 6
    assert data[:8] == struct.pack(">II", 24, 6)
    assert data[12:18] == b"\x01k\x07\x00\x01v"
    assert data[18:20] == b"{}"
    assert struct.unpack(">I", data[-4:])[0] == zlib.crc32(data[:-4])


def test_empty_message_is_sixteen_bytes() -> None:
    data = encode_message()
    assert len(data) == MIN_MESSAGE_LENGTH
    assert decode_message(data) == Message()


def _random_header(rng: random.Random, name: str) -> Header:
    kind = rng.choice(list(HeaderType))
    if kind in (HeaderType.BOOL_TRUE, HeaderType.BOOL_FALSE):
        return Header.bool_(name, kind is HeaderType.BOOL_TRUE)
    bits = {HeaderType.BYTE: 8, HeaderType.INT16: 16, HeaderType.INT32: 32}.get(kind, 64)
    if kind in (HeaderType.BYTE, HeaderType.INT16, HeaderType.INT32, HeaderType.INT64):
        return Header(name, kind, rng.randint(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    if kind is HeaderType.TIMESTAMP:
        return Header.timestamp_ms(name, rng.randint(0, 2**62))
    if kind is HeaderType.UUID:
        return Header.uuid(name, uuid.UUID(int=rng.getrandbits(128)))
    if kind is HeaderType.BYTES:
        return Header.bytes_(name, rng.randbytes(rng.randint(0, 300)))
    return Header.string(
        name, "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 50)))
    )


def test_random_messages_round_trip() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        headers = [_random_header(rng, f"h{i}-{rng.random()}") for i in range(rng.randint(0, 8))]
        payload = rng.randbytes(rng.choice((0, 1, 17, 1000, 70_000)))
        assert decode_message(encode_message(headers, payload)) == Message(tuple(headers), payload)


def test_every_single_byte_corruption_is_rejected() -> None:
    data = encode_message([Header.string("operation", "x"), Header.int32("n", 7)], b'{"a": 1}')
    for index in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            corrupt = bytearray(data)
            corrupt[index] ^= flip
            with pytest.raises(EventStreamError):
                decode_message(bytes(corrupt))


def test_corrupt_checksums_raise_checksum_error() -> None:
    data = bytearray(encode_message([Header.string("a", "b")], b"xyz"))
    bad_prelude = bytes(data[:8]) + b"\x00\x00\x00\x00" + bytes(data[12:])
    with pytest.raises(ChecksumError, match="prelude"):
        decode_message(bad_prelude)
    data[-5] ^= 0x10  # a payload byte
    with pytest.raises(ChecksumError, match="message CRC32"):
        decode_message(bytes(data))


def test_truncated_and_padded_frames_are_rejected() -> None:
    data = encode_message([Header.string("a", "b")], b"payload")
    for length in range(len(data)):
        with pytest.raises(EventStreamError):
            decode_message(data[:length])
    with pytest.raises(EventStreamError, match="announces"):
        decode_message(data + b"\x00")


@pytest.mark.parametrize(
    ("header_bytes", "match"),
    [
        (b"\x00\x07\x00\x00", "empty name"),
        (b"\x05ab", "header name"),
        (b"\x01a", "type of header"),
        (b"\x01a\x0a", "unknown type"),
        (b"\x01a\x04\x00\x00", "value of header"),
        (b"\x01a\x07\x00\x05abc", "header 'a'"),
        (b"\x01a\x07\x00", "length of header"),
        (b"\x01a\x07\x00\x02\xff\xfe", "not UTF-8"),
        (b"\x02\xff\xfe\x00", "not UTF-8"),
        (b"\x01a\x00\x01a\x01", "duplicate"),
        (b"\x01a\x09" + b"\x00" * 15, "value of header"),
    ],
)
def test_malformed_headers_are_rejected(header_bytes: bytes, match: str) -> None:
    with pytest.raises(EventStreamError, match=match):
        decode_message(frame(header_bytes))


def test_prelude_lengths_are_checked() -> None:
    def prelude(total: int, headers: int) -> bytes:
        raw = struct.pack(">II", total, headers)
        return raw + struct.pack(">I", zlib.crc32(raw))

    with pytest.raises(EventStreamError, match="minimum"):
        decode_prelude(prelude(15, 0))
    with pytest.raises(EventStreamError, match="does not fit"):
        decode_prelude(prelude(20, 5))
    assert decode_prelude(prelude(20, 4)).payload_length == 0
    with pytest.raises(EventStreamError, match="12 bytes"):
        decode_prelude(b"\x00" * 11)


def test_headers_section_limit() -> None:
    data = encode_message([Header.bytes_("big", b"x" * 1000)])
    with pytest.raises(EventStreamError, match="limit"):
        decode_message(data, max_headers_length=100)


@pytest.mark.parametrize(
    "header",
    [
        Header.string("", "empty name"),
        Header.string("n" * 128, "name too long"),
        Header.byte("b", 128),
        Header.int16("s", -(2**15) - 1),
        Header.int32("i", 2**31),
        Header.int32("i", True),
        Header.int32("i", "7"),
        Header.string("s", b"bytes"),
        Header.bytes_("b", b"x" * 32768),
        Header.string("s", "x" * 32768),
        Header("u", HeaderType.UUID, "not-a-uuid"),
        Header("t", HeaderType.BOOL_TRUE, False),
        Header("x", 42, 1),
    ],
)
def test_unencodable_headers_are_refused(header: Header) -> None:
    with pytest.raises(EventStreamError):
        encode_message([header])


def test_duplicate_header_names_are_refused_on_encode() -> None:
    with pytest.raises(EventStreamError, match="duplicate"):
        encode_headers([Header.int32("a", 1), Header.int32("a", 2)])


def test_decode_headers_alone() -> None:
    assert decode_headers(encode_headers(ALL_TYPES)) == tuple(ALL_TYPES)
    assert decode_headers(b"") == ()


def test_rpc_message_round_trip() -> None:
    data = encode_rpc_message(
        MessageType.APPLICATION_MESSAGE,
        stream_id=3,
        flags=MessageFlag.TERMINATE_STREAM,
        headers=[
            *json_headers("aws.greengrass#PublishToTopicResponse"),
            Header.int32(":stream-id", 99),
        ],
        payload=b"{}",
    )
    rpc = rpc_view(decode_message(data))
    assert rpc.message_type is MessageType.APPLICATION_MESSAGE
    assert rpc.flags == MessageFlag.TERMINATE_STREAM
    assert rpc.stream_id == 3  # the caller's duplicate RPC header is ignored
    assert rpc.message.value("service-model-type") == "aws.greengrass#PublishToTopicResponse"
    assert rpc.message.value(":content-type") == "application/json"
    assert rpc.operation is None
    assert rpc.payload == b"{}"


@pytest.mark.parametrize(
    "headers",
    [
        [Header.int32(":message-flags", 0), Header.int32(":stream-id", 0)],
        [Header.int32(":message-type", 0), Header.int32(":message-flags", 0)],
        [
            Header.string(":message-type", "0"),
            Header.int32(":message-flags", 0),
            Header.int32(":stream-id", 0),
        ],
        [
            Header.int32(":message-type", 42),
            Header.int32(":message-flags", 0),
            Header.int32(":stream-id", 0),
        ],
        [
            Header.int32(":message-type", 0),
            Header.int32(":message-flags", 0),
            Header.int32(":stream-id", -1),
        ],
    ],
)
def test_rpc_view_rejects_bad_rpc_headers(headers: list[Header]) -> None:
    with pytest.raises(EventStreamError):
        rpc_view(decode_message(encode_message(headers)))


@pytest.mark.parametrize("stream_id", [0, 1, 2**31 - 1, -(2**31)])
def test_rpc_frames_are_the_generic_encoding(stream_id: int) -> None:
    """encode_rpc_message packs its three RPC headers itself: byte for byte what
    encode_message makes of the same headers."""
    extra = [*json_headers("aws.greengrass#SubscriptionResponseMessage"),
             Header.bool_("flag", True)]
    for _ in range(2):  # the second time from the encoded-header cache
        data = encode_rpc_message(MessageType.APPLICATION_ERROR, stream_id=stream_id,
                                  flags=MessageFlag.TERMINATE_STREAM, headers=extra,
                                  payload=b'{"x": 1}')
        assert data == encode_message([Header.int32(":message-type", 1),
                                       Header.int32(":message-flags", 2),
                                       Header.int32(":stream-id", stream_id), *extra],
                                      b'{"x": 1}')


@pytest.mark.parametrize("stream_id", [2**31, -(2**31) - 1, True, "7", 1.0])
def test_rpc_frames_refuse_a_stream_id_that_is_not_an_int32(stream_id: object) -> None:
    with pytest.raises(EventStreamError, match=":stream-id"):
        encode_rpc_message(MessageType.APPLICATION_MESSAGE, stream_id=stream_id)  # type: ignore[arg-type]


def test_encoded_header_cache_is_bounded_and_never_holds_what_fails() -> None:
    from ggic.local import eventstream

    for index in range(eventstream._ENCODED_CACHE_LIMIT * 3):
        value = f"model-type-{index}"
        assert decode_headers(encode_headers([Header.string("t", value)]))[0].value == value
    assert len(eventstream._encoded) <= eventstream._ENCODED_CACHE_LIMIT
    for _ in range(2):  # refused both times: a failure is not cached
        with pytest.raises(EventStreamError):
            encode_headers([Header.string("s", "x" * 32768)])
        with pytest.raises(EventStreamError):
            encode_headers([Header("t", HeaderType.BOOL_TRUE, False)])
    assert all(len(v) < 32768 for v in eventstream._encoded.values())
