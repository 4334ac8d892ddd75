"""Local pub/sub topics and MQTT-style topic filters, matched the way the nucleus matches them.

A filter is split on ``/`` into levels. A level that is exactly ``+`` matches any one level; a
last level that is exactly ``#`` matches one or more further levels. ``+`` or ``#`` inside a
longer level (``a+``, ``b#``) are ordinary characters. Like the nucleus's subscription trie
(and unlike MQTT 3.1.1 §4.7.1.2), ``sensors/#`` does **not** match ``sensors`` itself.

The nucleus accepts a ``#`` level before the end (and then treats it oddly); here such a
filter is refused, since no subscriber means it.
"""

from __future__ import annotations

SEPARATOR = "/"
SINGLE_LEVEL = "+"
MULTI_LEVEL = "#"
_PUBLISH_FORBIDDEN = ("+", "#", "*")


class TopicError(ValueError):
    """A topic or topic filter that cannot be used."""


def validate_publish_topic(topic: object) -> str:
    """A topic to publish on: a non-empty string without ``+``, ``#`` or ``*`` (nucleus rule)."""
    if not isinstance(topic, str) or not topic:
        raise TopicError("Publish topic must not be empty")
    if any(char in topic for char in _PUBLISH_FORBIDDEN):
        raise TopicError("Publish topic must not contain a wildcard.")
    return topic


def validate_topic_filter(topic_filter: object) -> str:
    """A subscription filter: non-empty, and a ``#`` level only as the last level."""
    if not isinstance(topic_filter, str) or not topic_filter:
        raise TopicError("Subscribe topic must not be empty")
    levels = topic_filter.split(SEPARATOR)
    if MULTI_LEVEL in levels[:-1]:
        raise TopicError(
            f"Subscribe topic {topic_filter!r}: '#' must be the last level of a topic filter"
        )
    return topic_filter


def is_wildcard_filter(topic_filter: str) -> bool:
    """True if the filter uses ``+`` as a level or ``#`` as its last level."""
    levels = topic_filter.split(SEPARATOR)
    return SINGLE_LEVEL in levels or levels[-1] == MULTI_LEVEL


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Does a published ``topic`` match the subscription ``topic_filter``?"""
    if topic_filter == topic:
        return True
    filter_levels = topic_filter.split(SEPARATOR)
    topic_levels = topic.split(SEPARATOR)
    for index, level in enumerate(filter_levels):
        if level == MULTI_LEVEL and index == len(filter_levels) - 1:
            return len(topic_levels) > index
        if index >= len(topic_levels):
            return False
        if level != SINGLE_LEVEL and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)
