"""Spans: batches of new labelled images, each ingested into its own folder of one data root.

`ingest --span N` writes ROOT/span-N/{train,eval,test}/ and its dataset.json. A run on ROOT reads
the newest span through ExampleGen's `{SPAN}` patterns, so scheduled runs need no path that
changes. With a window of K spans (`run --spans K`), the train images of the K-1 spans before it
come too, as the `history` split: the Trainer fits train + history, while the statistics, the
gate, early stopping and the evaluation look at the newest span alone.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ingest.manifest import DatasetManifest
from schema.errors import BadInput, Setting

PREFIX = "span-"
_SPAN_DIR = re.compile(rf"^{PREFIX}(\d+)$")
SPAN_SPEC = "{SPAN}"
# ExampleGen's Examples artifact: JSON list of the spans it read (components/example_gen.py).
WINDOW_PROPERTY = "window_spans"
# The Examples split holding the train images of the window's earlier spans (empty for K = 1).
HISTORY = "history"


class SpanError(BadInput):
    """A data root, span number or window that cannot be read; the message says what to do."""


def _span_number(name: str) -> int | None:
    """N for a folder named span-N (N without leading zeros), else None."""
    match = _SPAN_DIR.match(name.rstrip("/"))
    if match and str(int(match.group(1))) == match.group(1):
        return int(match.group(1))
    return None


def is_span_name(name: str) -> bool:
    return _span_number(name) is not None


def span_dirs(root: Path) -> dict[int, Path]:
    """The span number -> folder map of every span-N folder under root."""
    if not root.is_dir():
        return {}
    found = {_span_number(child.name): child for child in root.iterdir() if child.is_dir()}
    return {n: found[n] for n in sorted(n for n in found if n is not None)}


def is_span_root(root: Path) -> bool:
    return bool(span_dirs(root))


def span_dir(root: Path, span: int) -> Path:
    return root / f"{PREFIX}{span}"


def next_span(root: Path) -> int:
    """One after the newest span, or 1 for a root with none."""
    spans = span_dirs(root)
    return max(spans) + 1 if spans else 1


def latest_span(root: Path) -> int:
    spans = span_dirs(root)
    if not spans:
        raise SpanError(f"{root} holds no {PREFIX}N folders")
    return max(spans)


def dataset_folder(data_root: str, span: int | None) -> str:
    """Where the dataset.json of a run's examples is: data_root's own, else its span's.

    Strings and TFX's fileio, so the data gate finds it on object storage too.
    """
    from tfx.dsl.io import fileio

    if span is None or fileio.exists(DatasetManifest.path_in(data_root)):
        return data_root
    folder = os.path.join(data_root, f"{PREFIX}{span}")
    return folder if fileio.exists(DatasetManifest.path_in(folder)) else data_root


def split_pattern(split: str, spans: bool) -> str:
    """ExampleGen's pattern for a split: under the latest span when the root has spans.

    `history` is read from the train folders of the window's earlier spans (resolve_window).
    """
    if split == HISTORY:
        split = "train"
    return f"{PREFIX}{SPAN_SPEC}/{split}/*" if spans else f"{split}/*"


def span_numbers(root: str) -> list[int]:
    """The span numbers under root, ascending; through TFX's fileio, so gs:// roots work."""
    from tfx.dsl.io import fileio

    if not fileio.isdir(root):
        return []
    numbers = (_span_number(str(name)) for name in fileio.listdir(root))
    return sorted(n for n in numbers if n is not None)


def choose_window(numbers: list[int], span: int, size: int) -> list[int]:
    """The `size` newest spans up to and including `span` (fewer when fewer exist)."""
    if size < 1:
        raise SpanError(f"a span window holds at least 1 span, got {size}")
    if span not in numbers:
        raise SpanError(f"span {span} does not exist; the data root holds spans {numbers}")
    return [n for n in numbers if n <= span][-size:]


def local_window(root: Path, span: int, size: int) -> list[int]:
    """The window a run on a local root reads: `size` spans up to `span` (0: the newest)."""
    return choose_window(list(span_dirs(root)), span or latest_span(root), size)


