"""Tiny, learnable image datasets for tests: the class is the dominant colour channel."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = ("blue", "green", "red")
# Channel that is bright for each class (RGB order).
_CHANNEL = {"red": 0, "green": 1, "blue": 2}


def learnable_arrays(
    n: int, seed: int = 0, shape: tuple[int, int, int] = (8, 8, 3)
) -> tuple[np.ndarray, np.ndarray]:
    """(float32 images, int64 labels) of `shape[2]` classes, each class its own bright channel."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, shape[2], n)
    images = rng.normal(size=(n, *shape)).astype("float32")
    images[np.arange(n), :, :, labels] += 2.0
    return images, labels.astype("int64")


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


def write_uninformative_folder(
    root: Path, counts: dict[str, dict[str, int]], size: int = 8
) -> None:
    """root/<split>/<class>/NNN.png where every image of a split is the same flat gray.

    The pixels carry no class, so any model answers one class for the whole split: its
    accuracy is that class's share, never above chance, whatever training did. Each split has
    its own gray, so no image is in two splits (ingest refuses that as leakage).
    """
    for shade, (split, per_class) in enumerate(counts.items()):
        buffer = io.BytesIO()
        Image.new("L", (size, size), 60 + 40 * shade).save(buffer, format="PNG")
        for class_name, count in per_class.items():
            folder = root / split / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                (folder / f"{i:03d}.png").write_bytes(buffer.getvalue())


def class_pixels(class_name: str, rng: np.random.Generator, size: int = 8) -> np.ndarray:
    """uint8 [size, size, 3] whose bright channel is the class's."""
    pixels = rng.integers(0, 90, size=(size, size, 3))
    pixels[..., _CHANNEL[class_name]] = rng.integers(150, 256, size=(size, size))
    return pixels.astype(np.uint8)


def kind_bytes(kind: str, class_name: str, rng: np.random.Generator, size: int = 8) -> bytes:
    """An image of the class in one of ingest's formats/modes, e.g. "PNG RGBA 16-bit"."""
    from trainer.image_kinds import encode

    return encode(kind, class_pixels(class_name, rng, size))


def _segments(jpeg: bytes) -> dict[int, tuple[int, int]]:
    """JPEG marker -> (payload start, payload end) of its first segment, up to start of scan."""
    found: dict[int, tuple[int, int]] = {}
    i = 2
    while jpeg[i + 1] != 0xDA:
        length = jpeg[i + 2] << 8 | jpeg[i + 3]
        found.setdefault(jpeg[i + 1], (i + 4, i + 2 + length))
        i += 2 + length
    return found


def corrupt_jpeg(jpeg: bytes) -> bytes:
    """Every marker and length intact, the Huffman table's content nonsense."""
    start, end = _segments(jpeg)[0xC4]
    return jpeg[:start] + b"\x7f" * (end - start) + jpeg[end:]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(kind + payload))


def corrupt_png(png: bytes) -> bytes:
    """Chunks, lengths and CRCs intact, the compressed pixels (IDAT) damaged."""
    start = png.index(b"IDAT") - 4
    length = struct.unpack(">I", png[start:start + 4])[0]
    payload = bytearray(png[start + 8:start + 8 + length])
    middle = len(payload) // 2
    payload[middle:middle + 8] = bytes(8)
    return png[:start] + _png_chunk(b"IDAT", bytes(payload)) + png[start + 12 + length:]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels: a decompression bomb's header, no pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))
