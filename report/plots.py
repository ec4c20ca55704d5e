"""PNG charts for a run's report: per-class accuracy, confusion matrix, class balance, images.

The training curves are drawn by the Trainer itself (trainer/plots.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from trainer.plots import pyplot


def per_class_accuracy(accuracy: Mapping[str, float], output: Path) -> Path:
    plt = pyplot()
    names = list(accuracy)
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names)), 4))
    ax.bar(names, [accuracy[n] for n in names], color="#4878a8")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("accuracy")
    ax.set_title("Eval accuracy per class")
    ax.tick_params(axis="x", rotation=45)
    for i, name in enumerate(names):
        ax.text(i, accuracy[name] + 0.01, f"{accuracy[name]:.2f}", ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output


def confusion_matrix(matrix: Sequence[Sequence[int]], names: Sequence[str], output: Path) -> Path:
    plt = pyplot()
    size = max(4, 0.55 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("Confusion matrix (eval split)")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                    color="white" if value > peak / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output


def class_balance(splits: Mapping[str, Mapping[str, int]], output: Path) -> Path:
    """Examples per class, one bar group per class and one colour per split."""
    import numpy as np

    plt = pyplot()
    names = list(next(iter(splits.values())))
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 4))
    width = 0.8 / max(1, len(splits))
    positions = np.arange(len(names))
    for i, (split, counts) in enumerate(splits.items()):
        ax.bar(positions + i * width, [counts.get(n, 0) for n in names], width, label=split)
    ax.set_xticks(positions + width * (len(splits) - 1) / 2, names, rotation=45, ha="right")
    ax.set_ylabel("examples")
    ax.set_title("Examples per class")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output


def image_grid(
    images: Sequence[bytes], titles: Sequence[str], output: Path, columns: int = 6
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
    for ax, encoded, title in zip(axes.flat, images, titles, strict=False):
        image = Image.open(io.BytesIO(encoded))
        gray = image.mode in ("L", "1", "I", "F")
        ax.imshow(image.convert("L" if gray else "RGB"), cmap="gray" if gray else None,
                  interpolation="nearest")
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output
