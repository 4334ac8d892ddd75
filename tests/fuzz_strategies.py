"""Hypothesis strategies for hostile messages, shared by the contract fuzz tests; and the
settings that keep them deterministic and quick in CI (no example database, derandomized)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

REQUEST_KEYS = ("request_id", "image_path", "image_dir", "fname", "image_b64", "tensor_path",
                "top_k", "threshold", "reply_to")


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


#: Any character, lone surrogates, controls and unassigned code points included.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
#: Text mostly made of what breaks logs and parsers.
nasty_text = st.lists(st.sampled_from(
    ["\n", "\r", "\x00", "\x1b[2J", "\u2028", "\ud800", "\udfff", "\u202e", "#", "+", "*",
     "/", "..", " ", "a", "é", "\U0001f600", "\\", '"']), max_size=20).map("".join)
small_ints = st.integers(min_value=-(2**63), max_value=2**63)
scalars = st.none() | st.booleans() | small_ints | st.floats() | any_text | nasty_text


def json_values(max_leaves: int = 20) -> st.SearchStrategy:
    """Arbitrary JSON values (shallow enough for the SDK's own decoder)."""
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=5)
        | st.dictionaries(any_text | st.sampled_from(REQUEST_KEYS), children, max_size=5),
        max_leaves=max_leaves)


def request_like(values: st.SearchStrategy) -> st.SearchStrategy:
    """Objects with the request's own fields holding any value, sometimes plausible ones,
    and sometimes extra fields."""
    plausible = {
        "request_id": st.from_regex(r"[A-Za-z0-9._:@/+=-]{1,128}", fullmatch=True)
        | st.sampled_from(["a\n", "x" * 129, "", "id\u2028"]),
        "image_path": st.sampled_from(["/tmp/none.jpg", "relative.jpg", "/", "/a\x00b"]),
        "image_b64": st.sampled_from(["", "!!!", "aGVsbG8=", "\ud800"]),
        "top_k": st.integers(min_value=-5, max_value=200),
        "threshold": st.floats(),
        "reply_to": st.sampled_from(["local/result", "replies/x", "replies/*", "a#", "+",
                                     "other", "replies/\n", "r" * 300]) | nasty_text,
    }
    field_values = {key: plausible.get(key, values) | values for key in REQUEST_KEYS}
    return st.fixed_dictionaries(
        {}, optional={**field_values, "extra": values, "topk": values})


def huge_messages() -> st.SearchStrategy:
    """Messages with one field far larger than any error text may quote."""
    field = st.sampled_from(["image_path", "tensor_path", "reply_to", "request_id",
                             "image_dir", "unknown"])
    filler = st.sampled_from(["a", "\n", "\x01", "\ud800", "é", "\U0001f600", "#"])
    size = st.sampled_from([5_000, 300_000, 2_000_000])

    def build(name: str, char: str, n: int) -> dict:
        value = char * n
        if name == "unknown":
            return {"request_id": "huge", value: 1, "image_path": "/a.jpg"}
        if name == "image_dir":
            return {"request_id": "huge", "image_dir": value, "fname": value}
        return {"request_id": "huge", "image_path": "/a.jpg", **{name: value}}

    return st.builds(build, field, filler, size)


def deep_json() -> st.SearchStrategy:
    """JSON text nested deeper than Python's decoder can follow (and some that it can)."""
    def build(depth: int, opener: str) -> str:
        closer = "]" if opener == "[" else "}"
        if opener == "{":
            return '{"a":' * depth + "1" + closer * depth
        return opener * depth + closer * depth
    return st.builds(build, st.sampled_from([10, 900, 5_000, 200_000]), st.sampled_from("[{"))


def binary_payloads() -> st.SearchStrategy:
    """binaryMessage bodies: random bytes, broken UTF-8, JSON of anything, deep nesting."""
    return (st.binary(max_size=200)
            | json_values().map(lambda v: json.dumps(v).encode("utf-8"))
            | request_like(json_values(5)).map(lambda v: json.dumps(v).encode("utf-8"))
            | deep_json().map(str.encode)
            | st.sampled_from([b"\xff\xfe", b'{"request_id": "\xed\xa0\x80"}',
                               b"1" * 5000, b'{"a": 1e999}', b"NaN", b'"\\ud800"']))
