"""Full decode of every image at ingest, so bad pixels are refused here, naming the file.

Header and end-marker checks (imageinfo) let through images whose data is corrupt behind intact
markers; Transform then fails on them minutes later, without saying which file. Here each image
is decoded completely, after its header passed the pixel limit (a decompression bomb is refused
before a byte of it is decoded): 8-bit gray and colour JPEGs by libjpeg-turbo through simplejpeg,
straight into a pixel buffer (strict: a corrupt-data warning is an error), faster than Pillow
on small images (the same pixels: the same library); everything else by Pillow (zlib for
PNG, libjpeg-turbo for CMYK JPEGs).

Only JPEG and PNG content is accepted (by its bytes, not its name). Every mode of both is stored
unchanged: the serving signature's tf.io.decode_image reads them all to the model's channels
(alpha dropped, palettes expanded, 16-bit samples cut to 8, gray replicated or colour reduced),
in training and serving alike. The one exception is a CMYK JPEG for a gray model: TF's JPEG
decoder cannot turn CMYK into gray, so ingest re-encodes it as a gray PNG (`converted`).

Each image also gets a digest of its decoded pixels, as the model sees them (alpha dropped,
palette expanded): equal digests are the same image, whatever the file's name or encoding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import warnings
import zlib

import simplejpeg
from PIL import Image

from ingest.imageinfo import (
    JPEG,
    PNG,
    BadImage,
    Header,
    channels_of_mode,
    read_header,
)
from ingest.sources import other_format

# Larger than any common camera's output (48 MP phones, 45-61 MP full frame) and still a
# bounded cost: Transform holds a decoded image as float32, 600 MB at this size in colour.
DEFAULT_MAX_PIXELS = 50_000_000
ACCEPTED_FORMATS = (JPEG, PNG)
# Modes the model-view digest converts first: what tf.io.decode_image hands the model.
_MODEL_VIEW = {"RGBA": "RGB", "LA": "L", "P": "RGB", "PA": "RGB", "1": "L"}


class TooLarge(BadImage):
    """More pixels than the limit: refused before decoding."""


@dataclasses.dataclass(frozen=True)
class Decoded:
    """One image that decoded completely: what ingest stores and counts."""

    height: int
    width: int
    channels: int  # the model's view: 1 (gray) or 3 (colour)
    kind: str  # format and mode of the file, e.g. "PNG RGBA", "JPEG CMYK"
    digest: bytes  # of the decoded pixels: duplicates
    data: bytes  # what to store: the file's bytes, or a PNG when converted
    converted: bool = False
    orientation: int = 1  # EXIF orientation: counted, never applied (serving ignores it too)


def check_pixels(header: Header, max_pixels: int) -> None:
    pixels = header.width * header.height
    if pixels > max_pixels:
        raise TooLarge(
            f"{header.width}x{header.height} = {pixels:,} pixels, over the limit of "
            f"{max_pixels:,} (max_pixels): a decompression bomb, or far larger than a model "
            "needs. Downscale it, or raise max_pixels."
        )


def png_pixel_data(data: bytes) -> bytes:
    """The compressed pixels (IDAT chunks, joined), after checking the critical chunks' CRCs.

    libpng, TF's decoder, refuses a critical chunk (IHDR, PLTE, IDAT, IEND) whose CRC is wrong;
    Pillow does not check the CRCs of pixel data. A chunk cut short is left to the decoder.
    """
    view = memoryview(data)
    pixels = []
    i = 8
    while i + 12 <= len(data):
        length = int.from_bytes(view[i:i + 4], "big")
        kind = bytes(view[i + 4:i + 8])
        end = i + 12 + length
        if end > len(data) or kind == b"IEND":
            break
        critical = not kind[0] & 0x20  # a lower-case first letter marks an ancillary chunk
        if critical and zlib.crc32(view[i + 4:end - 4]) != int.from_bytes(view[end - 4:end],
                                                                           "big"):
            raise BadImage(f"corrupt PNG: wrong CRC in chunk {kind.decode('latin-1')}")
        if kind == b"IDAT":
            pixels.append(view[i + 8:end - 4])
        i = end
    return b"".join(pixels)


def _decode_png(pixels: bytes, header: Header) -> Image.Image:
    """Pillow's zlib decoder fed the IDAT data directly (8-bit, not interlaced, no palette)."""
    try:
        return Image.frombytes(header.mode, (header.width, header.height), pixels, "zip",
                               header.mode)
    except (ValueError, OSError) as e:
        reason = "truncated" if "not enough" in str(e) else "corrupt"
        raise BadImage(f"{reason} PNG: the decoder stopped ({e})") from None


