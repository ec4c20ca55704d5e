"""Tiny, learnable image datasets for tests: the class is the dominant colour channel."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = ("blue", "green", "red")
# Channel that is bright for each class (RGB order).
_CHANNEL = {"red": 0, "green": 1, "blue": 2}


def image_bytes(
    class_name: str, rng: np.random.Generator, size: int = 8, fmt: str = "PNG"
) -> bytes:
    pixels = rng.integers(0, 90, size=(size, size, 3))
    pixels[..., _CHANNEL[class_name]] = rng.integers(150, 256, size=(size, size))
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="RGB").save(buffer, format=fmt)
    return buffer.getvalue()


def write_folder(
    root: Path,
    per_class: dict[str, int],
    seed: int = 0,
    size: int = 8,
) -> dict[str, list[Path]]:
    """Writes root/<split>/<class>/NNN.{png,jpg}, alternating formats; returns files per split."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[Path]] = {}
    for split, count in per_class.items():
        for class_name in CLASS_NAMES:
            folder = root / split / class_name if split else root / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                fmt, ext = ("PNG", "png") if i % 2 == 0 else ("JPEG", "jpg")
                path = folder / f"{i:03d}.{ext}"
                path.write_bytes(image_bytes(class_name, rng, size, fmt))
                written.setdefault(split, []).append(path)
    return written
