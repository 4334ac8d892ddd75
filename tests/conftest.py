"""Shared fixtures: real photos (from scikit-image's bundled data), decoded by OpenCV; offline
AWS clients for the cloud tests; a folder another user can enter (shared_dir)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest

from ggic.sample_images import copy_sample_photos


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The sample photos (PNG and JPEG as shipped)."""
    return copy_sample_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def jpeg_photos(photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The sample photos re-encoded as JPEG (quality 92), as cameras deliver them."""
    out_dir = tmp_path_factory.mktemp("jpeg-photos")
    out = []
    for photo in photos:
        target = out_dir / (photo.stem + ".jpg")
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        assert cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        out.append(target)
    return out


@pytest.fixture
def stubs() -> Iterator[Callable[..., Any]]:
    """``stubs(region)`` makes a ``StubbedAws``; each one's queued responses must all be used."""
    from ggic.cloud.stubbed import StubbedAws

    made: list[StubbedAws] = []

    def make(region: str = "eu-west-1") -> StubbedAws:
        made.append(StubbedAws(region))
        return made[-1]

    yield make
    for stubbed in made:
        stubbed.verify()


@pytest.fixture
def socket_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short folder for an IPC socket (sun_path is 108 bytes)."""
    return Path(tmp_path_factory.mktemp("ipc"))


@pytest.fixture
def server(socket_dir: Path) -> Iterator[Any]:
    """A running ``ggic.local`` IPC server (no runtime around it)."""
    from ggic.local.ipc_server import IpcServer

    ipc = IpcServer(socket_dir / "ipc.sock")
    ipc.start()
    yield ipc
    ipc.close()


@pytest.fixture
def connect(server: Any) -> Iterator[Callable[..., Any]]:
    """``connect(name, **register)``: a real awsiotsdk client of ``server`` for a newly
    registered component; closed after the test."""
    from ipc_clients import clients_of

    with clients_of(server) as connect_to:
        yield connect_to


@pytest.fixture()
def shared_dir() -> Iterator[Path]:
    """A folder another user (``nobody``) can enter (pytest's own tmp folders are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="ggic-users-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