def _jpeg_pixels(data: bytes, header: Header) -> memoryview:
    """Every pixel of an 8-bit gray or colour JPEG, row by row, as Pillow's tobytes() gives them."""
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="GRAY" if header.mode == "L" else "RGB",
                                        strict=True)
    except ValueError as e:
        reason = "truncated" if "premature end" in str(e).lower() else "corrupt"
        raise BadImage(f"{reason} JPEG: the decoder stopped ({e})") from None
    if pixels.shape[:2] != (header.height, header.width):
        raise BadImage(f"corrupt JPEG: the header says {header.width}x{header.height}, the data "
                       f"decodes to {pixels.shape[1]}x{pixels.shape[0]}")
    return memoryview(pixels).cast("B")


def _header_of(image: Image.Image) -> Header:
    """A header from what Pillow decoded (a file imageinfo could not parse)."""
    mode = {"I;16": "L", "I;16B": "L", "I": "L", "1": "L"}.get(image.mode, image.mode)
    bits = 16 if image.mode.startswith("I") else 1 if image.mode == "1" else 8
    return Header(image.format, image.height, image.width, mode, bits)


def _decode_with_pillow(data: bytes, header: Header | None, max_pixels: int) -> Image.Image:
    """Image.open + load: PNG, CMYK and anything the fast path does not take."""
    try:
        with warnings.catch_warnings():
            # The pixel limit is ours (checked on the header); P+tRNS conversions warn too.
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            check_pixels(header or _header_of(image), max_pixels)
            image.load()  # every pixel: raises on corrupt or truncated data
            return image
    except TooLarge:
        raise
    except Image.DecompressionBombError as e:
        raise TooLarge(f"{e} (Pillow's own limit)") from None
    except Image.UnidentifiedImageError:
        raise BadImage(f"not a JPEG or PNG by its content ({other_format(data)}); convert it "
                       "to PNG or JPEG") from None
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad data
        raise BadImage(f"corrupt or truncated: {e} ({e.__class__.__name__})") from None


def pixel_digest(image: Image.Image) -> bytes:
    """Digest of the pixels as the model gets them (alpha dropped, palette expanded)."""
    view = _MODEL_VIEW.get(image.mode)
    if view is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # P with transparency: "convert to RGBA" advice
            image = image.convert(view)
    return _digest(image.mode, image.width, image.height, image.tobytes())


def _digest(mode: str, width: int, height: int, pixels: bytes | memoryview) -> bytes:
    # SHA-256: CPUs with SHA extensions hash faster with it than with BLAKE2.
    digest = hashlib.sha256(f"{mode} {width}x{height}\n".encode())
    digest.update(pixels)
    return digest.digest()


def needs_conversion(header: Header, channels: int | None) -> bool:
    """Whether tf.io.decode_image cannot give the model this image: CMYK JPEG for gray."""
    return header.mode == "CMYK" and channels == 1


def _to_png(image: Image.Image, channels: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("L" if channels == 1 else "RGB").save(buffer, format=PNG)
    return buffer.getvalue()


def _fast_jpeg(header: Header | None) -> bool:
    """Whether the JPEG decoder can be fed directly: 8-bit gray or colour (not CMYK)."""
    return header is not None and header.format == JPEG and header.mode in ("L", "RGB") \
        and header.bits == 8


def _fast_png(header: Header | None) -> bool:
    """Whether the zlib decoder can be fed directly: 8-bit, no palette, not interlaced."""
    return header is not None and header.format == PNG and header.bits == 8 \
        and header.mode in ("L", "LA", "RGB", "RGBA") and not header.interlaced


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
           channels: int | None = None) -> Decoded:
    """Decodes every pixel of an encoded image; raises BadImage (TooLarge) naming the problem.

    `channels` is the model's when the user chose it (--channels), else None: it decides
    whether a CMYK JPEG needs converting. With None, ingest chooses the channels after every
    image is decoded, and never 1 for a folder holding a CMYK JPEG (CMYK counts as colour), so
    no image it did not convert would need it.
    """
    header = read_header(data)
    if header is not None:
        check_pixels(header, max_pixels)
    if _fast_jpeg(header):
        return Decoded(
            height=header.height,
            width=header.width,
            channels=channels_of_mode(header.mode),
            kind=header.kind,
            digest=_digest(header.mode, header.width, header.height, _jpeg_pixels(data, header)),
            data=data,
            orientation=header.orientation,
        )
    pixels = png_pixel_data(data) if header is not None and header.format == PNG else b""
    if _fast_png(header):
        image = _decode_png(pixels, header)
    else:
        image = _decode_with_pillow(data, header, max_pixels)
        header = header or _header_of(image)
    converted = needs_conversion(header, channels)
    return Decoded(
        height=image.height,
        width=image.width,
        channels=channels_of_mode(header.mode),
        kind=header.kind,
        digest=pixel_digest(image),
        data=_to_png(image, channels) if converted else data,
        converted=converted,
        orientation=header.orientation,
    )
