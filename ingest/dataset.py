"""`ingest`: an image folder becomes sharded, gzip-compressed TFRecords plus a class map.

Accepted layouts, always ending in three splits when the source allows it:
  SRC/train, SRC/{eval|val|validation}, SRC/test  kept as given
  SRC/train, SRC/test                             eval carved from train (stratified, eval_fraction)
  SRC/train, SRC/{eval|val|validation}            two splits only: no untouched test split (warned)
  SRC/<class>/*                                   deterministic, stratified three-way split

`train` is what the model fits, `eval` what early stopping and checkpoint choice look at, and
`test` what the Evaluator reports and blesses on: nothing is ever selected on it.

Output (written to a temporary folder and swapped into place only when complete; one ingest
per OUT at a time, and --overwrite replaces only ingest's own output: ingest/output.py):
  OUT/{train,eval,test}/data-00000-of-0000N.tfrecord.gz   tf.Example{image: bytes, label: int64,
                                                           source_path: bytes (relative to SRC)}
  OUT/labels.txt     one class name per line; line i is label i
  OUT/dataset.json   class names, image shape, per-split and per-class counts, provenance
  OUT/quarantine.json  with skip_bad: each skipped file and why

Every image is decoded completely, in worker processes (ingest/decode.py): corrupt data is
refused (or, with skip_bad, quarantined) here, naming the file, not in Transform; so are images
over `max_pixels` and files that are not JPEG or PNG by content. Files are found and read by
ingest/sources.py: links are followed (and counted), and links that loop or lead nowhere, FIFOs,
devices, names that are not UTF-8 and files over `max_file_bytes` are bad files too.

A photo's EXIF orientation is not applied: tf.io.decode_image in serving ignores it too, so
training sees what serving sees. Such images are counted in dataset.json and warned about.

Images may have any size (phone photos of many sizes are fine): the bytes are stored unchanged
and Transform decodes and resizes them to the model's input, in training and serving alike.
`resize=(h, w)` fixes that input at ingest; without it, a folder of one size gets that size and
a folder of many sizes gets `sizes_vary` and the median height and width as `image_shape`: the
run chooses the model's real input from `image_sizes` (min/median/max of height, width and
short side, coarse histograms, and the short sides' counts: `ImageSizes.smaller_than`).
`image_shapes_seen` keeps the 20 most common shapes and counts the rest as `other`.

Gray and colour images mixed: `channels=n` (1 or 3) says what the model gets; without it ingest
chooses 3 (gray is replicated, as tf.io.decode_image does) and warns, recording the choice as
`channels_chosen`. Alpha is dropped by the decoder (a 4-channel model could not take a JPEG).
The bytes are stored unchanged but for CMYK JPEGs of a gray model (--channels 1), re-encoded as
PNG: ingest never chooses 1 channel for a folder holding one, as CMYK counts as colour.

The same image (by decoded pixels) in two splits is leakage: refused unless allow_duplicates.
Duplicates within a split are counted. dataset.json records both, the images' formats and
modes, and the conversions.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import functools
import hashlib
import json
import logging
import math
import os
import random
import stat
import time
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from ingest import output, processes
from ingest.decode import DEFAULT_MAX_PIXELS, Decoded, decode
from ingest.errors import IngestError
from ingest.imageinfo import BadImage
from ingest.manifest import DatasetManifest, SplitManifest
from ingest.output import LABELS_FILE, QUARANTINE_FILE, shard_name
from ingest.sources import (
    default_max_file_bytes,
    is_utf8,
    read_file,
    shown,
    stat_problem,
    walk,
)
from ingest.tfrecord import GzipTFRecordWriter, ImageExampleEncoder
from schema import features
from schema.errors import Part, Setting
from schema.records import RecordError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
TRAIN = "train"
EVAL = "eval"
TEST = "test"
SPLITS = (TRAIN, EVAL, TEST)
# Folder names accepted for each split (lower case).
SPLIT_FOLDERS = {TRAIN: (TRAIN,), EVAL: ("eval", "val", "validation"), TEST: (TEST,)}
DEFAULT_EVAL_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.2
MAX_FRACTION = 0.5
_MAX_SHARD = 50_000
_MIN_SHARD = 500


# image_shapes_seen keeps this many shapes, most common first; the rest are counted as "other".
MAX_SHAPES_SEEN = 20
# Coarse histogram edges of image_sizes' heights and widths; the last bin is open (hi: null).
SIZE_EDGES = (0, 32, 64, 128, 256, 512, 1024, 2048, 4096)
# Short sides are counted one by one up to this many distinct values, else in bins of 16.
MAX_SHORT_SIDES = 2000
SHORT_SIDE_BIN = 16


def load_dataset_info(data_dir: str | os.PathLike) -> DatasetManifest:
    """The dataset.json of an ingested folder; IngestError when there is none."""
    try:
        manifest = DatasetManifest.read(data_dir)
    except RecordError as e:  # a BadInput already, but the user's file: say how to fix it
        raise IngestError(f"{e}: ingest the data again") from None
    if manifest is None:
        raise IngestError(
            f"{DatasetManifest.path_in(data_dir)} not found: {data_dir} is not a dataset "
            "written by `python -m pipeline ingest`"
        )
    return manifest


def _visible_children(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _subfolders(folder: Path) -> list[Path]:
    """Visible folders in folder, links followed. A link that leads nowhere is refused, not
    passed over: it may be a class folder whose data is not mounted, and leaving a class out
    would renumber the labels.
    """
    found = []
    for path in _visible_children(folder):
        try:
            if stat.S_ISDIR(os.stat(path).st_mode):
                found.append(path)
        except OSError as e:
            raise IngestError(f"{shown(path)}: {stat_problem(e, path)}. Fix the link if it is "
                              "a class or split folder, else remove it.") from None
    return found


# Characters that would split a class name across lines of labels.txt.
_LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})


def _check_class_names(parent: Path, names: Sequence[str]) -> None:
    """Class names become labels.txt lines and dataset.json text: refuse what cannot be."""
    for name in names:
        if not is_utf8(name):
            raise IngestError(f"class folder {shown(parent / name)}: its name is not valid "
                              "UTF-8; rename the folder.")
        if any(unicodedata.category(c) in _LINE_BREAKING for c in name):
            raise IngestError(f"class folder {str(parent / name)!r}: its name holds a control "
                              "or line-break character, and labels.txt has one class name a "
                              "line; rename the folder.")


def _class_files(
    class_dir: str, above: Sequence[str] = ()
) -> tuple[list[str], list[str], list[tuple[str, str]], int]:
    """Under a class folder (recursively, links followed): image files, other files, what
    cannot be read as (path, reason), and the number of links followed.
    """
    found = walk(class_dir, above)
    images: list[str] = []
    others: list[str] = []
    for path in found.files:
        (images if os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS else others).append(path)
    return images, others, found.bad, found.links


def _hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def carve(
    paths: Sequence[str], fractions: Sequence[float], relative_to: int
) -> list[list[str]]:
    """Deterministic split of one class's files: [rest, share 1, share 2, ...].

    Files are ordered by a hash of their path relative to the source folder, so the split
    survives moving the folder and does not depend on file order; each share takes
    round(n * fraction) files, at least one while the rest keeps one. Applied per class, this
    keeps every split's class balance the same as the source's (stratified).
    """
    ordered = sorted(paths, key=lambda p: _hash_key(p[relative_to:]))
    shares, start = [], 0
    for fraction in fractions:
        take = round(len(ordered) * fraction)
        if take == 0 and len(ordered) - start > 1:
            take = 1
        take = min(take, max(0, len(ordered) - start - 1))
        shares.append(ordered[start:start + take])
        start += take
    return [ordered[start:], *shares]


def _plan_splits(plan: tuple) -> list[str]:
    """The splits one folder feeds: (kept split, (carved split, fraction), ...) -> names."""
    keep, *shares = plan
    return [keep, *(split for split, _ in shares)]


def _split_folders(src: Path, top: list[Path]) -> dict[str, Path]:
    """Split name -> folder, for a SRC/<split>/<class>/ layout; {} for SRC/<class>/."""
    found: dict[str, list[Path]] = {}
    for folder in top:
        for split, names in SPLIT_FOLDERS.items():
            if folder.name.lower() in names:
                found.setdefault(split, []).append(folder)
    if not found:
        return {}
    extra = sorted(str(p) for p in top if not any(p in v for v in found.values()))
    if TRAIN not in found:
        names = sorted(p.name for folders in found.values() for p in folders)
        raise IngestError(f"{src}: split folders {names} found but no 'train/'.")
    if len(found.get(EVAL, [])) > 1:
        raise IngestError(
            f"{src}: need at most one validation split folder (one of "
            f"{list(SPLIT_FOLDERS[EVAL])}), found {[p.name for p in found[EVAL]]}."
        )
    if EVAL not in found and TEST not in found:
        raise IngestError(
            f"{src}: 'train/' needs a 'test/' folder beside it (eval is then carved from train), "
            f"or a validation folder ({'/'.join(SPLIT_FOLDERS[EVAL])}), or both."
        )
    if extra:
        raise IngestError(f"{src}: unexpected folders beside the split folders: {extra}")
    return {split: folders[0] for split, folders in found.items()}


def discover(
    src: Path,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    skipped: list[tuple[str, str]] | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    counts: collections.Counter | None = None,
    not_images: list[tuple[str, str]] | None = None,
) -> tuple[list[str], dict[str, list[tuple[str, int]]], dict[str, str]]:
    """Class names, the (file, label) items of each split, and where each split came from.

    Raises IngestError on a bad layout.
    With `skipped` (a list), non-image files and files that cannot be read (links that loop or
    lead nowhere, FIFOs, devices, names that are not UTF-8) are appended to it as (path,
    reason) instead of being refused. With `not_images` (a list), files that are not images by
    their extension (a stray GIF, notes, thumbnails databases) go there whatever `skipped` is:
    they are not the user's data, unlike a damaged .jpg. `counts` gets "symlinks_followed".
    """
    if not src.is_dir():
        raise IngestError(
            f"{src}: not a folder. Pass a folder of <class>/ or <split>/<class>/ images."
        )
    if not is_utf8(str(src)):
        raise IngestError(f"{shown(src)}: the source folder's path is not valid UTF-8, and "
                          "dataset.json records it; rename or link it under a UTF-8 name.")
    top = _subfolders(src)
    roots = _split_folders(src, top)
    problems: list[str] = []

    if roots:
        classes_per_split = {
            s: [p.name for p in _subfolders(d)] for s, d in roots.items()
        }
        class_names = classes_per_split[TRAIN]
        for split, names in classes_per_split.items():
            if names != class_names:
                only_train = sorted(set(class_names) - set(names))
                only_other = sorted(set(names) - set(class_names))
                raise IngestError(
                    f"{src}: class folders differ between splits: only in {roots[TRAIN]}: "
                    f"{only_train}; only in {roots[split]}: {only_other}. Every split needs the "
                    "same class folders."
                )
    else:
        roots = {"": src}
        class_names = [p.name for p in top]

    _check_class_names(roots.get(TRAIN, src), class_names)
    if not class_names:
        raise IngestError(f"{src}: no class folders found (expected {src}/<class>/*.jpg).")
    if len(class_names) < 2:
        raise IngestError(f"{src}: found one class folder {class_names}; need at least 2.")

    # Which splits are carved out of which folder: the rest of the files stay in the first.
    if "" in roots:
        carved = {"": (TRAIN, (EVAL, eval_fraction), (TEST, test_fraction))}
    elif EVAL not in roots:
        carved = {TRAIN: (TRAIN, (EVAL, eval_fraction)), TEST: (TEST,)}
    else:
        carved = {split: (split,) for split in roots}
    items: dict[str, list[tuple[str, int]]] = {
        split: [] for plan in carved.values() for split in _plan_splits(plan)
    }
    prefix = len(str(src)) + 1
    for folder_split, root in roots.items():
        keep, *shares = carved[folder_split]
        above = [str(src)] if root == src else [str(src), str(root)]
        for label, name in enumerate(class_names):
            images, others, unreadable, links = _class_files(str(root / name), above)
            if counts is not None:
                counts["symlinks_followed"] += links
            left_out = not_images if not_images is not None else skipped
            if others and left_out is not None:
                left_out.extend((path, "not an image file (by extension)") for path in others)
            elif others:
                listed = ", ".join(others[:10])
                more = f" (and {len(others) - 10} more)" if len(others) > 10 else ""
                problems.append(f"not image files ({sorted(IMAGE_EXTENSIONS)}): {listed}{more}")
            if skipped is not None:
                skipped.extend(unreadable)
            else:
                problems.extend(f"{path}: {reason}" for path, reason in unreadable)
            if not images:
                problems.append(f"empty class folder: {root / name}")
            parts = carve(images, [fraction for _, fraction in shares], prefix)
            for split, paths in zip(_plan_splits(carved[folder_split]), parts, strict=True):
                items[split].extend((path, label) for path in paths)
    if problems:
        hint: tuple[Part, ...] = ()
        if any(not problem.startswith("empty class folder") for problem in problems):
            hint = ("\nMove or fix those files, or use ", Setting("ingest.skip_bad"),
                    " to leave them out.")
        raise IngestError(f"{src}: cannot ingest:\n  " + "\n  ".join(problems), *hint)
    for split, split_items in items.items():
        if not split_items:
            raise IngestError(
                f"{src}: the {split} split is empty; add images or change ",
                Setting("ingest.eval_fraction"), "/", Setting("ingest.test_fraction"), ".",
            )
    origins = {}
    for folder_split, (keep, *shares) in carved.items():
        folder = roots[folder_split].name + "/" if folder_split else "the class folders"
        for split, fraction in shares:
            origins[split] = f"carved from {folder} ({fraction:.0%} of each class)"
        origins[keep] = folder + (" (the rest)" if shares else "")
    return (class_names, {split: items[split] for split in SPLITS if split in items},
            {split: origins[split] for split in SPLITS if split in origins})


@dataclasses.dataclass
class ShardReport:
    """What workers wrote and found; one per shard, merged into one for the dataset."""

    shapes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    example_of: dict[tuple[int, int, int], str] = dataclasses.field(default_factory=dict)
    bad: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    kinds: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    converted: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    # (pixel digest, path) of each image written: duplicates are found across shards.
    digests: list[tuple[bytes, str]] = dataclasses.field(default_factory=list)
    # Images whose EXIF orientation is not 1: trained as stored, as TF Serving decodes them.
    rotated: list[str] = dataclasses.field(default_factory=list)

    def add(self, path: str, image: Decoded) -> None:
        shape = (image.height, image.width, image.channels)
        self.shapes[shape] += 1
        self.example_of.setdefault(shape, path)
        self.kinds[image.kind] += 1
        if image.converted:
            self.converted[image.kind] += 1
        self.digests.append((image.digest, path))
        if image.orientation != 1:
            self.rotated.append(path)

    def merge(self, other: ShardReport) -> None:
        self.shapes.update(other.shapes)
        for shape, path in other.example_of.items():
            self.example_of.setdefault(shape, path)
        self.bad.extend(other.bad)
        self.kinds.update(other.kinds)
        self.converted.update(other.converted)  # digests stay per shard: splits matter
        self.rotated.extend(other.rotated)


def source_path(file_path: str, source: str) -> bytes:
    """The file's path relative to the ingested folder, as the example's source path.

    Files are found under `source` by joining names (ingest/sources.py walks without resolving
    links), so the path starts with it. Names are UTF-8 (others are refused as bad files).
    """
    relative = file_path[len(source) + 1:] if file_path.startswith(source + os.sep) else file_path
    return relative.replace(os.sep, "/").encode("utf-8", "surrogateescape")


def _write_shard(
    path: str,
    items: Sequence[tuple[str, int]],
    max_pixels: int,
    channels: int | None,
    max_file_bytes: int | None,
    source: str,
) -> ShardReport:
    """Decodes each image and writes the good ones to one shard; the bad ones are listed.

    Each example carries its file's path relative to `source`, the folder being ingested.
    """
    report = ShardReport()
    encode = ImageExampleEncoder(features.IMAGE_KEY, features.LABEL_KEY,
                                 features.SOURCE_PATH_KEY).encode
    with GzipTFRecordWriter(path) as writer:
        for file_path, label in items:
            try:
                image = decode(read_file(file_path, max_file_bytes), max_pixels, channels)
            except OSError as e:
                report.bad.append((file_path, f"cannot read: {e.strerror or e}"))
                continue
            except BadImage as e:
                report.bad.append((file_path, str(e)))
                continue
            writer.write(encode(image.data, label, source_path(file_path, source)))
            report.add(file_path, image)
    return report


def _write_shards(
    jobs: list[tuple[str, list[tuple[str, int]]]],
    workers: int,
    max_pixels: int,
    channels: int | None,
    max_file_bytes: int | None,
    source: str,
) -> list[ShardReport]:
    """One report per job, decoded and written in worker processes when there are several.

    On any exception, Ctrl-C included, the workers are killed rather than waited for.
    """
    write = functools.partial(_write_shard, max_pixels=max_pixels, channels=channels,
                              max_file_bytes=max_file_bytes, source=source)
    if workers > 1 and len(jobs) > 1:
        with processes.new_pool(min(workers, len(jobs))) as pool:
            try:
                return list(pool.map(write, *zip(*jobs, strict=True)))
            except BaseException:
                processes.kill_workers(pool)
                raise
    return [write(*job) for job in jobs]


@dataclasses.dataclass(frozen=True)
class Duplicates:
    """Images with the same decoded pixels: across splits (leakage) and within one split."""

    across: list[list[tuple[str, str]]]  # groups of (split, path), each in 2+ splits
    within: dict[str, int]  # per split: files whose pixels an earlier file of the split has


def find_duplicates(digests: dict[str, list[tuple[bytes, str]]]) -> Duplicates:
    """Groups the (digest, path) pairs of each split by digest."""
    groups: dict[bytes, list[tuple[str, str]]] = {}
    for split, pairs in digests.items():
        for digest, path in pairs:
            groups.setdefault(digest, []).append((split, path))
    across = []
    within = {split: 0 for split in digests}
    for members in groups.values():
        if len(members) == 1:
            continue
        per_split = collections.Counter(split for split, _ in members)
        for split, count in per_split.items():
            within[split] += count - 1
        if len(per_split) > 1:
            across.append(sorted(members, key=lambda m: (SPLITS.index(m[0]), m[1])))
    return Duplicates(sorted(across), within)


def _refuse_duplicates(duplicates: Duplicates, src: Path) -> None:
    shown = "\n  ".join(" = ".join(f"{split}: {path}" for split, path in group)
                        for group in duplicates.across[:50])
    more = (f"\n  (and {len(duplicates.across) - 50} more)"
            if len(duplicates.across) > 50 else "")
    raise IngestError(
        f"{src}: {len(duplicates.across)} image(s) are in more than one split (identical "
        "pixels once decoded), so the model would be evaluated on images it trained on:\n  "
        f"{shown}{more}\nRemove the copies from all but one split, or use ",
        Setting("ingest.allow_duplicates"), " to keep them (they are counted in dataset.json)."
    )


def _duplicates_info(duplicates: Duplicates, allowed: bool, src: Path) -> dict:
    """dataset.json's record: counts, and the first groups across splits (relative paths)."""
    prefix = len(str(src)) + 1
    return {
        "across_splits": len(duplicates.across),
        "across_splits_files": [[path[prefix:] for _, path in group]
                                for group in duplicates.across[:100]],
        "within_split": duplicates.within,
        "allowed": allowed,
    }


