"""What a topic the components publish on must look like.

The nucleus refuses a PublishToTopic whose topic holds ``+``, ``#`` or ``*`` ("Publish topic
must not contain a wildcard."; ``ggic.local.topics`` applies the same rule), so a result sent
there would be lost: such topics are refused where they enter (a request's ``reply_to``, the
topic settings). Topics are also printable text (no control characters or lone surrogates,
which would forge log lines or fail UTF-8 encoding) of at most :data:`MAX_TOPIC_BYTES` UTF-8
bytes, the limit AWS IoT Core puts on topic names.
"""

from __future__ import annotations

#: Characters the IPC refuses in a publish topic.
PUBLISH_FORBIDDEN_CHARS = "+#*"
MAX_TOPIC_BYTES = 256


def publish_topic_problem(topic: object) -> str | None:
    """Why ``topic`` cannot be published on, or None if it can."""
    if not isinstance(topic, str):
        return "must be a string"
    if not topic:
        return "must not be empty"
    if len(topic) > MAX_TOPIC_BYTES:  # (cheap first: a character is at least one byte)
        return f"must be at most {MAX_TOPIC_BYTES} UTF-8 bytes"
    if any(char in topic for char in PUBLISH_FORBIDDEN_CHARS):
        return ("must not contain the wildcards '+', '#' or '*' (the IPC refuses them in a "
                "publish topic)")
    if not topic.strip("/"):  # the nucleus's topic trie splits it into no level: refused
        return "must have a topic level (not only '/')"
    if not topic.isprintable():
        return "must be printable text (no control characters)"
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"must be at most {MAX_TOPIC_BYTES} UTF-8 bytes"
    return None