def mixed_class_maps(root: str, window: list[int]) -> str | None:
    """Why a window's spans cannot be trained on together, or None: labels are ids into each
    span's class map, so every span needs the newest span's.

    The data gate stops a run on it (components/data_gate.py); `--accept-new-classes` does not
    help, since the earlier spans' labels would mean other classes.
    """
    names = {}
    for number in window:
        manifest = DatasetManifest.read(os.path.join(root, f"{PREFIX}{number}"))
        if manifest is not None:
            names[number] = list(manifest.class_names)
    newest = names.get(window[-1])
    differ = [n for n, classes in names.items() if newest is not None and classes != newest]
    if not differ:
        return None
    return (f"spans {differ} of the window {window} have another class map than span "
            f"{window[-1]} ({names[differ[0]]} vs {newest}), so their label ids would mean "
            f"other classes. Train on a window that starts after the change (at most "
            f"{window[-1] - max(differ)} span(s)), or re-ingest those spans with the new classes")


def resolve_window(
    root: str, patterns: dict[str, str], span: int | None, size: int
) -> tuple[list[int], dict[str, list[str]]]:
    """The spans a run reads and each split's file patterns, relative to root.

    `patterns` are ExampleGen's split patterns (`span-{SPAN}/...` for a root of spans). span:
    the span to train on; None or 0 is the newest. Roots without spans read the patterns as
    they are.
    """
    if not any(pattern.startswith(PREFIX) for pattern in patterns.values()):
        if size != 1:
            raise SpanError(f"{root} holds no {PREFIX}N folders, so there is no window of "
                            f"{size} spans to read; ingest with ", Setting("ingest.span"),
                            ", or set ", Setting("span_window", "1"))
        return [], {split: [pattern] for split, pattern in patterns.items()}
    numbers = span_numbers(root)
    if not numbers:
        raise SpanError(f"{root} holds no {PREFIX}N folders, but the pipeline reads spans "
                        "(compiled for a data root of spans). Ingest with ",
                        Setting("ingest.span"), ", or point ", Setting("data_root"),
                        " at one.")
    window = choose_window(numbers, span or numbers[-1], size)
    resolved = {}
    for split, pattern in patterns.items():
        if split == HISTORY:
            resolved[split] = [split_pattern(HISTORY, True).replace(SPAN_SPEC, str(n))
                               for n in window[:-1]]
        else:
            resolved[split] = [re.sub(rf"^{PREFIX}[^/]+/", f"{PREFIX}{window[-1]}/", pattern)]
    return window, resolved


def parse_span(text: str) -> int | str:
    """A span as ingest takes it: a positive number, or `auto` (the next one).

    The message names no setting: argparse prefixes the flag, another caller its own name.
    """
    if text == "auto":
        return text
    try:
        span = int(text)
    except ValueError:
        raise SpanError(f"a span is a number or 'auto', got {text!r}") from None
    if span < 0:
        raise SpanError(f"a span is >= 0, got {span}")
    return span


def ingest_span(
    src: Path, root: Path, span: int | str, overwrite_span: bool = False, **options
):
    """Ingests src as span `span` of root (`auto`: the next number); returns (span, info).

    A span that exists is refused unless overwrite_span (replaced atomically, as ingest
    replaces a folder). Its images must have the previous span's channels, and its size when
    both spans have one fixed size, unless `resize` says what the model gets (spans whose sizes
    vary are resized by Transform like any image of another size). The root's lock is held
    from choosing the number to publishing the span, so concurrent ingests never take one
    number (ingest/output.py).
    """
    from ingest import dataset, output

    root = Path(root).resolve()
    output.check_not_file(root)  # before the lock: a refusal leaves nothing behind
    with output.locked(root):
        output.recover_spans(root)
        number = next_span(root) if span == "auto" else int(span)
        target = span_dir(root, number)
        if target.exists() and not overwrite_span:
            raise dataset.IngestError(
                f"span {number} already exists ({target}); use ",
                Setting("ingest.overwrite_span"), " to replace it, or ",
                Setting("ingest.span", "auto"), f" for the next number ({next_span(root)})",
            )
        earlier = [n for n in span_dirs(root) if n < number]
        expected = None
        expected_sizes_vary = False
        if earlier and not options.get("resize"):
            previous = span_dir(root, max(earlier))
            previous_info = dataset.load_dataset_info(previous)
            expected = (f"span {max(earlier)} ({previous})", previous_info.image_shape)
            expected_sizes_vary = previous_info.sizes_vary
        info = dataset.ingest(src, target, overwrite=overwrite_span, expected_shape=expected,
                              expected_sizes_vary=expected_sizes_vary, lock_held=True,
                              **options)
    return number, info
