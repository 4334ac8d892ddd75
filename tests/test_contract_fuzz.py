"""The message contract under hostile input (issue #8.3, #8.9): whatever a message holds,
parsing ends in a valid request or a typed error (never INTERNAL_ERROR, never another
exception), and the error's result is small enough for any IPC frame.

The property-based part runs hypothesis over the pure parser; test_contract_live.py runs the
same kinds of message through a live classifier process over the real SDK.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fuzz_strategies import (
    binary_payloads,
    deep_json,
    fuzz_settings,
    huge_messages,
    json_values,
    request_like,
)
from ggic.local.topics import TopicError, validate_publish_topic
from ggic.messages import (
    ClassificationError,
    ClassificationRequest,
    ClassificationResult,
    ErrorCode,
    decode_payload,
    parse_request,
    request_id_of,
)
from ggic.topic_names import PUBLISH_FORBIDDEN_CHARS, publish_topic_problem

MAX_INLINE = 10 * 1024 * 1024
#: Far below the 16 MiB IPC frame: an error result is a few KB at most.
MAX_ERROR_RESULT_BYTES = 16 * 1024


def outcome(payload: object) -> ClassificationRequest | ClassificationResult:
    """What the classifier's intake makes of one message body: a request, or the error
    result it publishes. Any exception other than ClassificationError fails the test."""
    try:
        return parse_request(decode_payload(payload), max_inline_bytes=MAX_INLINE)
    except ClassificationError as exc:
        assert exc.code is not ErrorCode.INTERNAL_ERROR, exc
        return ClassificationResult.from_error(exc, exc.request_id or "generated-id")


def check(payload: object) -> None:
    got = outcome(payload)
    if isinstance(got, ClassificationRequest):
        assert request_id_of({"request_id": got.request_id}) == got.request_id
        assert got.reply_to is None or publish_topic_problem(got.reply_to) is None
        return
    wire = json.dumps(got.to_dict())
    assert len(wire.encode("utf-8")) <= MAX_ERROR_RESULT_BYTES
    assert request_id_of({"request_id": got.request_id}) == got.request_id
    assert got.error_message and got.error_message.isprintable()
    assert ErrorCode(got.error_code) is not ErrorCode.INTERNAL_ERROR


@fuzz_settings(250)
@given(json_values() | request_like(json_values(5)))
def test_any_json_value_is_a_request_or_a_typed_error(value):
    check(value)
    check(json.dumps(value))  # a jsonMessage whose message is JSON text


@fuzz_settings(300)
@given(binary_payloads())
def test_any_binary_message_is_a_request_or_a_typed_error(payload):
    check(payload)


@fuzz_settings(25)
@given(huge_messages())
def test_errors_quote_huge_values_cut_and_escaped(message):
    check(message)
    check(json.dumps(message).encode("utf-8"))


@fuzz_settings(20)
@given(deep_json())
def test_deeply_nested_json_gets_an_answer(text):
    check(text.encode("utf-8"))
    check(text)


def test_nesting_too_deep_for_the_decoder_is_invalid_request():
    got = outcome(b"[" * 100_000 + b"]" * 100_000)
    assert isinstance(got, ClassificationResult)
    assert got.error_code == "INVALID_REQUEST" and "deeply" in got.error_message


def test_an_error_echoing_a_huge_value_still_fits_a_frame():
    got = outcome({"request_id": "keep-me", "image_path": "x" * 20_000_000})
    assert got.request_id == "keep-me" and got.error_code == "INVALID_REQUEST"
    assert len(json.dumps(got.to_dict())) <= MAX_ERROR_RESULT_BYTES


def test_unknown_field_names_are_listed_escaped_and_cut():
    message = {"request_id": "r", "image_path": "/a.jpg",
               **{f"bad\nfield{i}\x1b\ud800" + "y" * 500: 1 for i in range(50)}}
    got = outcome(message)
    assert got.error_code == "INVALID_REQUEST"
    assert "\n" not in got.error_message and "\ud800" not in got.error_message
    assert "bad\\nfield0\\x1b\\ud800" in got.error_message
    assert "and 45 more" in got.error_message
    assert len(got.error_message) < 1000


@pytest.mark.parametrize("message", [
    {1: "a", None: 2, ("t",): 3},  # keys JSON cannot carry: still a typed error
    {"request_id": "r", "image_path": b"/bytes.jpg"},
    {"request_id": "r", "image_b64": "\ud800" * 10},
    {"request_id": "r", "image_path": "/a.jpg", "top_k": 10**5000},
    {"request_id": "r", "image_path": "/a.jpg", "threshold": float("nan")},
    "[" * 100_000,
])
def test_values_no_check_foresaw_are_invalid_request(message):
    got = outcome(message)
    assert isinstance(got, ClassificationResult) and got.error_code == "INVALID_REQUEST"


def test_a_decoder_out_of_memory_is_invalid_request(monkeypatch):
    import ggic.messages

    def exhausted(_text):
        raise MemoryError

    monkeypatch.setattr(ggic.messages.json, "loads", exhausted)
    got = outcome(b'{"request_id": "r"}')
    assert got.error_code == "INVALID_REQUEST" and "too large" in got.error_message


@pytest.mark.parametrize("request_id", ["abc\n", "abc\r\n", "\nabc", "a b", "x" * 129, ""])
def test_request_id_must_match_its_pattern_whole(request_id):
    with pytest.raises(ClassificationError) as caught:
        parse_request({"request_id": request_id, "image_path": "/a.jpg"}, max_inline_bytes=9)
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert caught.value.request_id != request_id
    assert request_id_of({"request_id": request_id}) is None


@pytest.mark.parametrize("reply_to", ["replies/*", "*", "a/+/b", "a/#", "+", "#", "",
                                      "r" * 257, "line\nbreak", "esc\x1b", "lone\ud800", 7, []])
def test_reply_to_refuses_what_the_ipc_refuses_in_a_publish_topic(reply_to):
    with pytest.raises(ClassificationError) as caught:
        parse_request({"request_id": "r", "image_path": "/a.jpg", "reply_to": reply_to},
                      max_inline_bytes=9)
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert "reply_to" in caught.value.message


@given(st.text(st.characters(exclude_categories=()), max_size=30))
@example("/")
@example("//")
@example("a/")
@fuzz_settings(300)
def test_every_reply_to_accepted_is_a_topic_the_ipc_accepts(topic):
    if publish_topic_problem(topic) is None:
        assert validate_publish_topic(topic) == topic
    for char in PUBLISH_FORBIDDEN_CHARS:
        with pytest.raises(TopicError):
            validate_publish_topic(topic + char)
        assert publish_topic_problem(topic + char) is not None


@pytest.mark.parametrize("key", ["ResultTopic", "IoTCoreTopic", "RequestTopic"])
@pytest.mark.parametrize("value", ["a/*", "a/#", "x" * 257, "a\nb"])
def test_topic_settings_follow_the_same_rules(key, value):
    from ggic.config import ClassifierConfig, ConfigError, config_from_mapping

    with pytest.raises(ConfigError):
        config_from_mapping(ClassifierConfig, {key: value})
