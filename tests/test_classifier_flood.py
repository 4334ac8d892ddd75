"""A flood from four processes through the real awsiotsdk client, then SIGTERM mid-flood: the
classifier (a real process, a real DLR model through libdlr.so, ggic.local's IPC server over a
real socket) answers every request its request callback received exactly once and exits 0
before Greengrass would kill it (SIGKILL 5 s after SIGTERM).

"Received" is every invocation of the classifier's request callback (its last log line): what
the SDK handed to the process, whether it was classified, refused or arrived while stopping.
What the server wrote but the classifier never read (backpressure: its callback waits while
MAX_OWED + QueueSize answers are owed, and the request connection is closed at the end) was
never delivered. The harness is the flood benchmark's (benchmarks/bench_flood.py): answers are
counted server-side (an in-process subscription) and by each client."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_flood import run_flood  # noqa: E402

GREENGRASS_KILLS_AFTER_S = 5.0
BUDGET_S = 4.5


def test_a_four_process_flood_then_sigterm_answers_everything_received(tmp_path):
    report = run_flood(tmp_path, clients=4, sigterm_after=1.5, flood_after_sigterm=0.5)
    log = report.classifier_log
    assert report.exit_code == 0, log[-3000:]
    assert report.received > 0, log[-3000:]
    assert "BUSY" in report.codes, report.line()  # it really was flooded
    # it was flooded beyond what it could take in: the server wrote more than it read
    assert report.written > report.received, report.line()
    # every request received answered once, seen the same by the server and the clients
    assert report.lost == 0, report.line()
    assert report.duplicates_server == 0 and report.duplicates_client == 0, report.line()
    assert report.answers_server == report.received == report.answers_client, report.line()
    assert " 0 unanswered" in log, log[-3000:]
    stopping = log[log.find("received SIGTERM"):]
    assert report.sigterm_to_exit_s < BUDGET_S < GREENGRASS_KILLS_AFTER_S, (
        report.line() + "\n" + stopping)
