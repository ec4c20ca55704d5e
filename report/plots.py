"""PNG charts for a run's report: per-class accuracy, confusion, class balance, image sizes,
images.

Every chart stays readable whatever the data: class names are cut short with an ellipsis (the
tables beside them show them whole), and past a few dozen classes a chart shows the classes or
pairs that matter (the worst and best, the most confused) instead of one bar or cell each.
Titles name the split they show, as the caller passes it; each PNG carries its title in its
metadata ("Title"), so what a chart says can be checked without reading pixels.

The training curves are drawn by the Trainer itself (trainer/plots.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from ingest.manifest import ImageSizes
from report.records import ConfusedPair
from trainer.plots import pyplot

# A class name in a chart: longer ones end in an ellipsis.
NAME_CHARS = 28
# Bars of a per-class chart; past it, the lowest and highest accuracies, half each.
MAX_BARS = 40
# Classes of a confusion matrix drawn cell by cell; past it, the most confused pairs.
MAX_MATRIX_CLASSES = 25
# Most confused pairs drawn when the matrix is not.
MAX_PAIRS = 20
# Classes of the class-balance chart drawn as bar groups; past it, sorted counts per split.
MAX_BALANCE_CLASSES = 40


@dataclasses.dataclass(frozen=True)
class Charts:
    """The PNGs drawn for one report, by what they show; None: not drawn for this run."""

    class_balance: Path | None = None
    image_sizes: Path | None = None
    training_curves: Path | None = None
    per_class_accuracy: Path | None = None
    confusion_matrix: Path | None = None
    confused_pairs: Path | None = None
    misclassified: Path | None = None

    def files(self) -> dict[str, str]:
        """What report.json's `files` lists: each drawn chart's path, by its name."""
        return {field.name: str(path) for field in dataclasses.fields(self)
                if (path := getattr(self, field.name)) is not None}


def short(name: str, limit: int = NAME_CHARS) -> str:
    """The name, or its first characters and an ellipsis: one line in a chart."""
    name = " ".join(str(name).split())  # no line breaks or runs of blanks in a tick label
    return name if len(name) <= limit else name[:limit - 1].rstrip() + "…"


def _save(fig, title: str, output: Path) -> Path:
    plt = pyplot()
    fig.tight_layout()
    fig.savefig(output, dpi=100, metadata={"Title": title})
    plt.close(fig)
    return output


def _split_text(split: str | None) -> str:
    return f"the {split} split" if split else "the evaluated split"


def per_class_accuracy_figure(accuracy: Mapping[str, float], split: str | None):
    """Horizontal bars, one per class; past MAX_BARS classes the lowest and highest half each."""
    plt = pyplot()
    ranked = sorted(accuracy.items(), key=lambda kv: (kv[1], kv[0]))
    title = f"Accuracy per class on {_split_text(split)}"
    if len(ranked) > MAX_BARS:
        half = MAX_BARS // 2
        shown = ranked[:half] + ranked[-half:]
        title += f": the {half} lowest and {half} highest of {len(ranked):,} classes"
    else:
        shown = list(accuracy.items())
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.26 * len(shown)))
    positions = list(range(len(shown)))[::-1]  # the first listed on top
    ax.barh(positions, [v for _, v in shown], color="#4878a8")
    ax.set_yticks(positions, [short(name) for name, _ in shown], fontsize=8)
    for y, (_, value) in zip(positions, shown, strict=True):
        ax.text(min(value, 1.0) + 0.01, y, f"{value:.2f}", va="center", fontsize=7)
    if len(ranked) > MAX_BARS:
        ax.axhline(positions[MAX_BARS // 2] + 0.5, color="#999", linestyle="--", linewidth=0.8)
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("accuracy")
    ax.set_title(title, fontsize=10)
    return fig, title


def per_class_accuracy(accuracy: Mapping[str, float], split: str | None, output: Path) -> Path:
    return _save(*per_class_accuracy_figure(accuracy, split), output)


def confusion_matrix_figure(matrix: Sequence[Sequence[int]], names: Sequence[str],
                            split: str | None):
    """Counts[actual][predicted], cell by cell: for up to MAX_MATRIX_CLASSES classes."""
    plt = pyplot()
    size = max(4, 0.45 * len(names) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(matrix, cmap="Blues")
    labels = [short(n, 20) for n in names]
    ax.set_xticks(range(len(names)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    title = f"Confusion matrix on {_split_text(split)}"
    ax.set_title(title)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                    color="white" if value > peak / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return fig, title


def confusion_matrix(matrix: Sequence[Sequence[int]], names: Sequence[str], split: str | None,
                     output: Path) -> Path:
    return _save(*confusion_matrix_figure(matrix, names, split), output)


def confused_pairs_figure(pairs: Sequence[ConfusedPair], num_classes: int,
                          split: str | None):
    """The most confused (actual, predicted) pairs as bars: for more classes than a matrix
    can show.
    """
    plt = pyplot()
    shown = list(pairs)[:MAX_PAIRS]
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.28 * max(1, len(shown))))
    positions = list(range(len(shown)))[::-1]
    ax.barh(positions, [p.count for p in shown], color="#b5533c")
    ax.set_yticks(positions, [f"{short(p.actual, 18)} → {short(p.predicted, 18)}"
                              for p in shown], fontsize=8)
    ax.set_xlabel("images (actual → predicted)")
    title = (f"Most confused class pairs on {_split_text(split)} ({len(shown)} largest, "
             f"{num_classes:,} classes)")
    ax.set_title(title, fontsize=10)
    return fig, title


def confused_pairs(pairs: Sequence[ConfusedPair], num_classes: int, split: str | None,
                   output: Path) -> Path:
    return _save(*confused_pairs_figure(pairs, num_classes, split), output)


def class_balance_figure(splits: Mapping[str, Mapping[str, int]]):
    """Examples per class and split: bar groups, or each split's counts sorted (many classes)."""
    import numpy as np

    plt = pyplot()
    names = list(next(iter(splits.values())))
    if len(names) > MAX_BALANCE_CLASSES:
        fig, ax = plt.subplots(figsize=(8, 4))
        for split, counts in splits.items():
            values = sorted((counts.get(n, 0) for n in names), reverse=True)
            ax.plot(range(1, len(values) + 1), values, label=f"{split} (min {values[-1]:,}, "
                    f"max {values[0]:,})")
        ax.set_xlabel("classes, most examples first")
        title = f"Examples per class, {len(names):,} classes sorted by count"
    else:
        fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 4))
        width = 0.8 / max(1, len(splits))
        positions = np.arange(len(names))
        for i, (split, counts) in enumerate(splits.items()):
            ax.bar(positions + i * width, [counts.get(n, 0) for n in names], width, label=split)
        ax.set_xticks(positions + width * (len(splits) - 1) / 2, [short(n) for n in names],
                      rotation=45, ha="right")
        title = "Examples per class"
    ax.set_ylabel("examples")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return fig, title


