"""`run --beam direct-multi`: StatisticsGen, Transform and the Evaluator in Beam worker
processes, one per core. TFDV's multi-processing mode once dropped records silently
(data-validation#247), so the statistics' example counts must equal what ingest wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imagegen
from cli import main
from pipeline.workspace import Workspace
from report import REPORT_JSON
from report.summary import summarize_run
from schema.curated import write_schema

pytestmark = pytest.mark.pipeline

COUNTS = {"train": 60, "validation": 12, "test": 15}


def test_direct_multi_counts_every_example_of_every_split(tmp_path: Path) -> None:
    images = tmp_path / "images"
    imagegen.write_folder(images, COUNTS)
    write_schema(len(imagegen.CLASS_NAMES), tmp_path / "schema.pbtxt")
    root = tmp_path / "root"
    code = main(["run", "--recipe", "classic",
                 "--data", str(images), "--root", str(root), "--pipeline-name", "multi",
                 "--serving-dir", str(tmp_path / "serving"), "--schema",
                 str(tmp_path / "schema.pbtxt"), "--epochs", "2", "--batch-size", "16",
                 "--min-accuracy", "0", "--beam", "direct-multi"])
    assert code == 0
    summary = summarize_run(str(Workspace(root, "multi").metadata_path), "multi")
    states = {c.name: c.state for c in summary.components}
    assert states["StatisticsGen"] == states["Transform"] == states["Evaluator"] == "executed"
    report = json.loads((Workspace(root, "multi").report_dir(summary.run_id) / REPORT_JSON)
                        .read_text())
    splits = report["dataset"]["splits"]
    classes = len(imagegen.CLASS_NAMES)
    # eval is the validation/ folder; every image of every split is in the statistics.
    assert {s: v["examples"] for s, v in splits.items()} == {
        "train": COUNTS["train"] * classes, "eval": COUNTS["validation"] * classes,
        "test": COUNTS["test"] * classes}
    assert report["dataset"]["dataset_json_matches_run"]
    assert summary.eval_examples == COUNTS["test"] * classes
