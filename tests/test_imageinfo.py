import io

import numpy as np
import pytest
from PIL import Image

from ingest.imageinfo import BadImage, image_shape
from ingest.tfrecord import ImageExampleEncoder, encode_image_example


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
        ("RGBA", "PNG", {}, (5, 7, 3)),  # alpha is dropped by the decoder
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


@pytest.mark.parametrize("channels", [1, 3])
def test_decode_gives_pillows_pixels_for_every_kind(channels) -> None:
    """The JPEG and PNG decoders fed directly (the fast paths) decode as Image.open does."""
    from ingest.decode import decode, pixel_digest
    from trainer.image_kinds import sample_images

    for kind, data in sample_images(channels, size=13).items():
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            decoded = decode(data, channels=channels)
            assert decoded.kind == kind
            assert (decoded.height, decoded.width) == (13, 13)
            assert decoded.digest == pixel_digest(image), kind


def test_decode_refuses_a_pixel_count_over_the_limit_before_decoding() -> None:
    from ingest.decode import TooLarge, decode

    with pytest.raises(TooLarge, match="7x5 = 35 pixels, over the limit of 34"):
        decode(_encode("RGB", "PNG"), max_pixels=34)