def _refuse_bad(bad: list[tuple[str, str]], src: Path) -> None:
    listed = "\n  ".join(f"{path}: {reason}" for path, reason in sorted(bad)[:50])
    more = f"\n  (and {len(bad) - 50} more)" if len(bad) > 50 else ""
    raise IngestError(
        f"{src}: {len(bad)} file(s) are not readable images:\n  {listed}{more}\n"
        "Fix or remove them, or use ", Setting("ingest.skip_bad"),
        f" to leave them out (they are listed in OUT/{QUARANTINE_FILE})."
    )


def evaluation_split(splits: Iterable[str]) -> str:
    """Where accuracy is reported and blessing decided: never a split training looked at."""
    return TEST if TEST in splits else EVAL


def check_fraction(option: Part, fraction: float) -> None:
    if not 0 < fraction <= MAX_FRACTION:
        raise IngestError(option, f" must be in (0, {MAX_FRACTION}], got {fraction}")


TWO_SPLITS_WARNING = (
    "%s has no test split: the accuracy reported and blessed is then measured on the eval "
    "split, which early stopping also chose on. Add a test/ folder for an untouched estimate."
)


def parse_resize(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise IngestError(Setting("ingest.resize"),
                          f" takes HEIGHTxWIDTH, e.g. 32x32; got {text!r}") from None
    if height < 1 or width < 1:
        raise IngestError(Setting("ingest.resize"), f" needs positive sizes, got {text!r}")
    return height, width


def target_shape(
    shapes: collections.Counter,
    resize: tuple[int, int] | None,
    channels: int,
) -> tuple[tuple[int, int, int], bool]:
    """image_shape, and whether sizes vary: --resize's size, else the one size every image
    has, else the (lower) median height and width, the run choosing the model's input later.
    """
    if resize:
        return (*resize, channels), False
    heights, widths, _, sizes = _size_counts(shapes)
    if len(sizes) == 1:
        (height, width), = sizes
        return (height, width, channels), False
    return (_lower_median(heights), _lower_median(widths), channels), True


def choose_channels(
    shapes: collections.Counter,
    example_of: dict[tuple[int, int, int], str],
    channels: int | None,
) -> tuple[int, dict]:
    """The model's channel count and dataset.json's record of why: --channels when given, else
    the one count every image has, else 3 (colour), warning how many gray images are replicated.

    A CMYK JPEG counts as colour (3), so ingest never chooses 1 for a folder holding one: the
    CMYK-to-gray-PNG conversion (decode.py) is only needed, and only done, for --channels 1.
    """
    per_count: collections.Counter = collections.Counter()
    for (_, _, count), n in shapes.items():
        per_count[count] += n
    counts = {"gray_images": per_count[1], "colour_images": per_count[3]}
    if channels is not None:
        return channels, {"channels": channels, "chosen_by": "channels",
                          "why": f"channels {channels} given", **counts}
    if len(per_count) == 1:
        (only,) = per_count
        return only, {"channels": only, "chosen_by": "ingest",
                      "why": f"every image is {'gray' if only == 1 else 'colour'}", **counts}
    chosen = 3 if 3 in per_count else max(per_count)
    gray = sum(n for count, n in per_count.items() if count < chosen)
    example = next(path for shape, path in sorted(example_of.items()) if shape[2] < chosen)
    why = (f"gray and colour images mixed ({gray} gray, {per_count[chosen]} colour): colour "
           f"kept, the gray images replicated to {chosen} channels")
    log.warning("%d of %d images are gray (e.g. %s), the rest colour: the model gets %d "
                "channels and each gray image is replicated to %d; set ingest's channels to 1 "
                "for a gray model instead (colour reduced to gray), or to 3 to silence this",
                gray, sum(per_count.values()), example, chosen, chosen)
    return chosen, {"channels": chosen, "chosen_by": "ingest", "why": why, **counts}


def _lower_median(counts: collections.Counter) -> int:
    """The median of values given as value -> count; the lower one of an even count."""
    middle = (sum(counts.values()) - 1) // 2
    seen = 0
    for value, n in sorted(counts.items()):
        seen += n
        if seen > middle:
            return value
    raise ValueError("no values")


def _summary(counts: collections.Counter) -> dict[str, int]:
    return {"min": min(counts), "median": _lower_median(counts), "max": max(counts)}


def _histogram(counts: collections.Counter) -> list[list[int | None]]:
    """[lo, hi, count] of each non-empty bin of SIZE_EDGES (lo <= v < hi; hi None: open)."""
    edges = (*SIZE_EDGES, None)
    bins = []
    for low, high in zip(edges, edges[1:], strict=False):
        n = sum(c for v, c in counts.items() if v >= low and (high is None or v < high))
        if n:
            bins.append([low, high, n])
    return bins


def _size_counts(shapes: collections.Counter) -> tuple[collections.Counter, collections.Counter,
                                                      collections.Counter, set]:
    """Images per height, per width and per short side, and the distinct (height, width)."""
    heights, widths, shorts = (collections.Counter() for _ in range(3))
    sizes = set()
    for (height, width, _), n in shapes.items():
        heights[height] += n
        widths[width] += n
        shorts[min(height, width)] += n
        sizes.add((height, width))
    return heights, widths, shorts, sizes


def image_sizes(shapes: collections.Counter) -> dict:
    """dataset.json's `image_sizes`, from the (height, width, channels) -> count the workers
    reported: no image is decoded again. Short sides are counted exactly up to MAX_SHORT_SIDES
    distinct values, else in bins of SHORT_SIDE_BIN (ImageSizes.smaller_than).
    """
    heights, widths, shorts, sizes = _size_counts(shapes)
    step = 1 if len(shorts) <= MAX_SHORT_SIDES else SHORT_SIDE_BIN
    binned: collections.Counter = collections.Counter()
    for side, n in shorts.items():
        binned[side // step * step] += n
    return {
        "count": sum(shapes.values()),
        "distinct_sizes": len(sizes),
        "height": _summary(heights),
        "width": _summary(widths),
        "short_side": _summary(shorts),
        "histogram": {"height": _histogram(heights), "width": _histogram(widths)},
        "short_side_counts": [[side, n] for side, n in sorted(binned.items())],
        "short_side_bin": step,
    }


def shapes_seen(shapes: collections.Counter) -> dict[str, int]:
    """The MAX_SHAPES_SEEN most common "HxWxC" -> count, and "other": the images of the rest."""
    ordered = sorted(shapes.items(), key=lambda item: (-item[1], item[0]))
    seen = {f"{h}x{w}x{c}": n for (h, w, c), n in ordered[:MAX_SHAPES_SEEN]}
    rest = sum(n for _, n in ordered[MAX_SHAPES_SEEN:])
    if rest:
        seen["other"] = rest
    return seen


def _check_expected(
    image_shape: tuple[int, int, int],
    sizes_vary: bool,
    expected: tuple[str, tuple[int, int, int]],
    expected_sizes_vary: bool,
    src: Path,
) -> None:
    """One model takes every span: the channels must match, and the size too when both have
    a fixed one (Transform resizes images whose size differs from the model's input).
    """
    what, want = expected[0], tuple(expected[1])
    size_differs = not sizes_vary and not expected_sizes_vary and image_shape[:2] != want[:2]
    if size_differs:
        have = "x".join(map(str, image_shape))
        wanted = "x".join(map(str, want))
        raise IngestError(
            f"{src}: the images are {have}, but {what} has {wanted}; one model "
            "takes one shape: use ", Setting("ingest.resize", wanted.rsplit("x", 1)[0]),
            " (and ", Setting("ingest.channels", str(want[2])), " if the channels differ)",
        )
    if image_shape[2] != want[2]:
        raise IngestError(
            f"{src}: the model would get {image_shape[2]} channel(s), but {what} has {want[2]}; "
            "one model takes one channel count: use ",
            Setting("ingest.channels", str(want[2])),
        )


def _check_not_emptied(
    items: dict[str, list[tuple[str, int]]], class_names: Sequence[str], src: Path
) -> None:
    for split, split_items in items.items():
        present = {label for _, label in split_items}
        empty = [name for label, name in enumerate(class_names) if label not in present]
        if empty:
            raise IngestError(
                f"{src}: after leaving out the bad files, the {split} split has no images of "
                f"class(es) {empty}."
            )


def _num_shards(count: int, workers: int) -> int:
    return max(math.ceil(count / _MAX_SHARD), min(workers, max(1, count // _MIN_SHARD)))


def _check_options(channels: int | None, max_pixels: int, max_file_bytes: int | None) -> None:
    if channels == 4:
        raise IngestError(
            Setting("ingest.channels", "4"), " would make a model that refuses every JPEG at "
            "serving time (JPEG has no alpha). The decoder drops alpha; use ",
            Setting("ingest.channels", "3"), " for colour, 1 for gray."
        )
    if channels is not None and channels not in (1, 3):
        raise IngestError(Setting("ingest.channels"), f" must be 1 or 3, got {channels}")
    if max_pixels < 1:
        raise IngestError(Setting("ingest.max_pixels"), f" must be at least 1, got {max_pixels}")
    if max_file_bytes is not None and max_file_bytes < 1:
        raise IngestError(Setting("ingest.max_file_bytes"),
                          f" must be at least 1, got {max_file_bytes}")


def _plan_shards(
    items: dict[str, list[tuple[str, int]]], tmp: Path, seed: int, workers: int
) -> list[tuple[str, str, list[tuple[str, int]]]]:
    """(split, shard path, items) for each shard: each split shuffled, then dealt out."""
    jobs = []
    for split, split_items in items.items():
        (tmp / split).mkdir(parents=True)
        ordered = sorted(split_items)
        random.Random(seed).shuffle(ordered)
        n = _num_shards(len(ordered), workers)
        for i in range(n):
            shard = tmp / split / shard_name(i, n)
            jobs.append((split, str(shard), ordered[i::n]))
    return jobs


def _merge_reports(
    splits: list[str], reports: list[ShardReport]
) -> tuple[ShardReport, dict[str, list[tuple[bytes, str]]]]:
    """One report for the dataset, and the (digest, path) pairs of each split."""
    merged = ShardReport()
    digests: dict[str, list[tuple[bytes, str]]] = {split: [] for split in splits}
    for split, report in zip(splits, reports, strict=True):
        merged.merge(report)
        digests[split].extend(report.digests)
    return merged, digests


def _split_info(
    items: dict[str, list[tuple[str, int]]], class_names: Sequence[str], origins: dict[str, str]
) -> dict[str, SplitManifest]:
    """dataset.json's per-split counts, per class, and where each split came from."""
    splits = {}
    for split, split_items in items.items():
        per_class = collections.Counter(class_names[label] for _, label in split_items)
        splits[split] = SplitManifest(
            count=len(split_items),
            per_class={name: per_class.get(name, 0) for name in class_names},
            origin=origins[split],
        )
    return splits


def _conversions_info(converted: collections.Counter, channels: int | None) -> dict:
    return {"count": sum(converted.values()), "from": dict(converted.most_common()),
            "to": f"PNG {'L' if channels == 1 else 'RGB'}" if converted else None}


def ingest(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    workers: int | None = None,
    overwrite: bool = False,
    seed: int = 0,
    resize: tuple[int, int] | None = None,
    channels: int | None = None,
    skip_bad: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allow_duplicates: bool = False,
    expected_shape: tuple[str, tuple[int, int, int]] | None = None,
    max_file_bytes: int | None = None,
    lock_held: bool = False,
    expected_sizes_vary: bool = False,
) -> DatasetManifest:
    """Ingest src into out; with skip_bad, unreadable and non-image files are quarantined.

    Images over max_pixels are bad files too, and files over max_file_bytes (default: the
    largest an image under max_pixels could plausibly be), which are not read past it. The
    same image in two splits is refused unless allow_duplicates. `expected_shape` (what has it,
    the shape): the shape the data must have, such as the previous span's: its channels, and
    its size unless its sizes vary (`expected_sizes_vary`) or these do. out is locked for
    the whole ingest (IngestBusyError if another holds it) unless lock_held: the caller holds
    it, as ingest_span holds its span root's. overwrite replaces only an out that ingest wrote
    (ingest/output.py says what counts).
    """
    src, out = Path(src).resolve(), Path(out).resolve()
    check_fraction(Setting("ingest.eval_fraction"), eval_fraction)
    check_fraction(Setting("ingest.test_fraction"), test_fraction)
    _check_options(channels, max_pixels, max_file_bytes)
    max_file_bytes = max_file_bytes or default_max_file_bytes(max_pixels)
    output.check_paths(src, out)
    output.check_target(out, overwrite)  # before the lock: a refusal leaves nothing behind
    with output.claimed(out, overwrite, lock_held) as tmp:
        return _ingest_into(tmp, src, out, eval_fraction=eval_fraction,
                            test_fraction=test_fraction, workers=workers or os.cpu_count() or 1,
                            seed=seed, resize=resize, channels=channels, skip_bad=skip_bad,
                            max_pixels=max_pixels, allow_duplicates=allow_duplicates,
                            expected_shape=expected_shape, max_file_bytes=max_file_bytes,
                            expected_sizes_vary=expected_sizes_vary)


def _ingest_into(
    tmp: Path,
    src: Path,
    out: Path,
    *,
    eval_fraction: float,
    test_fraction: float,
    workers: int,
    seed: int,
    resize: tuple[int, int] | None,
    channels: int | None,
    skip_bad: bool,
    max_pixels: int,
    allow_duplicates: bool,
    expected_shape: tuple[str, tuple[int, int, int]] | None,
    max_file_bytes: int,
    expected_sizes_vary: bool = False,
) -> DatasetManifest:
    """The work of ingest() once out is claimed: written into tmp, then swapped into place."""
    start = time.monotonic()
    skipped: list[tuple[str, str]] = []
    counts: collections.Counter = collections.Counter()
    class_names, items, origins = discover(src, eval_fraction, skipped if skip_bad else None,
                                           test_fraction, counts, not_images=skipped)
    if skipped and not skip_bad:
        examples = ", ".join(path for path, _ in skipped[:3])
        log.warning("left out %d file(s) that are not images by their extension (%s), e.g. %s; "
                    "listed in %s", len(skipped), ", ".join(sorted(IMAGE_EXTENSIONS)), examples,
                    out / QUARANTINE_FILE)
    if TEST not in items:
        log.warning(TWO_SPLITS_WARNING, src)

    jobs = _plan_shards(items, tmp, seed, workers)
    reports = _write_shards([job[1:] for job in jobs], workers, max_pixels, channels,
                            max_file_bytes, str(src))
    report, digests = _merge_reports([job[0] for job in jobs], reports)
    if report.bad and not skip_bad:
        _refuse_bad(report.bad, src)
    skipped.extend(report.bad)
    dropped = {path for path, _ in report.bad}
    items = {split: [item for item in split_items if item[0] not in dropped]
             for split, split_items in items.items()}
    _check_not_emptied(items, class_names, src)
    duplicates = find_duplicates(digests)
    if duplicates.across and not allow_duplicates:
        _refuse_duplicates(duplicates, src)
    model_channels, channels_chosen = choose_channels(report.shapes, report.example_of, channels)
    image_shape, sizes_vary = target_shape(report.shapes, resize, model_channels)
    if expected_shape:
        _check_expected(image_shape, sizes_vary, expected_shape, expected_sizes_vary, src)
    sizes = image_sizes(report.shapes)
    if sizes_vary:
        log.info("images have %d sizes (height %d-%d, width %d-%d), stored as they are: the "
                 "run resizes them to the model's input", sizes["distinct_sizes"],
                 sizes["height"]["min"], sizes["height"]["max"], sizes["width"]["min"],
                 sizes["width"]["max"])
    elapsed = time.monotonic() - start
    total = sum(len(v) for v in items.values())
    manifest = DatasetManifest(
        format="TFRecord (GZIP) of tf.train.Example",
        features={
            features.IMAGE_KEY: "bytes: the encoded image file, unchanged (re-encoded as "
                                "PNG only where `converted` says)",
            features.LABEL_KEY: f"int64: index into class_names / {LABELS_FILE}",
            features.SOURCE_PATH_KEY: "bytes: the image file's path relative to `source` "
                                      "(UTF-8, / separated); not read by the model",
        },
        class_names=tuple(class_names),
        image_shape=image_shape,
        sizes_vary=sizes_vary,
        image_sizes=sizes,
        image_shapes_seen=shapes_seen(report.shapes),
        channels_chosen=channels_chosen,
        image_modes=dict(report.kinds.most_common()),
        converted=_conversions_info(report.converted, channels),
        shape_policy={"resize": list(resize) if resize else None, "channels": channels},
        max_pixels=max_pixels,
        max_file_bytes=max_file_bytes,
        symlinks_followed=counts["symlinks_followed"],
        exif_rotated=_rotated_info(report.rotated, src),
        skipped_files=len(skipped),
        duplicates=_duplicates_info(duplicates, allow_duplicates, src),
        splits=_split_info(items, class_names, origins),
        source=str(src),
        created=datetime.datetime.now(datetime.UTC).isoformat(),
        ingest_seconds=round(elapsed, 3),
        images_per_second=round(total / elapsed, 1) if elapsed > 0 else None,
    )
    (tmp / LABELS_FILE).write_text("".join(f"{name}\n" for name in class_names),
                                  encoding="utf-8")
    if skipped:
        (tmp / QUARANTINE_FILE).write_text(json.dumps(
            [{"path": path, "reason": reason} for path, reason in sorted(skipped)], indent=2
        ) + "\n")
        if skip_bad:  # else only files that are not images, warned about already
            log.warning("skipped %d bad file(s); see %s", len(skipped), out / QUARANTINE_FILE)
    _log_findings(report.converted, duplicates, manifest.converted["to"])
    _log_rotated(manifest.exif_rotated)
    manifest.write(tmp)
    output.publish(tmp, out)
    log.info("ingested %d images from %s into %s in %.1fs", total, src, out, elapsed)
    return load_dataset_info(out)


def _log_findings(converted: collections.Counter, duplicates: Duplicates, to: str | None) -> None:
    if converted:
        modes = ", ".join(f"{n} {kind}" for kind, n in converted.most_common())
        log.warning("re-encoded %d image(s) as %s, which the model's decoder could not read as "
                    "they were: %s", sum(converted.values()), to, modes)
    if duplicates.across:
        log.warning("kept %d image(s) found in more than one split (allow_duplicates); listed "
                    "in dataset.json", len(duplicates.across))
    within = {split: n for split, n in duplicates.within.items() if n}
    if within:
        log.warning("duplicate images within a split (extra copies): %s", within)


def _rotated_info(rotated: list[str], src: Path) -> dict:
    """dataset.json's record of images an EXIF orientation would turn: count and examples."""
    prefix = len(str(src)) + 1
    return {"count": len(rotated), "examples": [path[prefix:] for path in sorted(rotated)[:5]],
            "applied": False}


def _log_rotated(rotated: dict) -> None:
    if rotated["count"]:
        log.warning(
            "%d image(s) have an EXIF orientation (e.g. %s): they are trained as stored, not "
            "turned as a photo viewer shows them, as TF Serving's decoder reads them; clients "
            "must send such photos as stored too, or rotate them before ingest",
            rotated["count"], rotated["examples"][0])
