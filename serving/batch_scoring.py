"""Batch scoring's output files and model calls: typed rows, their three file formats, resume.

An output file holds one row per scored image (`Row`): its path, the model version that scored
it (the version folder's name), the model's fingerprint (`model`: the first 16 hex digits of
serving/model_dir.py `model_digest` of the version folder, so two models that both have a
version "1" are told apart), the top-k class ids, names and probabilities, and the full
probability vector (index = class id, the version's `assets/labels.txt` order). Its format is
its suffix:

- `.csv`: a header, then one record per image: `path`, `version`, `model`, `top1_id`,
  `top1_name`, `top1_probability`, ... `topK_probability`, then one `probability:<class name>`
  column per class. The header must match on resume (same classes, same top-k).
- `.jsonl`: one JSON object per line: `path`, `version`, `model`, `top_ids`, `top_names`,
  `top_probabilities`, `probabilities` (a list, index = class id).
- `.tfrecord`: one `tf.train.Example` per image, uncompressed TFRecord framing: bytes features
  `path`, `version` and `model`, int64 `top_ids`, bytes `top_names`, float
  `top_probabilities` and `probabilities`.

Files written before rows carried `model` (no `model` column or key) are still read, `model`
then "". On resume, every row must be of this version, of this model when it names one, and
of this model's classes (as many probabilities as classes, its top names at their class ids).

Images that cannot be scored go to a sidecar beside the output, `<output>.bad.jsonl`, one
`{"path", "reason"}` object per line.

Appends only: each batch's rows are encoded whole, written with one write, flushed and
fsynced, so a kill loses at most the batch being written, and leaves at most one torn record
at the end. `open_output` finds that record (a line without its newline, a csv record cut in a
quoted field, a TFRecord whose length or CRC does not check) and truncates the file before it,
but only when a valid row of ours precedes it (for csv: our header, intact): a file that does
not start like one infer writes is not infer's to cut, and is refused (OutputError naming
`infer.overwrite`) with nothing touched. An empty file (created, then killed before its first
batch) and a csv holding only our header are resumed. Everything before the torn record is kept
and its paths are skipped. Reading is streamed: a resumed file is never held in memory, only
the set of its paths.

The scorer calls the version's `serving_default` with the encoded bytes (TF decodes inside the
graph); a batch that TF refuses as bad input (`BAD_IMAGE_ERRORS`) is retried image by image, so
one bad image names itself and the others are still scored. Any other error (out of memory, a
cancelled call, a signature that does not match) is not the image's fault: it propagates, and
no image is listed as bad for it (the sidecar's images are never retried). Nothing here imports
`ingest/`; walking a source folder is components/batch_inference.py's.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from schema import features
from schema.errors import BadInput, Setting

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 3
DEFAULT_BATCH_SIZE = 64

CSV, JSONL, TFRECORD = ".csv", ".jsonl", ".tfrecord"
SUFFIXES = (CSV, JSONL, TFRECORD)
BAD_SUFFIX = ".bad.jsonl"

# tf.train.Example feature keys of a .tfrecord output's rows.
PATH_FEATURE = "path"
VERSION_FEATURE = "version"
MODEL_FEATURE = "model"
TOP_IDS_FEATURE = "top_ids"
TOP_NAMES_FEATURE = "top_names"
TOP_PROBABILITIES_FEATURE = "top_probabilities"
PROBABILITIES_FEATURE = "probabilities"
# csv: the column prefix of the probability of each class.
PROBABILITY_COLUMN = "probability:"


class OutputError(BadInput):
    """The output file cannot be used as asked: a wrong suffix, another model version's rows,
    a header that does not match, a record damaged before the end.
    """


@dataclasses.dataclass(frozen=True)
class Row:
    """One scored image."""

    path: str
    version: str
    top_ids: tuple[int, ...]
    top_names: tuple[str, ...]
    top_probabilities: tuple[float, ...]
    probabilities: tuple[float, ...]
    model: str = ""  # the model's fingerprint; "" in rows written before it was recorded


@dataclasses.dataclass(frozen=True)
class BadFile:
    """An image that could not be scored, as the sidecar lists it."""

    path: str
    reason: str


def output_format(output: str | Path) -> str:
    """The output's suffix, one of SUFFIXES; OutputError names them for anything else."""
    suffix = Path(output).suffix.lower()
    if suffix not in SUFFIXES:
        raise OutputError(f"{output}: an output file must end in one of {', '.join(SUFFIXES)} "
                          f"(csv, JSON lines, or tf.train.Example TFRecords), not "
                          f"{suffix or 'no suffix'!r}")
    return suffix


