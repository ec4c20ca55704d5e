"""Image size, channels and completeness from the encoded bytes, without decoding pixels.

Ingest looks at every file; PIL's header parser costs ~70 us per image, these byte checks a few
microseconds. Anything they do not recognise, or that looks truncated, goes to PIL, which decodes
it fully and raises on a corrupt file.
"""

from __future__ import annotations

import io

from PIL import Image

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# PNG colour type -> channels after tf.io.decode_image(channels=0); gray+alpha counts as gray.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 1, 6: 4}
# JPEG start-of-frame markers (baseline, progressive, lossless, ...), not DHT/JPG/DAC.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# PIL mode -> channels.
_MODE_CHANNELS = {"1": 1, "L": 1, "LA": 1, "I": 1, "I;16": 1, "F": 1, "P": 3, "RGB": 3,
                  "YCbCr": 3, "CMYK": 3, "RGBA": 4}


class BadImage(ValueError):
    pass


def _jpeg(data: bytes) -> tuple[int, int, int] | None:
    if not data.endswith(b"\xff\xd9"):
        return None  # truncated, or trailing bytes after EOI: let PIL decide
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 2
            continue
        if marker in _SOF_MARKERS:
            height = data[i + 5] << 8 | data[i + 6]
            width = data[i + 7] << 8 | data[i + 8]
            components = data[i + 9]
            if not (height and width and components in (1, 3, 4)):
                return None
            return height, width, 1 if components == 1 else 3
        i += 2 + (data[i + 2] << 8 | data[i + 3])
    return None


def _png(data: bytes) -> tuple[int, int, int] | None:
    if len(data) < 33 or data[12:16] != b"IHDR" or not data.endswith(_PNG_IEND):
        return None
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    channels = _PNG_CHANNELS.get(data[25])
    if not (height and width and channels):
        return None
    return height, width, channels


def _decode_with_pil(data: bytes) -> tuple[int, int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # full decode: raises on truncated or corrupt data
            return image.height, image.width, _MODE_CHANNELS.get(image.mode, 3)
    except Exception as e:  # noqa: BLE001 - PIL raises many types for bad data
        raise BadImage(f"{e.__class__.__name__}: {e}") from None


def image_shape(data: bytes) -> tuple[int, int, int]:
    """(height, width, channels) of an encoded image; raises BadImage if it cannot be decoded."""
    if data.startswith(b"\xff\xd8\xff"):
        shape = _jpeg(data)
    elif data.startswith(_PNG_SIGNATURE):
        shape = _png(data)
    else:
        shape = None
    return shape if shape is not None else _decode_with_pil(data)
