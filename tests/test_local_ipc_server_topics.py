"""Topic filter matching and validation (the nucleus's subscription-trie semantics)."""

from __future__ import annotations

import pytest

from ggic.local.topics import (
    TopicError,
    is_wildcard_filter,
    topic_matches,
    validate_publish_topic,
    validate_topic_filter,
)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("local/inference", "local/inference", True),
        ("local/inference", "local/inference/x", False),
        ("local/inference", "local", False),
        ("local/+", "local/a", True),
        ("local/+", "local/a/b", False),
        ("local/+", "local", False),
        ("local/+/result", "local/x/result", True),
        ("local/+/result", "local/x/y/result", False),
        ("+/+", "a/b", True),
        ("+", "a", True),
        ("+", "a/b", False),
        ("local/#", "local/a", True),
        ("local/#", "local/a/b/c", True),
        ("local/#", "local", False),  # the nucleus's trie, not MQTT 3.1.1
        ("local/#", "other/a", False),
        ("#", "a", True),
        ("#", "a/b/c", True),
        ("+/#", "a/b", True),
        ("+/#", "a", False),
        ("local/a+", "local/ab", False),  # '+' inside a level is literal
        ("local/a+", "local/a+", True),
        ("local/b#", "local/b#", True),
        ("local/b#", "local/bx", False),
        ("local//x", "local//x", True),
        ("local/+/x", "local//x", True),  # an empty level is a level
    ],
)
def test_topic_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    ("topic_filter", "expected"),
    [("a/b", False), ("a/+", True), ("+", True), ("a/#", True), ("a+", False), ("a/b#", False)],
)
def test_is_wildcard_filter(topic_filter: str, expected: bool) -> None:
    assert is_wildcard_filter(topic_filter) is expected


@pytest.mark.parametrize("topic", ["", None, "a/+", "a/#", "a/*", "+", 3])
def test_publish_topics_must_be_concrete(topic: object) -> None:
    with pytest.raises(TopicError):
        validate_publish_topic(topic)


@pytest.mark.parametrize("topic_filter", ["", None])
def test_invalid_topic_filters(topic_filter: object) -> None:
    with pytest.raises(TopicError):
        validate_topic_filter(topic_filter)


def test_valid_topic_filters() -> None:
    for topic_filter in ("a", "a/+/b", "a/#", "#", "+/+", "a/b#", "a/#/b", "#/a", "/", "a/"):
        assert validate_topic_filter(topic_filter) == topic_filter
    assert validate_publish_topic("local/inference") == "local/inference"


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        # levels split as Java's String.split("/") does: trailing empty levels dropped
        ("a/b/", "a/b", True),
        ("a/b", "a/b/", True),
        ("a/b/", "a/b//", True),
        ("a/+", "a/", False),  # "a/" is the one-level topic "a"
        ("a/#", "a/", False),
        ("/a", "/a", True),  # a leading empty level stays
        ("/a", "a", False),
        # "/" has no level: the trie keeps such a subscription at its root, never delivered
        ("/", "/", False),
        ("/", "a", False),
        ("#", "/", False),
        # a '#' before the end matches exactly one level, as SubscriptionTrie walks it
        ("a/#/c", "a/x/c", True),
        ("a/#/c", "a/x/y/c", False),
        ("a/#/c", "a/c", False),
    ],
)
def test_topic_edge_cases_as_the_nucleus_trie(topic_filter: str, topic: str,
                                               expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


def test_a_middle_hash_is_not_a_wildcard_filter_and_slash_alone_cannot_be_published() -> None:
    assert is_wildcard_filter("a/#/c") is False  # SubscriptionTrie.isWildcard
    assert is_wildcard_filter("a/+/") is True
    for topic in ("/", "//"):
        with pytest.raises(TopicError, match="no topic level"):
            validate_publish_topic(topic)