def class_balance(splits: Mapping[str, Mapping[str, int]], output: Path) -> Path:
    return _save(*class_balance_figure(splits), output)


def _bin_label(low: int, high: int | None) -> str:
    return f"≥{low}" if high is None else f"{low}–{high - 1}"


def image_sizes_figure(sizes: ImageSizes):
    """Two histograms, heights and widths, from dataset.json's `image_sizes` (ingest's bins)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, dimension in zip(axes, ("height", "width"), strict=True):
        bins = sizes.histogram.get(dimension, ())
        ax.bar(range(len(bins)), [n for _, _, n in bins], color="#4878a8")
        ax.set_xticks(range(len(bins)), [_bin_label(lo, hi) for lo, hi, _ in bins],
                      rotation=30, ha="right", fontsize=8)
        low, median, high = sizes.stats(dimension)
        ax.set_title(f"{dimension} (px): min {low}, median {median}, max {high}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("images")
    title = (f"Image sizes in the source: {sizes.count:,} images, "
             f"{sizes.distinct_sizes:,} distinct sizes")
    fig.suptitle(title, fontsize=10)
    return fig, title


def image_sizes(sizes: ImageSizes, output: Path) -> Path:
    return _save(*image_sizes_figure(sizes), output)


def image_grid(
    images: Sequence[bytes], titles: Sequence[str], output: Path, title: str, columns: int = 6
) -> Path:
    """Encoded images (any format Pillow reads) in a grid, each with a caption."""
    import io

    from PIL import Image

    plt = pyplot()
    columns = max(1, min(columns, len(images)))
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, encoded, caption in zip(axes.flat, images, titles, strict=False):
        image = Image.open(io.BytesIO(encoded))
        gray = image.mode in ("L", "1", "I", "F")
        ax.imshow(image.convert("L" if gray else "RGB"), cmap="gray" if gray else None,
                  interpolation="nearest")
        ax.set_title(caption, fontsize=8)
    return _save(fig, title, output)
