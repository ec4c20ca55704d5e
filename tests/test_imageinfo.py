import io

import numpy as np
import pytest
from PIL import Image

from pipeline.imageinfo import BadImage, image_shape
from pipeline.tfrecord import ImageExampleEncoder, encode_image_example


def _encode(mode: str, fmt: str, size=(5, 7), **kwargs) -> bytes:
    channels = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2}[mode]
    pixels = np.random.default_rng(0).integers(0, 255, (size[0], size[1], channels), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode).save(
        buffer, format=fmt, **kwargs
    )
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mode", "fmt", "kwargs", "expected"),
    [
        ("L", "JPEG", {}, (5, 7, 1)),
        ("RGB", "JPEG", {}, (5, 7, 3)),
        ("RGB", "JPEG", {"progressive": True}, (5, 7, 3)),
        ("L", "PNG", {}, (5, 7, 1)),
        ("LA", "PNG", {}, (5, 7, 1)),
        ("RGB", "PNG", {}, (5, 7, 3)),
        ("RGBA", "PNG", {}, (5, 7, 4)),
        ("RGB", "BMP", {}, (5, 7, 3)),  # not sniffed: PIL decodes it
    ],
)
def test_shape_from_bytes(mode, fmt, kwargs, expected) -> None:
    assert image_shape(_encode(mode, fmt, **kwargs)) == expected


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_images_are_bad(fmt) -> None:
    data = _encode("RGB", fmt, size=(40, 40))
    with pytest.raises(BadImage):
        image_shape(data[: len(data) // 2])


def test_non_image_bytes_are_bad() -> None:
    with pytest.raises(BadImage, match="UnidentifiedImageError"):
        image_shape(b"hello, not an image")


@pytest.mark.parametrize("label", [0, 9, 1000])
def test_fast_encoder_matches_reference(label) -> None:
    encoder = ImageExampleEncoder("image", "label")
    for size in (0, 100, 200, 20_000):
        image = bytes(range(256)) * (size // 256) + bytes(size % 256)
        assert encoder.encode(image, label) == encode_image_example("image", image, "label", label)
