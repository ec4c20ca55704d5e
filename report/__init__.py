"""The run report: what one pipeline run did, in one HTML file (plus the PNGs and JSON behind it).

report = collect(metadata_path, pipeline_name, run_id)   # facts from ML Metadata
path = write_report(report, out_dir)                     # report.html, report.json, *.png
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from report import plots
from report.facts import collect, split_evaluated
from trainer.plots import training_curves

__all__ = ["collect", "write_report", "REPORT_HTML", "REPORT_JSON"]

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"

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


def _evaluation_plots(evaluation: dict[str, Any], class_names: list[str], split: str | None,
                      out_dir: Path) -> dict[str, Path]:
    pngs: dict[str, Path] = {}
    if evaluation["per_class_accuracy"]:
        pngs["per_class_accuracy"] = plots.per_class_accuracy(
            evaluation["per_class_accuracy"], split, out_dir / "per_class_accuracy.png")
    matrix = evaluation.get("confusion_matrix")
    if matrix and len(matrix) <= plots.MAX_MATRIX_CLASSES:
        pngs["confusion_matrix"] = plots.confusion_matrix(
            matrix, class_names, split, out_dir / "confusion_matrix.png")
    elif evaluation.get("most_confused"):
        pngs["confused_pairs"] = plots.confused_pairs(
            evaluation["most_confused"], evaluation.get("confusion_classes") or len(class_names),
            split, out_dir / "confused_pairs.png")
    return pngs


def _mistake_grid(mistakes: list, split: str | None, out_dir: Path) -> Path:
    """Numbered like the table's rows, which name each image's file."""
    captions = [f"{n}. {plots.short(m.true, 12)} / {plots.short(m.predicted, 12)} "
                f"({m.confidence:.2f})" for n, m in enumerate(mistakes, 1)]
    title = f"Misclassified {split or 'evaluated'} images: true / predicted (confidence)"
    return plots.image_grid([m.image for m in mistakes], captions, out_dir / "misclassified.png",
                            title)


def _plots(report: dict[str, Any], mistakes: list, out_dir: Path) -> dict[str, Path]:
    pngs: dict[str, Path] = {}
    dataset, training, evaluation = report["dataset"], report["training"], report["evaluation"]
    split = report.get("evaluation_split")
    if dataset.get("available") and dataset["splits"]:
        pngs["class_balance"] = plots.class_balance(
            {s: v["per_class"] for s, v in dataset["splits"].items()},
            out_dir / "class_balance.png",
        )
    sizes = dataset.get("image_sizes") if dataset.get("available") else None
    if sizes and sizes.get("distinct_sizes", 0) > 1 and sizes.get("histogram"):
        pngs["image_sizes"] = plots.image_sizes(sizes, out_dir / "image_sizes.png")
    if training.get("available"):
        curves = training_curves(training["history"], out_dir / "training_curves.png")
        if curves:
            pngs["training_curves"] = curves
    if evaluation.get("available"):
        pngs.update(_evaluation_plots(evaluation, report["class_names"], split, out_dir))
    if mistakes:
        pngs["misclassified"] = _mistake_grid(mistakes, split, out_dir)
    return pngs


def write_report(report: dict[str, Any], out_dir: Path, max_eval_images: int = 2000) -> Path:
    """Writes report.html (self-contained), report.json and the PNGs; returns the HTML path.

    Adds the `misclassified` section and the written `files` to `report`.
    """
    from report.html import render
    from report.misclassified import find_mistakes

    out_dir.mkdir(parents=True, exist_ok=True)
    mistakes: list = []
    training, dataset = report["training"], report["dataset"]
    # The split the Evaluator reported on (looking at its mistakes chooses nothing): the one
    # split every evaluation title, caption and heading names.
    split = report.setdefault("evaluation_split", split_evaluated(dataset))
    if training.get("available") and dataset.get("available") and split:
        report["misclassified"], mistakes = find_mistakes(
            training["model"], dataset["examples"], report["class_names"], split,
            max_examples=max_eval_images,
        )
    else:
        report["misclassified"] = {"available": False,
                                   "why": "no trained model or no data in this run"}
    pngs = _plots(report, mistakes, out_dir)
    report["files"] = {key: str(path) for key, path in pngs.items()}
    html_path = out_dir / REPORT_HTML
    report["files"]["html"] = str(html_path)
    _write_atomically(out_dir / REPORT_JSON, json.dumps(report, indent=2) + "\n")
    _write_atomically(html_path, render(report, pngs))
    log.debug("report written to %s", html_path)
    return html_path
