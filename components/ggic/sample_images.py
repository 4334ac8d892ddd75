"""Real photos for the demo and the tests, taken from a package that ships them.

scikit-image bundles a few well-known photos in ``skimage/data``. We copy them; we never
commit image binaries of our own. Found without importing scikit-image (slow to import).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

#: Photo file -> what a person sees in it.
SAMPLE_PHOTOS = {
    "chelsea.png": "a tabby cat",
    "coffee.png": "a cup of coffee",
    "rocket.jpg": "a rocket on its launch pad",
    "astronaut.png": "an astronaut (portrait)",
    "motorcycle_left.png": "a motorcycle",
}


class SamplePhotosMissing(RuntimeError):
    pass


def sample_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SamplePhotosMissing(
            "the sample photos come from scikit-image: pip install scikit-image "
            "(the README's set-up command installs it)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def sample_photo_paths() -> list[Path]:
    data = sample_data_dir()
    paths = [data / name for name in SAMPLE_PHOTOS]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise SamplePhotosMissing(f"scikit-image at {data} lacks {', '.join(missing)}")
    return paths


def copy_sample_photos(destination: Path) -> list[Path]:
    """Copy the sample photos into ``destination`` (created); the copies' paths."""
    destination.mkdir(parents=True, exist_ok=True)
    copies = []
    for source in sample_photo_paths():
        target = destination / source.name
        shutil.copyfile(source, target)
        copies.append(target)
    return copies
