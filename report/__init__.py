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

from ingest.dataset import evaluation_split
from report import plots
from report.facts import collect
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


def _plots(report: dict[str, Any], mistakes: list, out_dir: Path) -> dict[str, Path]:
    pngs: dict[str, Path] = {}
    dataset, training, evaluation = report["dataset"], report["training"], report["evaluation"]
    if dataset.get("available") and dataset["splits"]:
        pngs["class_balance"] = plots.class_balance(
            {s: v["per_class"] for s, v in dataset["splits"].items()},
            out_dir / "class_balance.png",
        )
    if training.get("available"):
        curves = training_curves(training["history"], out_dir / "training_curves.png")
        if curves:
            pngs["training_curves"] = curves
    if evaluation.get("available"):
        if evaluation["per_class_accuracy"]:
            pngs["per_class_accuracy"] = plots.per_class_accuracy(
                evaluation["per_class_accuracy"], out_dir / "per_class_accuracy.png"
            )
        if evaluation["confusion_matrix"]:
            pngs["confusion_matrix"] = plots.confusion_matrix(
                evaluation["confusion_matrix"], report["class_names"],
                out_dir / "confusion_matrix.png",
            )
    if mistakes:
        pngs["misclassified"] = plots.image_grid(
            [m.image for m in mistakes],
            [f"{m.true} / {m.predicted} ({m.confidence:.2f})" for m in mistakes],
            out_dir / "misclassified.png",
        )
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
    if training.get("available") and dataset.get("available"):
        # The split the Evaluator reported on: looking at its mistakes chooses nothing.
        split = report["evaluation"].get("split") or evaluation_split(dataset["splits"])
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
