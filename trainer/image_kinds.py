"""Every image format and mode ingest accepts, as encoded bytes: what serving_default must take.

Ingest stores JPEG and PNG files unchanged in any of these modes, so the model's decoder
(tf.io.decode_image in trainer/preprocessing.py) meets all of them in training, and clients may
send any of them. The Pusher sends one of each before publishing a model; the tests build
datasets of them. Names are ingest's (ingest/imageinfo.py `Header.kind`).

The one exception: TF's JPEG decoder cannot turn CMYK into gray, so a gray (1-channel) model
refuses CMYK JPEGs at serving time; ingest re-encodes them as gray PNGs for training.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

JPEG_KINDS = ("JPEG L", "JPEG RGB", "JPEG CMYK")
PNG_KINDS = ("PNG L 1-bit", "PNG L", "PNG L 16-bit", "PNG LA", "PNG LA 16-bit", "PNG P",
             "PNG RGB", "PNG RGB 16-bit", "PNG RGBA", "PNG RGBA 16-bit")
# Accepted by ingest, refused by a gray model's serving signature (TF cannot decode it to gray).
GRAY_MODEL_REFUSES = ("JPEG CMYK",)
# PNG colour types: mode -> (colour type, channels stored).
_PNG_TYPES = {"L": (0, 1), "RGB": (2, 3), "P": (3, 1), "LA": (4, 2), "RGBA": (6, 4)}


def serving_kinds(channels: int) -> tuple[str, ...]:
    """The kinds a model with this many channels takes at serving time."""
    kinds = JPEG_KINDS + PNG_KINDS
    return tuple(k for k in kinds if channels != 1 or k not in GRAY_MODEL_REFUSES)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))


def _png(samples: np.ndarray, colour_type: int, bits: int, extra: bytes = b"") -> bytes:
    """A PNG of samples [h, w, channels] (uint8 or uint16) written directly: Pillow writes
    neither 16-bit colour nor 16-bit gray+alpha.
    """
    height, width = samples.shape[:2]
    if bits == 1:
        rows = [np.packbits(row[:, 0] > 0).tobytes() for row in samples]
    else:
        dtype = ">u2" if bits == 16 else np.uint8
        rows = [row.astype(dtype).tobytes() for row in samples]
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 (None) on every row
    header = struct.pack(">IIBBBBB", width, height, bits, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + extra
            + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))


def _with_alpha(samples: np.ndarray) -> np.ndarray:
    alpha = np.full(samples.shape[:2] + (1,), 255, samples.dtype)
    alpha[0, 0] = 0  # one transparent pixel: the decoder must drop alpha, not trip on it
    return np.concatenate([samples, alpha], axis=-1)


def _palette_png(rgb: np.ndarray) -> bytes:
    """Palette PNG with a transparent entry (tRNS), via Pillow's quantizer."""
    quantized = Image.fromarray(rgb, mode="RGB").quantize(colors=16)
    indices = np.asarray(quantized)[..., np.newaxis]
    palette = bytes(quantized.getpalette()[: 3 * 16])
    extra = _png_chunk(b"PLTE", palette) + _png_chunk(b"tRNS", b"\x00")
    return _png(indices, 3, 8, extra)


def _encode_png(kind: str, rgb: np.ndarray) -> bytes:
    _, mode, *depth = kind.split(" ")
    bits = int(depth[0].removesuffix("-bit")) if depth else 8
    if mode == "P":
        return _palette_png(rgb)
    base = mode.removesuffix("A")  # the colour samples, before alpha is added
    samples = rgb if base == "RGB" else np.asarray(Image.fromarray(rgb).convert("L"))[..., None]
    if bits == 16:
        samples = samples.astype(np.uint16) * 257  # 0..255 -> 0..65535
    if mode.endswith("A"):
        samples = _with_alpha(samples)
    colour_type, _ = _PNG_TYPES[mode]
    return _png(samples, colour_type, bits)


def _encode_jpeg(kind: str, rgb: np.ndarray) -> bytes:
    mode = kind.split(" ")[1]
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").convert(mode).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def encode(kind: str, rgb: np.ndarray) -> bytes:
    """An RGB image (uint8 [h, w, 3]) encoded as `kind`, e.g. "PNG RGBA 16-bit" or "JPEG CMYK"."""
    if kind not in JPEG_KINDS + PNG_KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {JPEG_KINDS + PNG_KINDS}")
    rgb = np.asarray(rgb, np.uint8)
    return _encode_jpeg(kind, rgb) if kind.startswith("JPEG") else _encode_png(kind, rgb)


def sample_images(channels: int, size: int = 8) -> dict[str, bytes]:
    """One small image of every kind a model with `channels` takes: a gradient, so each
    colour channel differs.
    """
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    rgb = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], ramp[::-1, None]), -1)
    return {kind: encode(kind, rgb.astype(np.uint8)) for kind in serving_kinds(channels)}
