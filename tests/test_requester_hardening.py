"""The requester under hostile traffic on its result topic (issue #8, last point): whatever
arrives there (any JSON, any bytes, results carrying its own ids with malformed bodies, huge
fields) never raises in its callback, never takes the place of its real answer, and reaches
its log only escaped and cut. The last test runs the real requester process over the real SDK
against a hostile "classifier" on the local IPC server.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz_strategies import any_text, binary_payloads, fuzz_settings, json_values, nasty_text
from ggic.local.ipc_server import IpcServer
from ggic.messages import ClassificationResult, new_request_id
from ggic.requester.service import Outcome, ResultWaiter, format_outcome
from test_components_ipc import REQUESTER, component_env, register_from_recipe
from test_log_safety import HOSTILE, ByteLog


def genuine(request_id: str) -> dict:
    return {"request_id": request_id, "status": "ok",
            "predictions": [{"label": "tabby", "class_id": 281, "score": 0.8}],
            "model": {"name": "m", "profile": "p"}, "timing_ms": {"total": 3.0}}


def malformed_bodies() -> st.SearchStrategy:
    """Bodies that break the result contract somewhere (with the right id and status)."""
    not_str = st.none() | st.booleans() | st.integers() | st.floats() | st.lists(st.integers())
    not_list = st.none() | st.booleans() | st.integers() | any_text | st.dictionaries(
        any_text, st.integers(), max_size=3)
    bad_prediction = st.fixed_dictionaries({"label": not_str, "class_id": st.integers(),
                                            "score": st.floats(0, 1)}) \
        | st.fixed_dictionaries({"label": any_text, "class_id": st.floats() | any_text,
                                 "score": st.floats(0, 1)}) \
        | st.fixed_dictionaries({"label": any_text, "class_id": st.integers(),
                                 "score": st.sampled_from([float("nan"), float("inf"), "1"])}) \
        | not_str
    return st.one_of(
        st.fixed_dictionaries({"status": st.just("error"), "error": not_str | any_text}),
        st.fixed_dictionaries({"status": st.just("error"),
                               "error": st.fixed_dictionaries({"code": not_str,
                                                               "message": any_text})}),
        st.fixed_dictionaries({"status": st.just("error"),
                               "error": st.fixed_dictionaries({"code": any_text,
                                                               "message": not_str})}),
        st.fixed_dictionaries({"status": st.just("ok"), "predictions": not_list}),
        st.fixed_dictionaries({"status": st.just("ok"),
                               "predictions": st.lists(bad_prediction, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"status": st.just("ok"),
                               "predictions": st.just([genuine("x")["predictions"][0]] * 101)}),
        st.fixed_dictionaries({"status": st.just("ok"),
                               "model": not_str | st.dictionaries(any_text, not_str,
                                                                  min_size=1)}),
        st.fixed_dictionaries({"status": st.just("ok"),
                               "timing_ms": st.dictionaries(any_text, any_text | st.none(),
                                                            min_size=1)}),
        st.fixed_dictionaries({"status": json_values(5).filter(
            lambda s: s not in ("ok", "error"))}),
    )


def feed_then_answer(waiter: ResultWaiter, junk: list) -> None:
    rid = new_request_id()
    slot = waiter.expect(rid)
    for item in junk:
        payload = {**item, "request_id": rid} if isinstance(item, dict) and "status" in item \
            else item
        waiter.on_result("local/result", payload)  # must not raise
    assert slot.empty(), "a malformed message took the place of the real answer"
    waiter.on_result("local/result", genuine(rid))
    got = slot.get_nowait()
    assert got.ok and got.request_id == rid and got.predictions[0].label == "tabby"


#: One waiter for all examples, as in the requester (each example waits for a new id).
WAITER = ResultWaiter()


@fuzz_settings(200)
@given(st.lists(json_values() | binary_payloads(), max_size=4))
def test_any_traffic_on_the_result_topic_is_ignored_and_the_answer_gets_through(junk):
    feed_then_answer(WAITER, junk)


@fuzz_settings(250)
@given(st.lists(malformed_bodies(), min_size=1, max_size=3))
def test_malformed_results_with_our_own_id_do_not_take_the_real_answers_place(junk):
    feed_then_answer(WAITER, junk)


def test_huge_and_deep_results_are_ignored_quickly():
    waiter = ResultWaiter()
    feed_then_answer(waiter, [b"[" * 200_000 + b"]" * 200_000,
                              {"status": "ok", "predictions": [{"label": "x"}] * 1_000_000},
                              {"status": "error", "error": {"code": "X" * 10_000_000}}])


@fuzz_settings(200)
@given(label=any_text | nasty_text, message=any_text | nasty_text, code=nasty_text)
def test_what_a_result_says_is_logged_on_one_escaped_line(label, message, code):
    ok = ClassificationResult.from_dict({**genuine("r"), "predictions": [
        {"label": label + HOSTILE, "class_id": 1, "score": 0.5}] * 100})
    error = ClassificationResult.from_dict(
        {"request_id": "e" + HOSTILE, "status": "error",
         "error": {"code": code + "\n", "message": message + HOSTILE * 1000}})
    for result in (ok, error):
        line = format_outcome(Outcome(Path("img\n.jpg"), result.request_id, result))
        assert line.isprintable() and len(line) < 3000, line


def test_the_requesters_log_lines_escape_hostile_results():
    waiter = ResultWaiter()
    rid = new_request_id()
    slot = waiter.expect(rid)
    with ByteLog() as out:
        waiter.on_result("local/result", {"request_id": rid + HOSTILE, "status": "bad"})
        waiter.on_result("local/result", HOSTILE.encode("utf-8", "surrogatepass"))
        waiter.on_result("local/result", {**genuine(rid), "predictions": [
            {"label": HOSTILE * 100, "class_id": 1, "score": 0.5}]})
        result = slot.get_nowait()
        logging.getLogger("ggic.requester.service").info(
            "%s", format_outcome(Outcome(Path("a.jpg"), rid, result)))
    assert out.errors == []
    assert not any(line.startswith("2026-01-01") for line in out.lines)
    assert len(out.lines) == 2  # the first ignored message; the second waits for the interval
    assert all(len(line) < 3000 for line in out.lines)


@pytest.fixture
def hostile_world(tmp_path, photos):
    images = tmp_path / "images"
    images.mkdir()
    (images / photos[0].name).write_bytes(photos[0].read_bytes())
    server = IpcServer(tmp_path / "ipc.socket")
    register_from_recipe(server, REQUESTER, ImageDirectory=str(images), ResultTimeout="20")
    server.start()

    def answer(_topic, request):
        rid = request["request_id"]
        for junk in ({"request_id": rid, "status": "ok", "predictions": {}},
                     {"request_id": rid, "status": "error", "error": ["boom"]},
                     {"request_id": rid, "status": "ok",
                      "predictions": [{"label": "x", "class_id": 1, "score": "high"}]},
                     b"[" * 100_000, b"\xff\xfe" + HOSTILE.encode("utf-8", "surrogatepass")):
            server.publish("local/result", junk)
        server.publish("local/result", {**genuine(rid), "predictions": [
            {"label": "tabby" + HOSTILE, "class_id": 281, "score": 0.8}]})

    unsubscribe = server.subscribe("local/inference", answer)
    try:
        yield server
    finally:
        unsubscribe()
        server.stop()


def test_the_real_requester_survives_a_hostile_result_topic(hostile_world):
    done = subprocess.run(
        [sys.executable, "-m", "ggic", "requester", "--once", "--json"],
        env=component_env(hostile_world, REQUESTER), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    outcomes = [json.loads(line) for line in done.stdout.splitlines() if line.startswith(b"{")]
    assert len(outcomes) == 1 and outcomes[0]["status"] == "ok", done.stdout
    assert outcomes[0]["predictions"][0]["label"].startswith("tabby")
    log = done.stderr.decode("utf-8")  # strict: a lone surrogate would fail here
    assert "Logging error" not in log and "Traceback" not in log, log
    assert not any(line.startswith("2026-01-01") for line in log.splitlines()), log
    assert "ignored" in log and "malformed result" in log
