"""benchmarks/perf_service.py: the classifier process measured through the real awsiotsdk, the
CPU of the classifier process, of ``ggic.local``'s IPC server thread and of the SDK clients
counted apart. Real processes, a real model on libdlr.so, real JPEGs; no timing is asserted."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from perf_cpu import thread_cpu_s, threads_and_rest_cpu_s, threads_started_by  # noqa: E402
from perf_service import (  # noqa: E402
    ClassifierUnderTest,
    cpu_ms_per_image,
    pipelined_images_per_s,
)

from ggic.modelgen.testnets import write_modelstore_like  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-service") / "tiny"
    write_modelstore_like(out, num_classes=10, size=224)
    return out


def test_the_cpu_of_classifier_ipc_server_and_clients_is_counted_apart(
        tiny_model: Path, jpeg_photos: list[Path]) -> None:
    service = ClassifierUnderTest(tiny_model, jpeg_photos[0].parent, clients=2)
    try:
        assert [thread.name for thread in service.server_threads] == ["ggic-ipc-server"]
        seconds, result = service.request(1, jpeg_photos[0])
        assert seconds > 0 and result["status"] == "ok" and result["predictions"]
        before = service.cpu_s()
        assert pipelined_images_per_s(service, jpeg_photos, 3) > 0
        after = service.cpu_s()
        per_image = cpu_ms_per_image(before, after, 2 * 3)
        assert set(per_image) == {"classifier", "ipc_server", "clients"}
        assert all(ms >= 0 for ms in per_image.values())
        # each count so far (clock ticks: too coarse for six images, not for start-up)
        assert after["classifier"] > 0 and after["clients"] > 0
    finally:
        service.close()


def test_a_thread_cpu_is_its_own_and_threads_started_are_found() -> None:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    started = threads_started_by(
        lambda: threading.Thread(target=spin, name="bench-spin").start())
    try:
        assert [thread.name for thread in started] == ["bench-spin"]
        stop.wait(0.3)
        assert (thread_cpu_s(started[0]) or 0.0) > 0.0
        assert thread_cpu_s(threading.Thread()) is None  # not started: no native id
    finally:
        stop.set()
        started[0].join()


def test_the_rest_of_this_process_never_goes_backwards_while_a_thread_runs() -> None:
    # /proc scales a thread's and the process's figures apart: their difference stepped back
    # by a whole tick (10 ms) dozens of times a second, and CI once saw negative client CPU
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(2000))
            stop.wait(0.0005)

    thread = threading.Thread(target=spin, name="bench-spin")
    thread.start()
    try:
        rests = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            sum(range(500))
            threads_s, rest_s = threads_and_rest_cpu_s([thread])
            assert threads_s is not None
            rests.append(rest_s)
        steps = [later - earlier for earlier, later in zip(rests, rests[1:])]
        # reading two clocks one after the other leaves microseconds of slack, not ticks
        assert len(steps) > 1000 and min(steps) > -0.001
    finally:
        stop.set()
        thread.join()
    assert threads_and_rest_cpu_s([thread])[0] is None  # ended: cannot be read


def test_cpu_per_image_leaves_out_what_proc_could_not_tell() -> None:
    before = {"classifier": 1.0, "ipc_server": None, "clients": 2.0}
    after = {"classifier": 1.5, "ipc_server": 3.0, "clients": 2.25}
    assert cpu_ms_per_image(before, after, 5) == {"classifier": 100.0, "clients": 50.0}
