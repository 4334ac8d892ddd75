"""A/B of two source trees on target 1 of ``run_all.py``: the overhead beyond the model of one
request at a time (a 640x480 JPEG ``image_path`` request through the real awsiotsdk client to
the classifier process, publish -> result minus the inference time the service reports),
alternating the trees in one process run.

    python benchmarks/bench_overhead_ab.py --base DIR --new DIR [--rounds 8] [--requests 60]

Each tree gets its own ``ggic.local`` IPC server and classifier process (``perf_service.py`` of
that tree, recipe defaults, the EfficientNet-Lite0 demo model); each round measures
``--requests`` requests on each, in alternating order. Prints each run's median overhead and
inference, and the per-round differences new - base (see ``ab_trees.py``): the model's time,
which the machine's load moves most, drops out of the figure.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

import cv2
from ab_trees import (
    ab_parser,
    alternating,
    demo_model,
    load_from_tree,
    machine_line,
    print_differences,
    trees_of,
)

SIZE = (640, 480)


def write_images(folder: Path) -> list[Path]:
    """The sample photos as 640x480 JPEGs (what run_all's target 1 sends)."""
    from ggic.sample_images import copy_sample_photos

    images = []
    for photo in copy_sample_photos(folder / "photos"):
        path = folder / f"{photo.stem}.jpg"
        cv2.imwrite(str(path), cv2.resize(cv2.imread(str(photo), cv2.IMREAD_COLOR), SIZE))
        images.append(path)
    return images


def main() -> None:
    parser = ab_parser(__doc__, rounds=8)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    trees = trees_of(args)
    perf = {label: load_from_tree(tree, "perf_service", label) for label, tree in trees.items()}
    load_at_start = os.getloadavg()[0]
    results: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
    with tempfile.TemporaryDirectory(prefix="ggic-bench-overhead-ab-") as tmp:
        work = Path(tmp)
        model_dir = demo_model(args.model_dir, work)
        images = write_images(work)
        services = {}
        try:
            for label, module in perf.items():  # each starts its classifier from its own tree
                services[label] = module.ClassifierUnderTest(model_dir, work, clients=1)
            for round_, label in alternating(args.rounds):
                _trips, inference, overhead = perf[label].overhead_ms(
                    services[label], images, args.requests)
                result = {"overhead": statistics.median(overhead),
                          "inference": statistics.median(inference)}
                results[label].append(result)
                print(f"round {round_} {label:4s}: overhead median {result['overhead']:.3f} ms; "
                      f"inference median {result['inference']:.2f} ms", flush=True)
        finally:
            for service in services.values():
                service.close()
    print(machine_line(load_at_start, f"{args.requests} requests per run, {args.rounds} rounds"))
    for label, runs in results.items():
        print(f"{label:4s} ({trees[label]}): overhead, median of the run medians "
              f"{statistics.median(r['overhead'] for r in runs):.3f} ms")
    print_differences(results, [("overhead", "overhead beyond the model")])


if __name__ == "__main__":
    main()
