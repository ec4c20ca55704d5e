"""Spans: batches of new labelled images, each ingested into its own folder of one data root.

`ingest --span N` writes ROOT/span-N/{train,eval,test}/ and its dataset.json. A run on ROOT reads
the latest span through ImportExampleGen's `{SPAN}` pattern (TFX resolves the newest number and
records it on the Examples artifact), so scheduled runs need no path that changes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PREFIX = "span-"
_SPAN_DIR = re.compile(rf"^{PREFIX}(\d+)$")


def span_dirs(root: Path) -> dict[int, Path]:
    """span number -> folder, for every span-N folder under root (N without leading zeros)."""
    if not root.is_dir():
        return {}
    found = {}
    for child in root.iterdir():
        match = _SPAN_DIR.match(child.name)
        if match and child.is_dir() and str(int(match.group(1))) == match.group(1):
            found[int(match.group(1))] = child
    return dict(sorted(found.items()))


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
        raise ValueError(f"{root} holds no {PREFIX}N folders")
    return max(spans)


def dataset_folder(data_root: str, span: int | None) -> str:
    """Where the dataset.json of a run's examples is: data_root's own, else its span's.

    Strings and TFX's fileio, so the data gate finds it on object storage too.
    """
    from tfx.dsl.io import fileio

    if span is None or fileio.exists(os.path.join(data_root, "dataset.json")):
        return data_root
    folder = os.path.join(data_root, f"{PREFIX}{span}")
    return folder if fileio.exists(os.path.join(folder, "dataset.json")) else data_root


def split_pattern(split: str, spans: bool) -> str:
    """ImportExampleGen's pattern for a split: under the latest span when the root has spans."""
    return f"{PREFIX}{{SPAN}}/{split}/*" if spans else f"{split}/*"


def parse_span(text: str) -> int | str:
    """`--span`: a positive number, or `auto` (the next one)."""
    if text == "auto":
        return text
    try:
        span = int(text)
    except ValueError:
        raise ValueError(f"--span takes a number or 'auto', got {text!r}") from None
    if span < 0:
        raise ValueError(f"--span must be >= 0, got {span}")
    return span


def ingest_span(
    src: Path, root: Path, span: int | str, overwrite_span: bool = False, **options
):
    """Ingests src as span `span` of root (`auto`: the next number); returns (span, info).

    A span that exists is refused unless overwrite_span (replaced atomically, as ingest
    replaces a folder). Its images must have the previous span's shape unless `resize` says
    what the model gets.
    """
    from pipeline import ingest

    root = Path(root).resolve()
    number = next_span(root) if span == "auto" else int(span)
    target = span_dir(root, number)
    if target.exists() and not overwrite_span:
        raise ingest.IngestError(
            f"span {number} already exists ({target}); pass --overwrite-span to replace it, or "
            f"--span auto for the next number ({next_span(root)})"
        )
    earlier = [n for n in span_dirs(root) if n < number]
    expected = None
    if earlier and not options.get("resize"):
        previous = span_dir(root, max(earlier))
        expected = (f"span {max(earlier)} ({previous})",
                    ingest.load_dataset_info(previous).image_shape)
    info = ingest.ingest(src, target, overwrite=overwrite_span, expected_shape=expected,
                         **options)
    return number, info
