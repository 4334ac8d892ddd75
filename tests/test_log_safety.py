"""Logs under hostile input (issue #8.8, #8.3): client text is escaped and capped, so it cannot
forge a line or make logging drop one; rate-limited warnings log at most one line per interval;
a 20,000-request flood of BUSY and invalid requests adds well under 1 MB of log; and every
message the intake receives gets exactly one answer, whatever exception its content raises.

The same escaping is checked in a real classifier process's log by test_contract_live.py.
"""

from __future__ import annotations

import io
import logging
import time

import pytest

from ggic.log_text import escape, escape_lines, quote
from ggic.rate_limited_log import RateLimitedCounter
from ggic.runtime_support import LOG_FORMAT, SafeFormatter
from intake_harness import Intake

HOSTILE = "id\n2026-01-01 00:00:00,000 ERROR ggic: FORGED\r\x1b[2J\u2028\ud800-\udfff\x00"


class ByteLog:
    """A root handler with the components' formatter writing strict UTF-8 into memory, as a
    component's stdout does: what it holds is what would reach the log file."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.stream = io.TextIOWrapper(self.buffer, encoding="utf-8", errors="strict",
                                       write_through=True)
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(SafeFormatter(LOG_FORMAT))
        self.errors: list[logging.LogRecord] = []
        self.handler.handleError = self.errors.append  # type: ignore[method-assign]

    def __enter__(self) -> ByteLog:
        root = logging.getLogger()
        self.level = root.level
        root.addHandler(self.handler)
        root.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.level)

    @property
    def lines(self) -> list[str]:
        return self.buffer.getvalue().decode("utf-8").splitlines()


@pytest.fixture
def intake():
    made: list[Intake] = []

    def make(**config) -> Intake:
        made.append(Intake(**config))
        return made[-1]

    yield make
    for one in made:
        one.close()


# --- escaping ---------------------------------------------------------------------------------


def test_escape_makes_one_printable_line_and_says_what_it_cut():
    assert escape("plain text é") == "plain text é"
    text = escape(HOSTILE)
    assert text.isprintable() and "\n" not in text
    assert "\\n2026" in text and "\\x1b" in text and "\\ud800" in text and "\\u2028" in text
    assert escape(text) == text  # escaping twice changes nothing
    cut = escape("x" * 10_000, 100)
    assert cut.startswith("x" * 100) and cut.endswith("...[9900 more characters]")
    assert quote("a\nb") == '"a\\nb"' and quote(["big"] * 10**6) == "a JSON array"
    assert escape_lines("Traceback\n  File x\nValueError: a\rb", 1000).splitlines() == [
        "    Traceback", "      File x", "    ValueError: a\\rb"]


def test_the_formatter_escapes_messages_and_tracebacks_and_never_drops_a_line():
    log = logging.getLogger("ggic.test")
    with ByteLog() as out:
        log.warning("unknown field %s", HOSTILE)
        log.warning("huge %s", "y" * 100_000)
        try:
            raise ValueError(HOSTILE)
        except ValueError:
            log.exception("failed on %s", HOSTILE)
    assert out.errors == []  # nothing dropped (a lone surrogate used to drop the line)
    lines = out.lines
    assert not any("FORGED" in line and not line.startswith(("20", "    ")) for line in lines)
    records = [line for line in lines if not line.startswith(" ")]
    assert len(records) == 3
    assert all(line.isprintable() for line in lines)
    assert max(len(line) for line in lines) < 2200
    assert "\\ud800-\\udfff" in records[0]


def test_a_rate_limited_warning_logs_one_line_per_interval_with_the_count(caplog):
    counter = RateLimitedCounter("refused %d in %.1f s%s", interval=3600.0,
                                 logger=logging.getLogger("ggic.test"))
    with caplog.at_level(logging.WARNING, "ggic.test"):
        for _ in range(1000):
            counter.note()
        assert [r.getMessage().split(" in ")[0] for r in caplog.records] == ["refused 1"]
        counter.flush()
        counter.flush()  # nothing new: no line
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == [
        "refused 1", "refused 999"]


def test_a_rate_limited_warning_logs_the_rest_after_the_interval_by_itself(caplog):
    counter = RateLimitedCounter("n=%d %.1f%s", interval=1.0,
                                 logger=logging.getLogger("ggic.test"))

    def counted() -> int:
        return sum(int(r.getMessage().split()[0][2:]) for r in caplog.records)

    with caplog.at_level(logging.WARNING, "ggic.test"):
        counter.note()
        counter.note(" later")
        counter.note(" last")  # no event after this one: the timer (or nothing) must log it
        deadline = time.monotonic() + 20
        while counted() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("n=1 ") and messages[-1].endswith(" last")
    assert counted() == 3 and len(messages) <= 3


# --- the classifier's intake ------------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    b"[" * 100_000 + b"]" * 100_000,
    "{" + '"a":{' * 50_000 + "}" * 50_001,
    {"request_id": "keep", "image_path": "p" * 20_000_000},
    b'{"request_id": "x", "image_path": "/a\xed\xa0\x80.jpg"}',
    {"request_id": "keep", "reply_to": "replies/*", "image_path": "/a.jpg"},
    {"request_id": "keep\n", "image_path": "/a.jpg"},
])
def test_every_message_gets_exactly_one_answer_and_nothing_stays_pending(intake, payload):
    h = intake()
    h.send(payload)
    ((topic, result),) = h.wait_results(1)
    assert h.service.wait_idle(5), "a message left pending"
    assert topic == "local/result" and result["status"] == "error"
    assert result["error"]["code"] == "INVALID_REQUEST"
    assert len(str(result)) < 16 * 1024


def test_hostile_text_in_a_request_is_logged_escaped(intake):
    h = intake()
    with ByteLog() as out:
        h.send({"request_id": "evil", "image_path": "/a.jpg", HOSTILE: 1})
        h.wait_results(1)
    assert out.errors == []
    refused = [line for line in out.lines if "evil" in line]
    assert len(refused) == 1 and "\\n2026-01-01" in refused[0] and "\\ud800" in refused[0]
    assert not any(line.startswith("2026-01-01 00:00:00,000") for line in out.lines)


def test_a_flood_of_busy_and_invalid_requests_adds_under_1_mb_of_log(intake):
    h = intake(QueueSize="1", Workers="1")
    h.pipeline.gate.clear()  # inference blocked: the queue stays full, the rest is BUSY
    n = 20_000
    with ByteLog() as out:
        for i in range(n // 2):
            h.send({"request_id": f"busy-{i}", "image_path": f"/img/{i}.jpg"})
            h.send({"request_id": f"bad-{i}", "image_path": f"relative/{i}.jpg",
                    f"field\n{i}": "x" * 300})
        h.pipeline.gate.set()
        results = h.wait_results(n)
        assert h.service.wait_idle(30)
        written = len(out.buffer.getvalue())
    codes = {m.get("error", {}).get("code", "ok") for _, m in results}
    assert codes == {"ok", "BUSY", "INVALID_REQUEST"}
    assert len({m["request_id"] for _, m in results}) == n
    assert written < 1_000_000, f"{written} bytes of log for {n} requests"
    assert any("BUSY" in line for line in out.lines)
    assert any("refused" in line and "bad-" in line for line in out.lines)


def test_flushing_a_rate_limited_warning_stops_its_timer(caplog):
    """A stopping service flushes its counters: the count is logged then, and no timer thread
    is left to log after the service (or the process's logging) is gone."""
    counter = RateLimitedCounter("n=%d %.1f%s", interval=3600.0,
                                 logger=logging.getLogger("ggic.test"))
    with caplog.at_level(logging.WARNING, "ggic.test"):
        counter.note()
        counter.note(" counted")  # within the interval: counted, and a timer is armed
        timer = counter._timer
        assert timer is not None and timer.is_alive()
        counter.flush()
        timer.join(2.0)
    assert not timer.is_alive()
    assert [r.getMessage().split()[0] for r in caplog.records] == ["n=1", "n=1"]