def bad_path(output: str | Path) -> Path:
    """The sidecar listing the images that could not be scored."""
    output = Path(output)
    return output.with_name(output.name + BAD_SUFFIX)


# --- encoding ----------------------------------------------------------------------------


def csv_header(class_names: Sequence[str], top_k: int) -> list[str]:
    top = [f"top{i}_{part}" for i in range(1, top_k + 1) for part in ("id", "name", "probability")]
    return ["path", "version", "model", *top,
            *(PROBABILITY_COLUMN + name for name in class_names)]


def _csv_line(values: Sequence[object]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue().encode("utf-8")


def _encode_csv(row: Row) -> bytes:
    top = [v for triple in zip(row.top_ids, row.top_names, row.top_probabilities, strict=True)
           for v in (triple[0], triple[1], repr(triple[2]))]
    return _csv_line([row.path, row.version, row.model, *top, *map(repr, row.probabilities)])


def _encode_jsonl(row: Row) -> bytes:
    return (json.dumps({"path": row.path, "version": row.version, "model": row.model,
                        "top_ids": list(row.top_ids),
                        "top_names": list(row.top_names),
                        "top_probabilities": list(row.top_probabilities),
                        "probabilities": list(row.probabilities)}, ensure_ascii=False)
            + "\n").encode("utf-8")


def _example(row: Row) -> bytes:
    import tensorflow as tf

    def strings(*values: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[v.encode("utf-8", "surrogateescape") for v in values]))

    def floats(values: Sequence[float]) -> tf.train.Feature:
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    return tf.train.Example(features=tf.train.Features(feature={
        PATH_FEATURE: strings(row.path),
        VERSION_FEATURE: strings(row.version),
        MODEL_FEATURE: strings(row.model),
        TOP_IDS_FEATURE: tf.train.Feature(int64_list=tf.train.Int64List(value=row.top_ids)),
        TOP_NAMES_FEATURE: strings(*row.top_names),
        TOP_PROBABILITIES_FEATURE: floats(row.top_probabilities),
        PROBABILITIES_FEATURE: floats(row.probabilities),
    })).SerializeToString()


