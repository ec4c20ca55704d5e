"""Per-class accuracy and the confusion matrix of a run's Evaluator output, as JSON and PNG."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pipeline import plots
from pipeline.summary import RunSummary


def confusion_matrix(evaluation_uri: str, num_classes: int) -> list[list[int]] | None:
    """Counts[actual][predicted] on the overall slice from TFMA's MultiClassConfusionMatrixPlot."""
    import tensorflow_model_analysis as tfma

    for plots_for_slice in tfma.load_plots(evaluation_uri):
        if plots_for_slice.slice_key.single_slice_keys:
            continue
        for kv in plots_for_slice.plot_keys_and_values:
            if kv.key.model_name == "baseline":
                continue
            matrices = kv.value.multi_class_confusion_matrix_at_thresholds.matrices
            if not matrices:
                continue
            # The default (and only) threshold 0.0 means: predicted class = argmax.
            entries = matrices[0].entries
            matrix = [[0] * num_classes for _ in range(num_classes)]
            for entry in entries:
                if 0 <= entry.actual_class_id < num_classes and (
                    0 <= entry.predicted_class_id < num_classes
                ):
                    matrix[entry.actual_class_id][entry.predicted_class_id] = round(
                        entry.num_weighted_examples
                    )
            return matrix
    return None


def write_evaluation_report(
    summary: RunSummary, class_names: Sequence[str], out_dir: Path
) -> dict[str, str]:
    """Writes evaluation.json, per_class_accuracy.png and confusion_matrix.png; returns paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    per_class = {
        class_names[int(label)]: value for label, value in summary.per_class_accuracy.items()
    }
    matrix = (
        confusion_matrix(summary.evaluation_uri, len(class_names))
        if summary.evaluation_uri else None
    )
    report = {
        "run_id": summary.run_id,
        "accuracy": summary.accuracy,
        "baseline_accuracy": summary.baseline_accuracy,
        "eval_examples": summary.eval_examples,
        "blessed": summary.blessed,
        "pushed_destination": summary.pushed_destination,
        "class_names": list(class_names),
        "per_class_accuracy": per_class,
        "confusion_matrix": matrix,
    }
    path = out_dir / "evaluation.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    written["evaluation_json"] = str(path)
    if per_class:
        written["per_class_png"] = str(
            plots.per_class_accuracy(per_class, out_dir / "per_class_accuracy.png")
        )
    if matrix:
        written["confusion_png"] = str(
            plots.confusion_matrix(matrix, class_names, out_dir / "confusion_matrix.png")
        )
    return written
