"""Local pub/sub topics and topic filters, matched as the nucleus's ``SubscriptionTrie`` does.

Topics and filters are split into levels as Java's ``String.split("/")`` splits them: trailing
empty levels are dropped, so ``a/b/`` is the topic ``a/b`` (and a filter ``a/b/`` is ``a/b``).
A filter level that is exactly ``+`` matches any one level (an empty one too); a last level
that is exactly ``#`` matches one or more further levels (``sensors/#`` does **not** match
``sensors``, unlike MQTT 3.1.1 section 4.7.1.2); a ``#`` level before the end matches exactly
one level, as the trie walks it (``a/#/c`` matches ``a/x/c``). ``+`` or ``#`` inside a longer
level (``a+``, ``b#``) are ordinary characters. A filter of only ``/`` (no level) is accepted
and matches nothing; publishing to such a topic fails in the nucleus (its trie indexes the
first level of an empty split) and is refused here.
"""

from __future__ import annotations

SEPARATOR = "/"
SINGLE_LEVEL = "+"
MULTI_LEVEL = "#"
_PUBLISH_FORBIDDEN = ("+", "#", "*")


class TopicError(ValueError):
    """A topic or topic filter that cannot be used."""


class NoTopicLevelError(TopicError):
    """A topic of only ``/``: the nucleus cannot route it (an internal error there)."""


def topic_levels(text: str) -> list[str]:
    """``text.split("/")`` as Java splits it: trailing empty levels dropped."""
    levels = text.split(SEPARATOR)
    while levels and levels[-1] == "":
        levels.pop()
    return levels


def validate_publish_topic(topic: object) -> str:
    """A topic to publish on: a non-empty string without ``+``, ``#`` or ``*`` (nucleus rule),
    with at least one level."""
    if not isinstance(topic, str) or not topic:
        raise TopicError("Publish topic must not be empty")
    if any(char in topic for char in _PUBLISH_FORBIDDEN):
        raise TopicError("Publish topic must not contain a wildcard.")
    if not topic_levels(topic):
        raise NoTopicLevelError(f"Publish topic {topic!r} has no topic level")
    return topic


def validate_topic_filter(topic_filter: object) -> str:
    """A subscription filter: any non-empty string (the nucleus's validateSubTopic)."""
    if not isinstance(topic_filter, str) or not topic_filter:
        raise TopicError("Subscribe topic must not be empty")
    return topic_filter


def is_wildcard_filter(topic_filter: str) -> bool:
    """True if the filter uses ``+`` as a level or ``#`` as its last level
    (``SubscriptionTrie.isWildcard``)."""
    levels = topic_levels(topic_filter)
    return SINGLE_LEVEL in levels or (bool(levels) and levels[-1] == MULTI_LEVEL)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Does a published ``topic`` match the subscription ``topic_filter``?"""
    filter_levels = topic_levels(topic_filter)
    levels = topic_levels(topic)
    if not filter_levels or not levels:
        return False
    for index, level in enumerate(filter_levels):
        if level == MULTI_LEVEL and index == len(filter_levels) - 1:
            return len(levels) > index
        if index >= len(levels):
            return False
        if level not in (SINGLE_LEVEL, MULTI_LEVEL) and level != levels[index]:
            return False
    return len(filter_levels) == len(levels)
