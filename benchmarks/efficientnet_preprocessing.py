"""Which input convention EfficientNet-Lite0 wants, measured on real photos.

    python benchmarks/efficientnet_preprocessing.py

Runs the converted model (through libdlr.so) on scikit-image's photos with the classifier's
own preprocessing under each candidate profile: normalisation (TF-Lite's (x - 127) / 128 vs
ImageNet mean/std), channel order (RGB vs BGR), resize interpolation (bicubic vs bilinear),
and prints per photo the top-3 and, per profile, how many top-1 / top-5 answers a person would
accept, the mean probability of the best acceptable class and the mean probability mass on
all acceptable classes.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ggic.classifier.backends.dlr import import_dlr
from ggic.classifier.preprocess import preprocess
from ggic.classifier.profiles import IMAGENET_MEAN, IMAGENET_STD, ModelProfile
from ggic.modelgen.efficientnet_lite import (
    NORMALIZATION,
    PREPROCESSING,
    build_demo_model,
    imagenet_labels,
)
from ggic.sample_images import sample_photo_paths

#: photo -> class ids a person would accept (the astronaut has no ImageNet class: shown only)
ACCEPTABLE = {
    "chelsea.png": {281, 282, 283, 284, 285},
    "coffee.png": {504, 967, 968},
    "rocket.jpg": {657, 744, 812},
    "motorcycle_left.png": {665, 670},
}


def candidate_profiles() -> dict[str, ModelProfile]:
    """The model normalises its 0..255 input with (x - 127) / 128 itself; the ImageNet
    candidate feeds it 128 * z + 127 so that the network sees z = (x / 255 - mean) / std."""
    chosen = ModelProfile(name="chosen", **PREPROCESSING)
    m, s = np.asarray(NORMALIZATION["mean"]), np.asarray(NORMALIZATION["std"])
    imagenet = dataclasses.replace(
        chosen,
        scale=1 / 255,
        mean=tuple(float(v) for v in np.asarray(IMAGENET_MEAN) - m / s * np.asarray(IMAGENET_STD)),
        std=tuple(float(v) for v in np.asarray(IMAGENET_STD) / s),
    )
    out = {}
    for norm_name, base in (("(x-127)/128", chosen), ("imagenet mean/std", imagenet)):
        for order in ("RGB", "BGR"):
            for interp in ("cubic", "linear"):
                name = f"{norm_name:18s} {order} {interp:6s}"
                out[name] = dataclasses.replace(base, name=name, channel_order=order,
                                                interpolation=interp)
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def main() -> None:
    labels = imagenet_labels()
    photos = sample_photo_paths()
    images = {p.name: cv2.imread(str(p), cv2.IMREAD_COLOR) for p in photos}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_demo_model(Path(tmp) / "m").directory
        model = import_dlr().DLRModel(str(model_dir), "cpu")
        summary = []
        for name, profile in candidate_profiles().items():
            print(f"\n== {name}")
            top1_ok = top5_ok = 0
            best_probs, masses = [], []
            for photo, image in images.items():
                probs = softmax(model.run({"data": preprocess(image, profile)})[0][0])
                order = np.argsort(-probs)
                shown = ", ".join(f"{labels[i].split(',')[0]} {probs[i]:.3f}" for i in order[:3])
                print(f"   {photo:20s} {shown}")
                if photo in ACCEPTABLE:
                    ok = ACCEPTABLE[photo]
                    top1_ok += int(order[0] in ok)
                    top5_ok += int(bool(set(order[:5].tolist()) & ok))
                    best_probs.append(max(probs[i] for i in ok))
                    masses.append(sum(probs[i] for i in ok))
            summary.append((name, top1_ok, top5_ok, float(np.mean(best_probs)),
                            float(np.mean(masses))))
    print(f"\nover {len(ACCEPTABLE)} photos: how many top-1 / top-5 are acceptable, mean "
          "probability of the best acceptable class, mean probability on all acceptable ones")
    print(f"{'profile':34s} top-1 ok  top-5 ok  p(best)  p(all ok)")
    for name, t1, t5, p, mass in summary:
        print(f"{name:34s} {t1:8d}  {t5:8d}  {p:7.3f}  {mass:9.3f}")


if __name__ == "__main__":
    main()
