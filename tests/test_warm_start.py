"""`run --warm-start`: the Trainer starts from the served model's weights when they fit.

Real LocalDagRunner runs on one root: a model from scratch is pushed; a warm start with no
training exports exactly the served weights; a warm start with training begins below the
from-scratch loss; a different architecture trains from scratch and says why; an ensemble
(model.members) is warm-started as one model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import imagegen
from cli import main
from pipeline.workspace import Workspace
from report.summary import RunSummary, summarize_run
from schema.curated import write_schema
from trainer.ensemble import MEMBER_SEED_STRIDE
from trainer.record import TrainingRecord, WarmStart

pytestmark = pytest.mark.pipeline


def test_warm_start_from_the_served_model(tmp_path: Path) -> None:
    imagegen.write_folder(tmp_path / "images", {"train": 30, "test": 6})
    write_schema(len(imagegen.CLASS_NAMES), tmp_path / "schema.pbtxt")
    root = tmp_path / "root"
    args = ["run", "--recipe", "classic",
            "--data", str(tmp_path / "images"), "--root", str(root), "--pipeline-name",
            "warm", "--serving-dir", str(tmp_path / "serving"), "--schema",
            str(tmp_path / "schema.pbtxt"), "--batch-size", "8", "--min-accuracy", "0",
            "--max-regression", "1"]
    store = str(Workspace(root, "warm").metadata_path)

    def run(*extra: str) -> tuple[RunSummary, TrainingRecord]:
        assert main([*args, *extra]) == 0
        summary = summarize_run(store, "warm")
        return summary, TrainingRecord.read(summary.tensorboard_dir)

    scratch, scratch_record = run("--epochs", "2")
    assert scratch.pushed and scratch_record.warm_start is None
    served = scratch.pushed_destination

    # No training: the exported model is the served one, so it scores exactly the same.
    same, same_record = run("--epochs", "0", "--warm-start")
    assert same_record.warm_start == WarmStart(used=True, origin=served,
                                               version=int(served.rsplit("/", 1)[1]))
    assert same.accuracy == pytest.approx(same.baseline_accuracy, abs=1e-9)

    # 0.4 of 3 epochs: one, starting where the served model ended.
    warm, warm_record = run("--epochs", "3", "--warm-start")
    assert warm_record.warm_start.used and len(warm_record.history["loss"]) == 1
    assert warm_record.history["loss"][0] < scratch_record.history["loss"][0]

    other, other_record = run("--epochs", "1", "--warm-start", "--set", "base_filters=8")
    assert not other_record.warm_start.used
    assert "architecture differs" in other_record.warm_start.why
    assert len(other_record.history["loss"]) == 1

    # An ensemble of two networks is exported, scored, pushed and warm-started from as one
    # model: with no training, the new one answers exactly as the served one.
    # From the served single network, it trains from scratch and says why.
    pair, pair_record = run("--epochs", "1", "--warm-start", "--set", "members=2", "--set",
                            "base_filters=8")
    assert pair.pushed and pair.members == 2
    assert [member.seed for member in pair_record.members] == [42, 42 + MEMBER_SEED_STRIDE]
    assert not pair_record.warm_start.used
    assert "averages 1 network(s), this model 2" in pair_record.warm_start.why
    again, again_record = run("--epochs", "0", "--warm-start", "--set", "members=2", "--set",
                              "base_filters=8")
    assert again_record.warm_start.used
    assert again.accuracy == pytest.approx(again.baseline_accuracy, abs=1e-9)
