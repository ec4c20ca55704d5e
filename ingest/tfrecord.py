"""A minimal TFRecord writer for image examples, with no TensorFlow import.

Ingest runs in worker processes; importing TensorFlow in each costs seconds, while encoding an
Example{image: bytes, label: int64} by hand costs microseconds. The wire format is checked
against TensorFlow's own parser in the tests.

Kept while it pays, as bench/ingest.py measures it (bench/results/ingest.json): ingest with this
writer in each worker, against decoding in the same workers and writing with tf.train.Example +
tf.io.TFRecordWriter in the parent, with and without the TensorFlow import a fresh
`python -m pipeline ingest` would pay; and the two writers alone.
"""

from __future__ import annotations

import gzip
import struct
from typing import BinaryIO

import google_crc32c

_CRC_MASK_DELTA = 0xA282EAD8


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(value: bytes) -> bytes:
    return _field(1, _field(1, value))  # Feature.bytes_list{value}


def _int64_feature(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"negative int64 values are not supported here: {value}")
    return _field(3, _field(1, _varint(value)))  # Feature.int64_list{packed value}


def _entry(key: str, feature: bytes) -> bytes:
    """One Features.feature map entry: key -> Feature."""
    return _field(1, _field(1, key.encode()) + _field(2, feature))


def encode_image_example(
    image_key: str, image: bytes, label_key: str, label: int,
    path_key: str | None = None, path: bytes | None = None,
) -> bytes:
    """Serialized tf.train.Example with one bytes feature and one int64 feature, and the
    source path as a second bytes feature when `path_key` and `path` are given.
    """
    entries = _entry(image_key, _bytes_feature(image)) + _entry(label_key, _int64_feature(label))
    if path_key is not None and path is not None:
        entries += _entry(path_key, _bytes_feature(path))
    return _field(1, entries)  # Example.features


class ImageExampleEncoder:
    """`encode_image_example` for fixed keys, with the constant parts precomputed."""

    def __init__(self, image_key: str, label_key: str, path_key: str | None = None) -> None:
        self._image_key_field = _field(1, image_key.encode())
        self._label_key = label_key
        self._path_key_field = None if path_key is None else _field(1, path_key.encode())
        self._label_entries: dict[int, bytes] = {}

    def _label_entry(self, label: int) -> bytes:
        entry = self._label_entries.get(label)
        if entry is None:
            entry = _entry(self._label_key, _int64_feature(label))
            self._label_entries[label] = entry
        return entry

    def encode(self, image: bytes, label: int, path: bytes | None = None) -> bytes:
        """The example of one image; `path` is written only by an encoder with a path key."""
        entries = _bytes_entry(self._image_key_field, image) + self._label_entry(label)
        if self._path_key_field is not None and path is not None:
            entries += _bytes_entry(self._path_key_field, path)
        return b"\x0a" + _varint(len(entries)) + entries


def _bytes_entry(key_field: bytes, value: bytes) -> bytes:
    """One map entry of Features.feature: a precomputed key field and a BytesList of one value
    (what `_entry(key, _bytes_feature(value))` writes, without encoding the key every time).
    """
    bytes_list = b"\x0a" + _varint(len(value)) + value
    feature = b"\x0a" + _varint(len(bytes_list)) + bytes_list
    body = key_field + b"\x12" + _varint(len(feature)) + feature
    return b"\x0a" + _varint(len(body)) + body


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


class GzipTFRecordWriter:
    """Writes a GZIP-compressed TFRecord file (TensorFlow's `compression_type='GZIP'`).

    Records are gathered into ~1 MB blocks before they reach gzip: one GzipFile.write per record
    part cost more than decoding a small JPEG.
    """

    _BLOCK = 1 << 20

    # Encoded images barely compress; level 1 keeps the gzip format at a fraction of the CPU.
    def __init__(self, path: str, compresslevel: int = 1) -> None:
        self._file: BinaryIO = gzip.open(  # noqa: SIM115 - closed by close()/__exit__
            path, "wb", compresslevel=compresslevel
        )
        self._buffer = bytearray()

    def write(self, record: bytes) -> None:
        header = struct.pack("<Q", len(record))
        self._buffer += header
        self._buffer += struct.pack("<I", _masked_crc(header))
        self._buffer += record
        self._buffer += struct.pack("<I", _masked_crc(record))
        if len(self._buffer) >= self._BLOCK:
            self._flush()

    def _flush(self) -> None:
        self._file.write(self._buffer)
        self._buffer.clear()

    def close(self) -> None:
        """Writes what is buffered; the file is complete only after this."""
        if not self._file.closed:
            self._flush()
        self._file.close()

    def __enter__(self) -> GzipTFRecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
