"""Client-controlled text made safe to log or to quote in an error reply.

A request can carry any string: newlines that would forge log lines, control characters that
rewrite a terminal, lone surrogates that make a UTF-8 stream refuse (and ``logging`` drop) the
whole line, megabytes that would fill the log or overflow an IPC frame. :func:`escape` turns any
string into one bounded line of printable text: every character ``str.isprintable`` rejects
(control and format characters, line and paragraph separators, non-ASCII spaces, surrogates,
unassigned code points) is written as a Python-style escape (``\\n``, ``\\x1b``, ``\\udc80``,
``\\U000e0001``), and text past ``limit`` characters is cut and says how much was cut.

The output is printable, so escaping it again changes nothing.
"""

from __future__ import annotations

#: Characters of a client value quoted in an error reply or a log line.
QUOTE_LIMIT = 200
#: Characters of one whole log message (the logging formatter's cap).
LOG_MESSAGE_LIMIT = 2000

_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` as one printable line of at most ``limit`` characters before escaping (each
    escaped character becomes at most 10), with a note of how many characters were cut."""
    head = text[:limit]
    if not head.isprintable():
        head = "".join(char if char.isprintable() else _escape_char(char) for char in head)
    if len(text) > limit:
        head += f"...[{len(text) - limit} more characters]"
    return head


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A client value for an error message or a log line: strings escaped, cut and in double
    quotes; anything else only by its JSON type (its contents could be any size)."""
    if isinstance(value, str):
        return '"' + escape(value, limit) + '"'
    return f"a JSON {json_type(value)}"


def json_type(value: object) -> str:
    """The JSON name of a decoded JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def escape_lines(text: str, limit: int, indent: str = "    ") -> str:
    """Multi-line text we produced (a traceback) that may hold client text: each line
    escaped and indented, so no line of it can pass for a log record of its own."""
    cut = len(text) > limit
    lines = text[:limit].split("\n")
    out = [escape(line, limit) for line in lines]
    if cut:
        out.append(f"...[{len(text) - limit} more characters]")
    return indent + ("\n" + indent).join(out)
