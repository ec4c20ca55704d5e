"""Image size, colour mode and completeness from the encoded bytes, without decoding pixels.

`read_header` says what a JPEG or PNG claims to be (size, colour mode, bit depth) from its first
bytes: ingest checks the pixel limit on it before decoding anything, and picks the
decoder from it. `image_shape` adds end-marker checks and falls back to PIL's full decode for
anything it does not recognise.

Channels are what the model gets from tf.io.decode_image: gray (with or without alpha) is 1,
colour is 3. Alpha is dropped by the decoder, so it never makes a 4-channel model (which could
not take a single JPEG at serving time).
"""

from __future__ import annotations

import dataclasses
import io

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# PNG colour type -> mode (PIL's names).
_PNG_MODES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}
# JPEG component count -> mode.
_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}
# JPEG start-of-frame markers (baseline, progressive, lossless, ...), not DHT/JPG/DAC.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
JPEG = "JPEG"
PNG = "PNG"


class BadImage(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Header:
    """What an image's header claims: read before any pixel is decoded."""

    format: str  # JPEG or PNG
    height: int
    width: int
    mode: str  # L, RGB or CMYK for JPEG; L, LA, RGB, RGBA or P for PNG
    bits: int = 8  # bits per sample
    interlaced: bool = False
    orientation: int = 1  # EXIF orientation (JPEG APP1); 1 is as stored, 6 a phone held upright

    @property
    def channels(self) -> int:
        """Channels the model gets from this image: 1 for gray, 3 for colour (alpha dropped)."""
        return channels_of_mode(self.mode)

    @property
    def kind(self) -> str:
        """Format and mode, as ingest counts them: 'JPEG RGB', 'PNG RGBA', 'PNG L 16-bit'."""
        depth = f" {self.bits}-bit" if self.bits != 8 else ""
        return f"{self.format} {self.mode}{depth}"


def channels_of_mode(mode: str) -> int:
    return 1 if mode in GRAY_MODES else 3


def exif_orientation(segment: bytes | memoryview) -> int:
    """The orientation tag (0x0112) of IFD0 in an APP1 segment's payload; 1 if absent or odd.

    Read from the header bytes so ingest can count rotated photos without decoding them.
    """
    tiff = bytes(segment[6:]) if bytes(segment[:6]) == b"Exif\x00\x00" else b""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    count = int.from_bytes(tiff[ifd:ifd + 2], order)
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(tiff) - 11), 12):
        if int.from_bytes(tiff[entry:entry + 2], order) == 0x0112:
            value = int.from_bytes(tiff[entry + 8:entry + 10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def _jpeg_header(data: bytes) -> Header | None:
    i, n = 2, len(data)
    orientation = 1
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
            mode = _JPEG_MODES.get(data[i + 9])
            if not (height and width and mode):
                return None
            return Header(JPEG, height, width, mode, data[i + 4], orientation=orientation)
        length = data[i + 2] << 8 | data[i + 3]
        if marker == 0xE1 and orientation == 1:
            orientation = exif_orientation(memoryview(data)[i + 4:i + 2 + length])
        i += 2 + length
    return None


def _png_header(data: bytes) -> Header | None:
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    mode = _PNG_MODES.get(data[25])
    if not (height and width and mode):
        return None
    return Header(PNG, height, width, mode, data[24], data[28] == 1)


def read_header(data: bytes) -> Header | None:
    """The header of a JPEG or PNG; None for anything else or a header that does not parse."""
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg_header(data)
    if data.startswith(PNG_SIGNATURE):
        return _png_header(data)
    return None


def _looks_complete(data: bytes, header: Header) -> bool:
    """The end marker is there: no truncation, no trailing bytes (PIL decides those)."""
    return data.endswith(b"\xff\xd9" if header.format == JPEG else _PNG_IEND)


def _decode_with_pil(data: bytes) -> tuple[int, int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # full decode: raises on truncated or corrupt data
            return image.height, image.width, channels_of_mode(image.mode)
    except Exception as e:  # noqa: BLE001 - PIL raises many types for bad data
        raise BadImage(f"{e.__class__.__name__}: {e}") from None


def image_shape(data: bytes) -> tuple[int, int, int]:
    """(height, width, channels) of an encoded image; raises BadImage if it cannot be decoded.

    Headers and end markers only for JPEG/PNG: corrupt data behind intact markers passes. Ingest
    decodes every image (ingest/decode.py); this is for a quick look at one file.
    """
    header = read_header(data)
    if header is not None and _looks_complete(data, header):
        return header.height, header.width, header.channels
    return _decode_with_pil(data)
