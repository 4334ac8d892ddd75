"""Preprocessing speed: full JPEG decode vs the reduced (DCT-scaled) decode the classifier uses.

Prints medians over repeated runs for camera-sized JPEGs made from the sample photos, and the
speed-up measured in the same run. Figures, not assertions: machines here are shared and noisy.

    .venv/bin/python benchmarks/bench_preprocess.py
"""

from __future__ import annotations

import statistics
import time

import cv2

from ggic.classifier.decode import decode_image, image_dimensions
from ggic.classifier.preprocess import needed_decode_size, preprocess
from ggic.classifier.profiles import BUILTIN_PROFILES
from ggic.sample_images import sample_photo_paths

SIZES = ((640, 480), (1920, 1080), (4032, 3024))
RUNS = 30


def median_ms(fn) -> float:
    fn()
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def main() -> None:
    profile = BUILTIN_PROFILES["neo-vgg16"]
    photo = cv2.imread(str(sample_photo_paths()[0]))
    print(f"{'JPEG size':>11}  {'full decode':>12}  {'reduced':>9}  {'speed-up':>8}  factor")
    for width, height in SIZES:
        big = cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC)
        data = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        dims = image_dimensions(data)
        needed = needed_decode_size(dims[0], dims[1], profile)

        def full(data: bytes = data) -> None:
            preprocess(decode_image(data, max_pixels=10**9), profile)

        def reduced(data: bytes = data, needed: tuple[int, int] = needed) -> None:
            preprocess(decode_image(data, max_pixels=10**9, needed=needed), profile)

        full_ms, reduced_ms = median_ms(full), median_ms(reduced)
        factor = width // decode_image(data, max_pixels=10**9, needed=needed).shape[1]
        print(f"{width:>5}x{height:<5}  {full_ms:>9.2f} ms  {reduced_ms:>6.2f} ms  "
              f"{full_ms / reduced_ms:>7.1f}x  1/{factor}")


if __name__ == "__main__":
    main()
