"""A long flood (four processes, the real awsiotsdk client, a real classifier process) keeps
what the classifier holds bounded (issue #8): its request callback waits while MAX_OWED +
QueueSize answers are owed, so the SDK stops reading and the flood waits unread on the server's
side (written there, never received); at most that many answers are ever queued, whatever the
flood's duration, and every request received is answered exactly once. No timing is asserted;
the harness is the flood benchmark's."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ggic.classifier.service import MAX_OWED

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_flood import run_flood  # noqa: E402

QUEUE_SIZE = 32  # the harness's


def test_a_long_flood_keeps_the_answers_owed_bounded_and_answers_each_once(tmp_path):
    report = run_flood(tmp_path, clients=4, sigterm_after=6.0, flood_after_sigterm=0.5,
                       queue_size=QUEUE_SIZE)
    log = report.classifier_log
    assert report.exit_code == 0, log[-3000:]
    found = re.search(r"at most (\d+) answers were queued", log)
    assert found, log[-3000:]
    queued = int(found.group(1))
    # + the callbacks a stop releases (at most a few)
    assert queued <= MAX_OWED + QUEUE_SIZE + 8, report.line()
    assert report.written > report.received, report.line()  # the rest waited unread
    assert report.lost == 0 and report.duplicates_server == 0, report.line()
    assert report.answers_server == report.received == report.answers_client, report.line()
    print(report.line(), f"at most {queued} answers queued")
