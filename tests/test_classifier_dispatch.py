"""Unit tests of the classifier's pipeline queues (``ggic.classifier.dispatch``): a job that
finds the pipeline idle goes straight to the inference thread; otherwise jobs queue for the
workers, in order, within QueueSize; stops come after what is queued."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from ggic.classifier.dispatch import PipelineQueues
from ggic.classifier.inputs import InputLimits
from ggic.classifier.stages import STOP, Job, Prepared, Stop, WarmUp
from ggic.messages import ClassificationRequest, ImageSource, SourceKind


def job(name: str) -> Job:
    request = ClassificationRequest(name, ImageSource(SourceKind.PATH, f"/img/{name}.jpg"))
    return Job(request, "local/result", 5, 0.3, InputLimits(), time.perf_counter())


def prepared(item: Job) -> Prepared:
    return Prepared(item, None, None)  # type: ignore[arg-type] - only passed through here


def inference_waiting(queues: PipelineQueues) -> tuple[threading.Thread, list]:
    """An inference thread blocked in next_for_inference; what it takes lands in the list."""
    taken: list = []
    thread = threading.Thread(target=lambda: taken.append(queues.next_for_inference()),
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not queues._inference_idle:  # the thread is waiting
        assert time.monotonic() < deadline, "the inference thread never waited"
        time.sleep(0.001)
    return thread, taken


def test_a_job_that_finds_the_inference_thread_idle_goes_straight_to_it():
    queues = PipelineQueues(queue_size=4, ready_size=2)
    thread, taken = inference_waiting(queues)
    first = job("first")
    queues.submit(first)
    thread.join(5)
    assert taken == [first]
    assert queues.qsize() == 0
    # the inference thread is busy with it now: the next job queues for a worker
    second = job("second")
    queues.submit(second)
    assert queues.qsize() == 1
    assert queues.next_job() is second


def test_a_job_behind_queued_or_preparing_work_queues_in_order():
    queues = PipelineQueues(queue_size=4, ready_size=2)
    a, b, c = job("a"), job("b"), job("c")
    queues.submit(a)  # no inference thread waiting yet: queued
    assert queues.next_job() is a  # a worker prepares it
    thread, taken = inference_waiting(queues)
    queues.submit(b)  # a worker is still preparing a: b must not overtake it
    queues.submit(c)
    assert queues.qsize() == 2
    queues.prepared(prepared(a))
    thread.join(5)
    assert [t.job for t in taken] == [a]
    assert [queues.next_job(), queues.next_job()] == [b, c]


def test_queue_size_bounds_the_jobs_waiting_and_they_can_be_taken_back():
    queues = PipelineQueues(queue_size=2, ready_size=1)
    jobs = [job("a"), job("b")]
    for item in jobs:
        queues.submit(item)
    with pytest.raises(queue.Full):
        queues.submit(job("c"))
    assert queues.take_queued_jobs() == jobs
    assert queues.qsize() == 0
    queues.submit(job("d"))  # room again


def test_a_failed_preparation_frees_the_worker_so_the_shortcut_works_again():
    queues = PipelineQueues(queue_size=4, ready_size=1)
    a = job("a")
    queues.submit(a)
    assert queues.next_job() is a
    queues.prepared(None)  # answered with an error by the worker
    thread, taken = inference_waiting(queues)
    b = job("b")
    queues.submit(b)
    thread.join(5)
    assert taken == [b]


def test_stops_come_after_the_queued_work_and_a_full_ready_queue_times_out():
    queues = PipelineQueues(queue_size=4, ready_size=1)
    a = job("a")
    queues.submit(a)
    queues.stop_workers(2)
    assert queues.next_job() is a
    assert isinstance(queues.next_job(), Stop) and isinstance(queues.next_job(), Stop)
    queues.prepared(prepared(a))  # fills the ready queue (size 1)
    started = time.monotonic()
    assert not queues.put_for_inference(STOP, timeout=0.05)
    assert time.monotonic() - started >= 0.05
    assert queues.next_for_inference().job is a
    warm_up = WarmUp(pipeline=None)  # type: ignore[arg-type] - only passed through here
    assert queues.put_for_inference(warm_up, timeout=1)
    assert queues.next_for_inference() is warm_up
