"""A long flood (8 s, four processes, the real awsiotsdk client, a real classifier process)
keeps the classifier's IPC callback queue at or under its cap (issue #8): the requests beyond
it are answered BUSY at once (counted "overflowed" in its last log line), so memory does not
grow with the flood's duration, and every delivered request still gets exactly one answer.
No timing is asserted; the harness is the flood benchmark's."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ggic.ipc_callbacks import MAX_BACKLOG

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_flood import run_flood  # noqa: E402


def test_a_long_flood_keeps_the_callback_queue_capped_and_answers_each_once(tmp_path):
    report = run_flood(tmp_path, clients=4, sigterm_after=8.0, flood_after_sigterm=0.5)
    log = report.classifier_log
    assert report.exit_code == 0, log[-3000:]
    found = re.search(r"(\d+) IPC callbacks waiting", log)
    assert found, log[-3000:]
    waiting = int(found.group(1))
    # + the stream-closed events of its subscriptions at SIGTERM, which are never overflowed
    assert waiting <= MAX_BACKLOG + 8, report.line()
    found = re.search(r"(\d+) overflowed, (\d+) dropped", log)
    assert found, log[-3000:]
    overflowed, dropped = (int(n) for n in found.groups())
    assert overflowed > 0, report.line()  # the cap was really reached
    assert report.lost == 0 and report.duplicates_server == 0, report.line()
    assert report.answers_server == report.delivered == report.answers_client, report.line()
    print(report.line(), f"waiting<={waiting} overflowed {overflowed} dropped {dropped}")
