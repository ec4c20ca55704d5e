"""A run killed mid-training leaves nothing served and a pipeline root the next run can use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import imagegen
from cli import EXIT_OK, main
from conftest import snapshot
from report.summary import summarize_run
from schema.curated import label_classes

pytestmark = pytest.mark.pipeline

REPO = Path(__file__).resolve().parent.parent


def test_run_killed_during_training_then_a_clean_rerun(tmp_path: Path) -> None:
    # Two split folders only (no test/): still runs, evaluating on eval, and says so.
    # No --schema: the curated one admits 10 classes, and its label domain follows the data's 3.
    imagegen.write_folder(tmp_path / "images", {"train": 16, "val": 6})
    root, serving = tmp_path / "root", tmp_path / "serving"
    args = ["run", "--recipe", "classic", "--data", str(tmp_path / "images"), "--root", str(root),
            "--serving-dir", str(serving), "--pipeline-name", "crash", "--model-name", "m",
            "--batch-size", "4", "--min-accuracy", "0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args, "--epochs", "500"],
        cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    seen = []
    try:
        deadline = time.monotonic() + 300
        for line in process.stderr:
            seen.append(line)
            if line.startswith("[trainer] epoch 2/"):
                break
            assert time.monotonic() < deadline, "".join(seen[-20:])
        else:
            raise AssertionError("the run ended before training:\n" + "".join(seen[-30:]))
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(60)
    assert process.returncode == -signal.SIGKILL
    assert snapshot(serving) == {}
    assert any("has no test split" in line for line in seen), "".join(seen[:20])
    (derived,) = (root / "schemas").glob("schema-3-classes-*.pbtxt")  # named by its content
    assert any(f"using {derived}" in line for line in seen), "".join(seen[:20])
    assert label_classes(derived) == 3

    assert main([*args, "--epochs", "2"]) == EXIT_OK
    summary = summarize_run(str(root / "metadata" / "crash.sqlite"), "crash")
    states = {c.name: c.state for c in summary.components}
    assert states["Transform"] == "cached", states  # finished before the kill: reused
    assert states["Trainer"] == "executed"
    assert summary.pushed
    assert summary.evaluation_split == "eval"
    versions = {path.split("/")[0] for path in snapshot(serving / "m")}
    assert versions == {summary.pushed_destination.rsplit("/", 1)[1]}
