"""benchmarks/perf_service.py: the classifier process measured through the real awsiotsdk, with
``ggic.local``'s IPC server in a process of its own (as the nucleus runs on a device, so that it
does not share the benchmark clients' interpreter lock), and the CPU of all three processes
counted. Real processes, a real model on libdlr.so, real JPEGs; no timing is asserted."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from perf_server import IpcServerProcess  # noqa: E402
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


def test_the_ipc_server_runs_in_its_own_process_and_every_process_cpu_is_counted(
        tiny_model: Path, jpeg_photos: list[Path]) -> None:
    service = ClassifierUnderTest(tiny_model, jpeg_photos[0].parent, clients=2)
    server = service.server
    try:
        assert isinstance(server, IpcServerProcess)
        assert len({os.getpid(), service.process.pid, server.process.pid}) == 3
        seconds, result = service.request(1, jpeg_photos[0])
        assert seconds > 0 and result["status"] == "ok" and result["predictions"]
        before = service.cpu_s()
        assert pipelined_images_per_s(service, jpeg_photos, 3) > 0
        per_image = cpu_ms_per_image(before, service.cpu_s(), 2 * 3)
        assert set(per_image) == {"classifier", "ipc_server", "clients"}
        assert all(ms >= 0 for ms in per_image.values())
        # each process's own count (clock ticks: too coarse for six images, not for start-up)
        assert all(seconds > 0 for seconds in service.cpu_s().values())
    finally:
        service.close()
    assert server.process.poll() is not None  # stopped with the service
    assert not server.socket_path.exists()


def test_cpu_per_image_leaves_out_what_proc_could_not_tell() -> None:
    before = {"classifier": 1.0, "ipc_server": None, "clients": 2.0}
    after = {"classifier": 1.5, "ipc_server": 3.0, "clients": 2.25}
    assert cpu_ms_per_image(before, after, 5) == {"classifier": 100.0, "clients": 50.0}
