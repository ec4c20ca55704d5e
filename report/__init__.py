"""The run report: what one pipeline run did, in one HTML file (plus the PNGs and JSON behind it).

report = collect(metadata_path, pipeline_name, run_id)   # a RunReport, from ML Metadata
path = write_report(report, out_dir)                     # report.html, report.json, *.png
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from report import plots
from report.facts import collect
from report.records import (
    REPORT_JSON,
    DatasetFacts,
    EvaluationFacts,
    NotRun,
    RunReport,
    TrainingFacts,
)
from trainer.plots import training_curves

__all__ = ["collect", "write_report", "RunReport", "REPORT_HTML", "REPORT_JSON"]

REPORT_HTML = "report.html"

log = logging.getLogger(__name__)


def _write_atomically(path: Path, text: str) -> None:
    """A reader never sees half a report: write beside it, then rename over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _evaluation_plots(evaluation: EvaluationFacts, class_names: Sequence[str],
                      split: str | None, out_dir: Path) -> dict[str, Path]:
    """The evaluation's Charts fields: accuracy per class, and the matrix or the most confused
    pairs.
    """
    charts: dict[str, Path] = {}
    if evaluation.per_class_accuracy:
        charts["per_class_accuracy"] = plots.per_class_accuracy(
            evaluation.per_class_accuracy, split, out_dir / "per_class_accuracy.png")
    matrix = evaluation.confusion_matrix
    if matrix and len(matrix) <= plots.MAX_MATRIX_CLASSES:
        charts["confusion_matrix"] = plots.confusion_matrix(
            matrix, class_names, split, out_dir / "confusion_matrix.png")
    elif evaluation.most_confused:
        charts["confused_pairs"] = plots.confused_pairs(
            evaluation.most_confused, evaluation.confusion_classes or len(class_names),
            split, out_dir / "confused_pairs.png")
    return charts


def _mistake_grid(mistakes: list, split: str | None, out_dir: Path) -> Path:
    """Numbered like the table's rows, which name each image's file."""
    captions = [f"{n}. {plots.short(m.true, 12)} / {plots.short(m.predicted, 12)} "
                f"({m.confidence:.2f})" for n, m in enumerate(mistakes, 1)]
    title = f"Misclassified {split or 'evaluated'} images: true / predicted (confidence)"
    return plots.image_grid([m.image for m in mistakes], captions, out_dir / "misclassified.png",
                            title)


def _plots(report: RunReport, mistakes: list, out_dir: Path) -> plots.Charts:
    charts: dict[str, Path | None] = {}
    dataset, training, evaluation = report.dataset, report.training, report.evaluation
    split = report.evaluation_split
    if isinstance(dataset, DatasetFacts) and dataset.splits:
        charts["class_balance"] = plots.class_balance(
            {s: v.per_class for s, v in dataset.splits.items()}, out_dir / "class_balance.png")
    sizes = dataset.sizes if isinstance(dataset, DatasetFacts) else None
    if sizes and sizes.distinct_sizes > 1 and sizes.histogram:
        charts["image_sizes"] = plots.image_sizes(sizes, out_dir / "image_sizes.png")
    if isinstance(training, TrainingFacts):
        charts["training_curves"] = training_curves(training.history,
                                                    out_dir / "training_curves.png")
    if isinstance(evaluation, EvaluationFacts):
        charts.update(_evaluation_plots(evaluation, report.class_names, split, out_dir))
    if mistakes:
        charts["misclassified"] = _mistake_grid(mistakes, split, out_dir)
    return plots.Charts(**charts)


def write_report(report: RunReport, out_dir: Path, max_eval_images: int = 2000) -> Path:
    """Writes report.html (self-contained), report.json and the PNGs; returns the HTML path.

    report.json is `report` with the `misclassified` section and the written `files` added.
    """
    from report.html import render
    from report.misclassified import find_mistakes

    out_dir.mkdir(parents=True, exist_ok=True)
    mistakes: list = []
    training, dataset = report.training, report.dataset
    # The split the Evaluator reported on (looking at its mistakes chooses nothing): the one
    # split every evaluation title, caption and heading names.
    split = report.evaluation_split
    if isinstance(training, TrainingFacts) and isinstance(dataset, DatasetFacts) and split:
        misclassified, mistakes = find_mistakes(
            training.model, dataset.examples, list(report.class_names), split,
            max_examples=max_eval_images,
        )
    else:
        misclassified = NotRun(why="no trained model or no data in this run")
    charts = _plots(report, mistakes, out_dir)
    html_path = out_dir / REPORT_HTML
    report = dataclasses.replace(report, misclassified=misclassified,
                                 files=charts.files() | {"html": str(html_path)})
    _write_atomically(Path(RunReport.path_in(out_dir)), report.to_json())
    _write_atomically(html_path, render(report, charts))
    log.debug("report written to %s", html_path)
    return html_path
