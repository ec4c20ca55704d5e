"""Built-in datasets, materialized as image folders so they take the same path as user data."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

# The built-in dataset `run` trains on without --data, and the model name compile-kfp compiles
# for without --dataset-info.
DIGITS = "digits"
BUILTIN_DATASETS = (DIGITS,)


def write_digits_folder(out: str | os.PathLike) -> Path:
    """scikit-learn's 1,797 real 8x8 handwritten digits as PNGs: OUT/<digit>/<index>.png.

    Written to a temporary folder and renamed, so a half-written folder is never reused.
    """
    from sklearn.datasets import load_digits

    out = Path(out)
    if out.is_dir():
        return out
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    digits = load_digits()
    # Pixel values are 0..16; stretch them to 0..255 grayscale.
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    try:
        for index, (image, target) in enumerate(zip(images, digits.target, strict=True)):
            class_dir = tmp / str(int(target))
            class_dir.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            Image.fromarray(image, mode="L").save(buffer, format="PNG")
            (class_dir / f"{index:04d}.png").write_bytes(buffer.getvalue())
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out

# What `write_digits_folder` produces, for compiling without ingesting first.
DIGITS_CLASS_NAMES = tuple(str(d) for d in range(10))
DIGITS_IMAGE_SHAPE = (8, 8, 1)
# Its splits with ingest's default fractions (recipe choice when compiling without ingesting).
DIGITS_SPLIT_COUNTS = {"train": 1259, "eval": 179, "test": 359}
# Its test split per class (the default accuracy bar's chance, pipeline/blessing.py).
DIGITS_TEST_PER_CLASS = {"0": 36, "1": 36, "2": 35, "3": 37, "4": 36, "5": 36, "6": 36, "7": 36,
                         "8": 35, "9": 36}


def digits_info():
    """The DatasetManifest (ingest/manifest.py) of an ingest of `write_digits_folder`, in
    part: what compiling a pipeline for the digits needs.
    """
    from ingest.dataset import TEST
    from ingest.manifest import DatasetManifest, SplitManifest

    return DatasetManifest(DIGITS_CLASS_NAMES, DIGITS_IMAGE_SHAPE, {
        split: SplitManifest(count, DIGITS_TEST_PER_CLASS if split == TEST else {})
        for split, count in DIGITS_SPLIT_COUNTS.items()})
