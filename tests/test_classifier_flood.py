"""A flood from four processes through the real awsiotsdk client, then SIGTERM mid-flood: the
classifier (a real process, a real DLR model through libdlr.so, ggic.local's IPC server over a
real socket) answers every request delivered to it exactly once and exits 0 before Greengrass
would kill it (SIGKILL 5 s after SIGTERM).

The harness is the flood benchmark's (benchmarks/bench_flood.py): answers are counted
server-side (an in-process subscription) and by each client; the classifier logs how many
requests were delivered to it (its IPC callback ran)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_flood import run_flood  # noqa: E402

GREENGRASS_KILLS_AFTER_S = 5.0
BUDGET_S = 4.5


def test_a_four_process_flood_then_sigterm_loses_no_answer(tmp_path):
    report = run_flood(tmp_path, clients=4, sigterm_after=1.5, flood_after_sigterm=0.5)
    assert report.exit_code == 0, report.classifier_log[-3000:]
    assert report.delivered > 0, report.classifier_log[-3000:]
    assert "BUSY" in report.codes, report.line()  # it really was flooded
    # every delivered request answered once, seen the same by the server and the clients
    assert report.lost == 0, report.line()
    assert report.duplicates_server == 0 and report.duplicates_client == 0, report.line()
    assert report.answers_server == report.delivered == report.answers_client, report.line()
    assert "unanswered" in report.classifier_log and " 0 unanswered" in report.classifier_log
    stopping = report.classifier_log[report.classifier_log.find("received SIGTERM"):]
    assert report.sigterm_to_exit_s < BUDGET_S < GREENGRASS_KILLS_AFTER_S, (
        report.line() + "\n" + stopping)