def _masked_crc(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _frame(record: bytes) -> bytes:
    """One TFRecord: length, its masked CRC-32C, the data, its masked CRC-32C."""
    length = struct.pack("<Q", len(record))
    return (length + struct.pack("<I", _masked_crc(length)) + record
            + struct.pack("<I", _masked_crc(record)))


def _encode_tfrecord(row: Row) -> bytes:
    return _frame(_example(row))


_ENCODERS = {CSV: _encode_csv, JSONL: _encode_jsonl, TFRECORD: _encode_tfrecord}


# --- reading: the valid records, and where the valid part ends ----------------------------


def _lines(handle) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of a binary file, the last one possibly without its newline."""
    offset = 0
    for line in handle:
        yield offset, line
        offset += len(line)


def _csv_records(handle) -> Iterator[tuple[int, bytes]]:
    """(offset, record) of a csv file: a record ends at a newline outside quotes (an even
    number of quote characters so far, as csv doubles the quotes inside a field).
    """
    start, parts, quotes = 0, [], 0
    for offset, line in _lines(handle):
        if not parts:
            start = offset
        parts.append(line)
        quotes += line.count(b'"')
        if quotes % 2 == 0 and line.endswith(b"\n"):
            yield start, b"".join(parts)
            parts, quotes = [], 0
    if parts:
        yield start, b"".join(parts)


def _tfrecords(handle) -> Iterator[tuple[int, bytes | None]]:
    """(offset, record) of a TFRecord file; (offset, None) at the first record whose framing
    is cut short or whose CRCs do not check, and nothing after it.
    """
    offset = 0
    while True:
        head = handle.read(12)
        if not head:
            return
        if len(head) < 12 or struct.unpack("<I", head[8:])[0] != _masked_crc(head[:8]):
            yield offset, None
            return
        (length,) = struct.unpack("<Q", head[:8])
        data = handle.read(length)
        crc = handle.read(4)
        if len(data) < length or len(crc) < 4 or struct.unpack("<I", crc)[0] != _masked_crc(data):
            yield offset, None
            return
        yield offset, data
        offset += 12 + length + 4


def _decode_csv(record: bytes, header: list[str]) -> Row:
    (values,) = list(csv.reader(io.StringIO(record.decode("utf-8"), newline="")))
    if len(values) != len(header):
        raise ValueError(f"{len(values)} fields, the header has {len(header)}")
    top_k = sum(1 for name in header if name.endswith("_id") and name.startswith("top"))
    first = 3 if header[2:3] == ["model"] else 2  # files written before rows named the model
    top = values[first:first + 3 * top_k]
    return Row(values[0], values[1], tuple(int(v) for v in top[0::3]), tuple(top[1::3]),
               tuple(float(v) for v in top[2::3]),
               tuple(float(v) for v in values[first + 3 * top_k:]),
               values[2] if first == 3 else "")


def _decode_jsonl(record: bytes) -> Row:
    raw = json.loads(record)
    return Row(str(raw["path"]), str(raw["version"]), tuple(int(v) for v in raw["top_ids"]),
               tuple(str(v) for v in raw["top_names"]),
               tuple(float(v) for v in raw["top_probabilities"]),
               tuple(float(v) for v in raw["probabilities"]), str(raw.get("model", "")))


def _decode_tfrecord(record: bytes) -> Row:
    import tensorflow as tf

    example = tf.train.Example.FromString(record)
    feature = example.features.feature

    def strings(key: str) -> tuple[str, ...]:
        return tuple(v.decode("utf-8", "surrogateescape") for v in feature[key].bytes_list.value)

    (path,), (version,) = strings(PATH_FEATURE), strings(VERSION_FEATURE)
    (model,) = strings(MODEL_FEATURE) if MODEL_FEATURE in feature else ("",)
    return Row(path, version, tuple(feature[TOP_IDS_FEATURE].int64_list.value),
               strings(TOP_NAMES_FEATURE),
               tuple(feature[TOP_PROBABILITIES_FEATURE].float_list.value),
               tuple(feature[PROBABILITIES_FEATURE].float_list.value), model)


@dataclasses.dataclass
class _Scan:
    """What an existing output holds: where its valid part ends, its header (csv), whether a
    torn record follows, and how many rows precede it.
    """

    end: int = 0
    header: list[str] | None = None
    torn: bool = False
    rows: int = 0

    @property
    def ours(self) -> bool:
        """Whether the valid part starts like a file infer writes: a row, or a csv header."""
        return self.rows > 0 or self.header is not None


def _not_ours(path: Path, what: str) -> OutputError:
    return OutputError(f"{path} is not an infer output: {what}. Nothing was changed. Pass "
                       "another output file, or replace this one with ",
                       Setting("infer.overwrite"))


def _check_header(path: Path, found: list[str], expected: list[str]) -> None:
    """OutputError unless an existing csv's header is this call's."""
    if found == expected:
        return
    if found[:2] != ["path", "version"]:
        raise _not_ours(path, f"its first line is not infer's csv header "
                              f"({','.join(found[:4])[:120]}...)")
    if found[2:3] != ["model"]:
        raise OutputError(
            f"{path} was written before infer recorded the model in each row: it can be read "
            "(read_rows), not resumed. Pass another output file, or start it afresh with ",
            Setting("infer.overwrite"))
    top_k = sum(1 for name in expected if name.startswith("top") and name.endswith("_id"))
    raise OutputError(
        f"{path}: its csv header does not match this model's classes and top-k "
        f"({len(found)} columns, expected {len(expected)}: "
        f"{','.join(expected[:3 + 3 * top_k])},{PROBABILITY_COLUMN}...). Pass another "
        "output file, the top-k it was written with as ", Setting("infer.top_k"),
        ", or start it afresh with ", Setting("infer.overwrite"))


def _scan(path: Path, fmt: str, scan: _Scan, header: list[str] | None = None) -> Iterator[Row]:
    """The rows of an existing output, streamed; `scan` ends up saying where the valid part
    ends and whether a torn last record follows it. A damaged record before the last one is an
    OutputError: that is not what a kill leaves. With `header` (csv), the file's header must be
    that one, compared as soon as it is read.
    """
    with open(path, "rb") as handle:
        if fmt == TFRECORD:
            for offset, record in _tfrecords(handle):
                if record is None:
                    scan.torn = True
                    return
                try:
                    row = _decode_tfrecord(record)
                except Exception as e:  # noqa: BLE001 - framing checked: a foreign record
                    what = (f"the record at byte {offset} is not a row infer writes "
                            f"({e.__class__.__name__}: {e})")
                    if not scan.rows:
                        raise _not_ours(path, what) from None
                    raise OutputError(f"{path}: {what}") from None
                scan.end = offset + len(record) + 16
                scan.rows += 1
                yield row
            return
        records = _csv_records(handle) if fmt == CSV else _lines(handle)
        pending: tuple[int, bytes, Exception] | None = None
        for offset, record in records:
            if pending is not None:
                if not scan.ours:
                    raise _not_ours(path, f"its first record is not a row infer writes "
                                          f"({pending[2]})")
                raise OutputError(f"{path}: the record at byte {pending[0]} is damaged "
                                  f"({pending[2]}) and is not the last one; a kill leaves at "
                                  "most the last one torn. Move the file away, or start it "
                                  "afresh with ", Setting("infer.overwrite"))
            if fmt == CSV and scan.header is None:
                if not record.endswith(b"\n"):
                    scan.torn = True  # not ours to cut: open_output refuses it
                    return
                found = next(csv.reader(io.StringIO(record.decode("utf-8", "replace"))), [])
                if header is not None:
                    _check_header(path, found, header)
                scan.header = found
                scan.end = offset + len(record)
                continue
            try:
                if not record.endswith(b"\n"):
                    raise ValueError("no newline at its end")
                row = _decode_csv(record, scan.header) if fmt == CSV else _decode_jsonl(record)
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
                pending = (offset, record, e)
                continue
            scan.end = offset + len(record)
            scan.rows += 1
            yield row
        if pending is not None:
            scan.torn = True


def read_rows(output: str | Path) -> Iterator[Row]:
    """The complete rows of an output file, streamed; a torn last record is left out."""
    path = Path(output)
    yield from _scan(path, output_format(path), _Scan())


def read_bad(output: str | Path) -> Iterator[BadFile]:
    """The images listed in an output's sidecar (`bad_path`); a torn last line is left out."""
    path = bad_path(output)
    if not path.is_file():
        return
    with open(path, "rb") as handle:
        for _, line in _lines(handle):
            if not line.endswith(b"\n"):
                return
            raw = json.loads(line)
            yield BadFile(str(raw["path"]), str(raw["reason"]))


# --- the writer ---------------------------------------------------------------------------


@dataclasses.dataclass
class Resumed:
    """What an output already held when opened: the paths to skip."""

    scored: set[str]
    bad: set[str]
    truncated_bytes: int = 0


class OutputWriter:
    """Appends rows to an output file and bad images to its sidecar, one batch at a time,
    flushed and fsynced. Opening it resumes: see `open_output`.
    """

    def __init__(self, path: Path, fmt: str, header: list[str] | None) -> None:
        self.path = path
        self._encode = _ENCODERS[fmt]
        self._handle = open(path, "ab")  # noqa: SIM115 - closed by close()
        if header is not None and self._handle.tell() == 0:
            self._append(self._handle, _csv_line(header))
        self._bad = open(bad_path(path), "ab")  # noqa: SIM115 - closed by close()

    @staticmethod
    def _append(handle, data: bytes) -> None:
        if data:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def write(self, rows: Iterable[Row], bad: Iterable[BadFile] = ()) -> None:
        """One batch: its rows with one write, then its bad images."""
        self._append(self._handle, b"".join(self._encode(row) for row in rows))
        self._append(self._bad, b"".join(
            (json.dumps({"path": b.path, "reason": b.reason}, ensure_ascii=False) + "\n").encode()
            for b in bad))

    def close(self) -> None:
        self._handle.close()
        self._bad.close()

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _truncate_torn(path: Path, end: int) -> int:
    size = path.stat().st_size
    if size > end:
        with open(path, "r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
        log.warning("%s: cut a torn last record (%d bytes) that an interrupted run left; "
                    "its images are scored again", path, size - end)
    return size - end


def _scan_sidecar(path: Path, bad: set[str]) -> int:
    """Adds the sidecar's paths to `bad`; where its valid part ends. Its first line must be
    one infer writes, and only its last may be damaged (OutputError otherwise, nothing cut).
    """
    end, lines, pending, first = 0, 0, None, b""
    with open(path, "rb") as handle:
        for offset, line in _lines(handle):
            first = first or line[:10]
            if pending is not None:
                if not lines:
                    raise _not_ours(path, f"its first line is not a bad image infer lists "
                                          f"({pending})")
                raise OutputError(f"{path}: the line at byte {end} is damaged ({pending}) and "
                                  "is not the last one; a kill leaves at most the last one "
                                  "torn. Move the file away, or start the output afresh with ",
                                  Setting("infer.overwrite"))
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("no newline at its end")
                raw = json.loads(line)
                bad.add(str(raw["path"]))
                str(raw["reason"])
            except (ValueError, KeyError, TypeError) as e:
                pending = e
                continue
            end, lines = offset + len(line), lines + 1
    # A torn first line is ours when it starts as infer writes one (killed mid-write).
    if pending is not None and not lines and not first.startswith(b'{"path": '):
        raise _not_ours(path, f"its first line is not a bad image infer lists ({pending})")
    return end


def open_output(output: str | Path, version: str, class_names: Sequence[str], top_k: int,
                overwrite: bool = False, model: str = "") -> tuple[OutputWriter, Resumed]:
    """The writer of an output file, and what it already holds.

    A new (or, with overwrite, emptied) file starts afresh, with its sidecar. An existing one
    must start like a file infer writes, hold rows of this version, of this model (`model`,
    when a row names one) and of its classes, and as csv the same header (OutputError,
    nothing changed, otherwise); a torn last record is cut off, and its paths and the
    sidecar's are returned to be skipped.
    """
    path = Path(output)
    fmt = output_format(path)
    top_k = min(top_k, len(class_names))
    header = csv_header(class_names, top_k) if fmt == CSV else None
    if path.exists() and not path.is_file():
        raise OutputError(f"{path} exists and is not a file: pass a file path as the output")
    sidecar = bad_path(path)
    if overwrite:
        for stale in (path, sidecar):
            if stale.is_file():
                stale.unlink()
    resumed = Resumed(set(), set())
    output_end = None
    if path.is_file() and path.stat().st_size > 0:
        scan = _Scan()
        for row in _scan(path, fmt, scan, header):
            _check_row(path, row, version, model, class_names, top_k, fmt)
            resumed.scored.add(row.path)
        if scan.torn and not scan.ours:
            raise _not_ours(path, "its csv header is incomplete" if fmt == CSV else
                            "it does not start with a whole row infer writes")
        output_end = scan.end
    sidecar_end = _scan_sidecar(sidecar, resumed.bad) if sidecar.is_file() else None
    # Only now, every check passed, are torn records cut.
    if output_end is not None:
        resumed.truncated_bytes = _truncate_torn(path, output_end)
    if sidecar_end is not None:
        _truncate_torn(sidecar, sidecar_end)
    return OutputWriter(path, fmt, header), resumed


def _check_row(path: Path, row: Row, version: str, model: str, class_names: Sequence[str],
               top_k: int, fmt: str) -> None:
    """OutputError unless an existing row was written by this model version (its classes, its
    fingerprint when the row names one), with this top-k.
    """
    if row.version != version:
        raise OutputError(
            f"{path} holds rows of model version {row.version}, and this model is "
            f"version {version}: one file holds one version's scores. Pass another "
            "output file, or start this one afresh with ", Setting("infer.overwrite"))
    if len(row.probabilities) != len(class_names) or any(
            not 0 <= i < len(class_names) or class_names[i] != name
            for i, name in zip(row.top_ids, row.top_names, strict=False)):
        raise OutputError(
            f"{path} holds rows of a model with other classes ({len(row.probabilities)} "
            f"probabilities per row, e.g. {', '.join(row.top_names)}), and this model has "
            f"{len(class_names)} ({', '.join(class_names[:5])}"
            f"{', ...' if len(class_names) > 5 else ''}). Pass another output file, or start "
            "this one afresh with ", Setting("infer.overwrite"))
    if row.model and model and row.model != model:
        raise OutputError(
            f"{path} holds rows of model {row.model} (version {row.version}), and this model "
            f"is {model} (version {version}): another model with the same version folder "
            "name. One file holds one model's scores. Pass another output file, or start this "
            "one afresh with ", Setting("infer.overwrite"))
    if len(row.top_ids) != top_k and fmt != CSV:
        raise OutputError(
            f"{path} holds the top {len(row.top_ids)} classes of each image, and "
            f"this call asks for {top_k}: pass ", Setting("infer.top_k", str(len(row.top_ids))),
            ", or start the file afresh with ", Setting("infer.overwrite"))


# --- the model ----------------------------------------------------------------------------


class Scorer:
    """A version's serving_default on batches of encoded images; safe to call from several
    threads (a concrete function's call is).
    """

    def __init__(self, version: Path, serve, labels: list[str], top_k: int,
                 model: str = "") -> None:
        self.version_path = version
        self.version = version.name
        self.model = model  # the fingerprint each row carries: see model_fingerprint
        self._serve = serve
        self.labels = labels
        self.top_k = min(top_k, len(labels))

    @classmethod
    def load(cls, model_dir: str | Path, top_k: int) -> Scorer:
        from serving.predict import load_serving_signature, newest_version

        version = newest_version(model_dir)
        serve, labels = load_serving_signature(version)
        return cls(version, serve, labels, top_k, model_fingerprint(version))

    def probabilities(self, images: Sequence[bytes]):
        """[n, classes] numpy probabilities of one batch; raises what TF raises."""
        import tensorflow as tf

        outputs = self._serve(**{features.SERVING_INPUT: tf.constant(list(images))})
        return outputs[features.OUTPUT_PROBABILITIES].numpy()

    def _row(self, path: str, probabilities) -> Row:
        order = probabilities.argsort()[::-1][:self.top_k]
        return Row(path, self.version, tuple(int(i) for i in order),
                   tuple(self.labels[i] for i in order),
                   tuple(float(probabilities[i]) for i in order),
                   tuple(float(p) for p in probabilities), self.model)

    def score(self, paths: Sequence[str], images: Sequence[bytes]
              ) -> tuple[list[Row], list[BadFile]]:
        """Rows of a batch; when TF refuses the batch as bad input, each image alone, and the
        ones it refuses are BadFiles with its reason. Any other error propagates: it is not an
        image's fault, and a BadFile is never retried.
        """
        from serving.predict import decode_error

        if not images:
            return [], []
        refused = bad_image_errors()
        try:
            batch = self.probabilities(images)
        except refused:  # find which images fail, and why
            rows, bad = [], []
            for path, image in zip(paths, images, strict=True):
                try:
                    rows.append(self._row(path, self.probabilities([image])[0]))
                except refused as e:
                    bad.append(BadFile(path, decode_error(e)))
            return rows, bad
        return [self._row(p, b) for p, b in zip(paths, batch, strict=True)], []


def bad_image_errors() -> tuple[type[Exception], ...]:
    """What serving_default raises for an image it cannot decode (tf.io.decode_image's
    InvalidArgumentError, DataLossError for some truncated files): the image's fault, listed
    as bad. Anything else (ResourceExhausted, Cancelled, a signature mismatch) is not.
    """
    import tensorflow as tf

    return (tf.errors.InvalidArgumentError, tf.errors.DataLossError)


def model_fingerprint(version: Path) -> str:
    """The first 16 hex digits of serving/model_dir.py `model_digest` of a version folder
    (SHA-256 of its files, the pushed statistics left out): read once per call.
    """
    from serving.model_dir import model_digest

    return model_digest(str(version))[:16]
