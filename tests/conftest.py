"""Shared fixtures: real photos (from scikit-image's bundled data), decoded by OpenCV."""

from __future__ import annotations

from pathlib import Path

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
