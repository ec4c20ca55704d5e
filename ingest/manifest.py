"""dataset.json, the manifest ingest writes beside the TFRecords: the one type every stage reads.

ingest/dataset.py writes it; the run's config (cli/run_config.py), span checks (ingest/spans.py),
the DataGate's class map, `is_dataset` (ingest/output.py) and the report read it through
`DatasetManifest.read`. No other ingest module is imported here, so every one of them can.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import pydantic

from schema.records import Record

DATASET_INFO = "dataset.json"


@dataclasses.dataclass(frozen=True)
class ImageSizes:
    """How big the stored images are (before any resize): from dataset.json's `image_sizes`.

    Medians are lower medians (the size of an actual image). `short_side_counts` holds
    (short side, count) pairs, ascending: every distinct short side when `short_side_bin` is 1,
    else the short sides rounded down to multiples of `short_side_bin`.
    """

    count: int
    distinct_sizes: int
    height_min: int
    height_median: int
    height_max: int
    width_min: int
    width_median: int
    width_max: int
    short_side_min: int
    short_side_median: int
    short_side_max: int
    short_side_counts: tuple[tuple[int, int], ...] = ()
    short_side_bin: int = 1
    # "height" and "width" -> (low, high or None for the last bin, count): ingest's coarse bins.
    histogram: dict[str, tuple[tuple[int, int | None, int], ...]] = dataclasses.field(
        default_factory=dict)

    def stats(self, dimension: str) -> tuple[int, int, int]:
        """(min, median, max) of "height", "width" or "short_side"."""
        return tuple(getattr(self, f"{dimension}_{key}") for key in ("min", "median", "max"))

    def smaller_than(self, side: int) -> int:
        """The number of images whose short side, min(height, width), is below `side`.

        Exact when short sides were counted one by one (short_side_bin 1) or `side` is a
        multiple of the bin; otherwise an upper bound (a bin straddling `side` counts whole).
        """
        return sum(count for start, count in self.short_side_counts if start < side)

    @classmethod
    def from_json(cls, raw: dict) -> ImageSizes:
        def stat(name: str) -> dict[str, int]:
            return {f"{name}_{key}": int(raw[name][key]) for key in ("min", "median", "max")}

        return cls(
            count=int(raw["count"]),
            distinct_sizes=int(raw.get("distinct_sizes", 0)),
            **stat("height"), **stat("width"), **stat("short_side"),
            short_side_counts=tuple((int(side), int(n))
                                    for side, n in raw.get("short_side_counts", [])),
            short_side_bin=int(raw.get("short_side_bin", 1)),
            histogram={dimension: tuple((int(low), None if high is None else int(high), int(n))
                                        for low, high, n in bins)
                       for dimension, bins in raw.get("histogram", {}).items()},
        )


@dataclasses.dataclass(frozen=True)
class SplitManifest:
    count: int
    per_class: dict[str, int] = dataclasses.field(default_factory=dict)
    # Where the split came from: its folder, or carved from another split.
    origin: Annotated[str | None, pydantic.Field(alias="from")] = None


@dataclasses.dataclass(frozen=True)
class DatasetManifest(Record):
    """Class names, image shape, per-split and per-class counts, and how ingest got there.

    The parts only shown to the user (duplicates, conversions, EXIF rotations, the channel
    choice) are kept as the JSON objects ingest/dataset.py builds: no stage decides on them.
    """

    FILE = DATASET_INFO

    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    splits: dict[str, SplitManifest]
    # True when the images have more than one size and no --resize fixed one: image_shape is
    # then the median height and width, and the run chooses the model's input (image_sizes).
    sizes_vary: bool = False
    image_sizes: dict[str, Any] | None = None  # None: ingested before sizes were summarized
    format: str | None = None
    features: dict[str, str] = dataclasses.field(default_factory=dict)
    image_shapes_seen: dict[str, int] = dataclasses.field(default_factory=dict)
    channels_chosen: dict[str, Any] | None = None
    image_modes: dict[str, int] = dataclasses.field(default_factory=dict)
    converted: dict[str, Any] | None = None
    shape_policy: dict[str, Any] = dataclasses.field(default_factory=dict)
    max_pixels: int | None = None
    max_file_bytes: int | None = None
    symlinks_followed: int = 0
    exif_rotated: dict[str, Any] | None = None
    skipped_files: int = 0
    duplicates: dict[str, Any] | None = None  # None: ingested before they were counted
    source: str | None = None  # the folder the examples' source paths are relative to
    created: str | None = None
    ingest_seconds: float | None = None
    images_per_second: float | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def split_counts(self) -> dict[str, int]:
        return {split: meta.count for split, meta in self.splits.items()}

    @property
    def per_class_counts(self) -> dict[str, dict[str, int]]:
        return {split: meta.per_class for split, meta in self.splits.items()}

    @property
    def sizes(self) -> ImageSizes | None:
        return ImageSizes.from_json(self.image_sizes) if self.image_sizes else None
