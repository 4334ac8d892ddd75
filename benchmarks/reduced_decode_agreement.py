"""How often the classifier's reduced JPEG decode gives the full decode's top-1, beyond the test.

    .venv/bin/python benchmarks/reduced_decode_agreement.py [--model DIR]

``tests/test_reduced_decode_top1.py`` checks the sample photos at the camera sizes the rule was
chosen on. This prints the same comparison on more of scikit-image's bundled images (textures
and scientific images besides the photos) and more sizes, for the rule the classifier uses
(``preprocess.jpeg_reduction``) and for one step more reduction: each JPEG (quality 92) through
the real EfficientNet-Lite0, the classifier's ``prepare`` against a full decode + the same
preprocessing, with the full decode's top-2 margin (logits): a near-tie flips with any change.
For scale, the last count is how often a change nobody would call wrong, the full decode
resized bilinearly instead of bicubically, keeps the top-1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np

from ggic.classifier.decode import decode_image
from ggic.classifier.inputs import InputLimits
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline
from ggic.classifier.preprocess import jpeg_reduction, preprocess
from ggic.classifier.profiles import resolve_profile
from ggic.messages import ImageSource, SourceKind
from ggic.sample_images import sample_data_dir, sample_photo_paths

MORE_IMAGES = ("hubble_deep_field.jpg", "retina.jpg", "ihc.png", "grass.png", "gravel.png",
               "brick.png")
SIZES = ((640, 480), (720, 480), (800, 600), (1280, 720), (1920, 1080), (4032, 3024))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path(".ggic/bench/efficientnet-lite0"))
    args = parser.parse_args(argv)
    if not (args.model / "compiled.so").is_file():
        from ggic.modelgen.efficientnet_lite import build_demo_model

        build_demo_model(args.model)
    pipeline = ClassificationPipeline(load_model(args.model, resolve_profile("auto"),
                                                 warm_up=False))
    labels = pipeline.model.labels
    counts: dict[tuple[str, str], list[int]] = {}
    bilinear = dataclasses.replace(pipeline.profile, interpolation="linear")
    paths = sample_photo_paths() + [sample_data_dir() / name for name in MORE_IMAGES]
    for path in paths:
        source = cv2.imread(str(path), cv2.IMREAD_COLOR)
        for width, height in SIZES:
            big = cv2.resize(source, (width, height), interpolation=cv2.INTER_CUBIC)
            data = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
            full = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            scores = pipeline.model.run(preprocess(full, pipeline.profile)).ravel()
            want = int(np.argmax(scores))
            margin = float(np.diff(np.sort(scores)[-2:])[0])
            factor = jpeg_reduction(width, height, pipeline.profile)
            prepared = pipeline.prepare(ImageSource(SourceKind.INLINE, data=data), InputLimits())
            got = int(np.argmax(pipeline.model.run(prepared.tensor)))
            if prepared.release is not None:
                prepared.release()
            closer = decode_image(data, max_pixels=10**9, reduction=min(8, 2 * factor))
            more = int(np.argmax(pipeline.model.run(
                preprocess(closer, pipeline.profile, full_size=(width, height)))))
            linear = int(np.argmax(pipeline.model.run(preprocess(full, bilinear))))
            for key, answer, reduced in (("rule", got, factor > 1),
                                         ("one step more", more, True),
                                         ("bilinear full decode", linear, True)):
                if reduced:
                    count = counts.setdefault((key, f"{width}x{height}"), [0, 0])
                    count[0] += answer == want
                    count[1] += 1
            note = "" if got == want else f"  CHANGED to {labels[got]}"
            print(f"{path.stem:18} {width}x{height}: 1/{factor}, full decode "
                  f"{labels[want][:24]!r} (margin {margin:.2f}){note}; at 1/{min(8, 2 * factor)} "
                  f"{'same' if more == want else labels[more][:24]!r}")
    print("\nthe same top-1 as the full decode (where reduced), per size:")
    for key in ("rule", "one step more", "bilinear full decode"):
        cells = [f"{size} {same}/{total}" for (name, size), (same, total) in counts.items()
                 if name == key]
        same = sum(c[0] for (name, _), c in counts.items() if name == key)
        total = sum(c[1] for (name, _), c in counts.items() if name == key)
        print(f"  {key}: {same}/{total} ({', '.join(cells)})")
    pipeline.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
