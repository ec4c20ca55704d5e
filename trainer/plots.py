"""The training curves PNG the Trainer writes next to its history (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend: no display needed, in a container or a test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: Mapping[str, Sequence[float]], output: Path) -> Path | None:
    """Loss and accuracy per epoch, train vs eval; None when there was no training."""
    if not history.get("loss"):
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        train = history.get(metric, [])
        ax.plot(range(1, len(train) + 1), train, label="train", marker=".")
        val = history.get(f"val_{metric}", [])
        if val:
            # Validation may run every N epochs: spread its points over the epochs they follow.
            step = max(1, len(train) // len(val))
            ax.plot([step * (i + 1) for i in range(len(val))], val, label="eval", marker="o")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output
