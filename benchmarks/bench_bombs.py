"""Memory of a decompression bomb: refused by the classifier's decode vs decoded by OpenCV.

For each bomb of tests/image_bombs.py (12000x12000 images in a few bytes to 140 KB), two
fresh interpreters run side by side: one hands the file to ``decode_image`` (header checks,
then OpenCV), the other straight to ``cv2.imdecode`` (what happened to WebP, TIFF and JPEG
2000 before the header checks). Each prints its peak RSS above idle (ru_maxrss) and the
outcome. Repeated; the median is printed. Memory, not time: the figures hardly vary.

    .venv/bin/python benchmarks/bench_bombs.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import image_bombs  # noqa: E402

BOMBS = {
    "PNG": image_bombs.png_bomb, "JPEG": image_bombs.jpeg_bomb,
    "WebP (VP8L)": image_bombs.webp_bomb, "WebP (VP8X)": image_bombs.webp_vp8x_bomb,
    "TIFF": image_bombs.tiff_bomb, "JPEG 2000": image_bombs.jpeg2000_bomb,
}

CHILD = """
import json, resource, sys
from ggic.classifier.decode import decode_image
from ggic.messages import ClassificationError
import cv2, numpy as np
data = open(sys.argv[2], "rb").read()
idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    if sys.argv[1] == "classifier":
        decode_image(data, max_pixels=40_000_000)
        outcome = "decoded"
    else:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        outcome = "decoded" if image is not None else "not decoded"
except ClassificationError as exc:
    outcome = exc.code.value
except cv2.error:
    outcome = "cv2.error"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "mib": (peak - idle) / 1024}))
"""


def measure(mode: str, path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    done = subprocess.run([sys.executable, "-c", CHILD, mode, str(path)], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {platform.platform()}")
    print(f"{'bomb':<12} {'bytes':>7}  {'classifier: outcome':<22} {'MiB':>6}   "
          f"{'cv2.imdecode: outcome':<22} {'MiB':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in BOMBS.items():
            path = Path(tmp) / "bomb"
            path.write_bytes(make())
            runs: dict[str, list[dict]] = {"classifier": [], "opencv": []}
            for _ in range(args.runs):  # interleaved
                for mode in runs:
                    runs[mode].append(measure(mode, path))
            row = [f"{name:<12} {path.stat().st_size:>7}"]
            for mode in runs:
                mib = statistics.median(r["mib"] for r in runs[mode])
                row.append(f"{runs[mode][-1]['outcome']:<22} {mib:>6.1f}")
            print("  ".join(row))


if __name__ == "__main__":
    main()
