"""Real TFX components through LocalDagRunner on tiny generated images (see conftest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2

from conftest import PIPELINE_NAME, PipelineRuns
from pipeline.summary import open_store, summarize_run

NODES = {
    "ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform",
    "Trainer", "latest_blessed_model_resolver", "Evaluator", "Pusher",
}


def _versions(snapshot: dict[str, bytes]) -> set[str]:
    return {path.split("/")[1] for path in snapshot}


def _run_ids(runs: PipelineRuns) -> list[str]:
    store = open_store(runs.metadata_path)
    contexts = sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)
    return [c.name for c in contexts]


def test_all_runs_succeed(pipeline_runs: PipelineRuns) -> None:
    assert pipeline_runs.exit_codes == [0, 0, 0]
    assert len(_run_ids(pipeline_runs)) == 3


def test_first_run_executes_every_component_and_pushes(pipeline_runs: PipelineRuns) -> None:
    first = summarize_run(pipeline_runs.metadata_path, PIPELINE_NAME, _run_ids(pipeline_runs)[0])
    assert {c.name for c in first.components} == NODES
    assert {c.state for c in first.components} == {"executed"}
    assert first.accuracy is not None and first.accuracy >= 0.9
    assert first.baseline_accuracy is None
    assert set(first.per_class_accuracy) == {"0", "1", "2"}
    assert first.blessed and first.pushed
    assert len(_versions(pipeline_runs.snapshots[0])) == 1
    version = first.pushed_destination.rsplit("/", 1)[1]
    assert _versions(pipeline_runs.snapshots[0]) == {version}
    assert f"{version}/saved_model.pb" in {
        p.split("/", 1)[1] for p in pipeline_runs.snapshots[0]
    }


def test_training_curves_and_evaluation_report(pipeline_runs: PipelineRuns) -> None:
    first = summarize_run(pipeline_runs.metadata_path, PIPELINE_NAME, _run_ids(pipeline_runs)[0])
    curves = Path(first.tensorboard_dir) / "training_curves.png"
    assert curves.read_bytes().startswith(b"\x89PNG")
    history = json.loads((Path(first.tensorboard_dir) / "history.json").read_text())
    assert len(history["history"]["loss"]) == 8

    reports = sorted((pipeline_runs.root / "reports" / PIPELINE_NAME).iterdir())
    assert len(reports) == 3
    report = json.loads((reports[0] / "evaluation.json").read_text())
    assert report["class_names"] == ["blue", "green", "red"]
    assert set(report["per_class_accuracy"]) == {"blue", "green", "red"}
    matrix = report["confusion_matrix"]
    assert sum(map(sum, matrix)) == report["eval_examples"] == 18
    assert sum(matrix[i][i] for i in range(3)) / 18 == pytest.approx(report["accuracy"])
    for png in ("per_class_accuracy.png", "confusion_matrix.png"):
        assert (reports[0] / png).read_bytes().startswith(b"\x89PNG")


def test_second_run_uses_cache_and_first_model_as_baseline(pipeline_runs: PipelineRuns) -> None:
    store = open_store(pipeline_runs.metadata_path)
    first_id, second_id, _ = _run_ids(pipeline_runs)
    second = summarize_run(pipeline_runs.metadata_path, PIPELINE_NAME, second_id)
    states = {c.name: c.state for c in second.components}
    assert states["Trainer"] == "cached" and states["Transform"] == "cached"
    assert states["Evaluator"] == "executed"

    first = summarize_run(pipeline_runs.metadata_path, PIPELINE_NAME, first_id)
    run = store.get_context_by_type_and_name("pipeline_run", second_id)
    evaluator = next(
        e for e in store.get_executions_by_context(run.id) if e.type.endswith(".Evaluator")
    )
    # One event per input artifact; its path lists every input key it was bound to (here the
    # cached model is both the candidate and the baseline).
    baseline_ids = [
        ev.artifact_id for ev in store.get_events_by_execution_ids([evaluator.id])
        if ev.type == metadata_store_pb2.Event.INPUT
        and "baseline_model" in [s.key for s in ev.path.steps if s.HasField("key")]
    ]
    assert [a.uri for a in store.get_artifacts_by_id(baseline_ids)] == [first.model_uri]
    assert second.baseline_accuracy is not None
    assert second.blessed and second.pushed
    assert len(_versions(pipeline_runs.snapshots[1])) == 2


def test_worse_candidate_is_not_blessed_and_serving_dir_unchanged(
    pipeline_runs: PipelineRuns,
) -> None:
    third = summarize_run(pipeline_runs.metadata_path, PIPELINE_NAME)
    states = {c.name: c.state for c in third.components}
    assert states["Trainer"] == "executed"
    assert states["Transform"] == "cached"  # training knobs do not invalidate Transform
    assert third.baseline_accuracy is not None and third.accuracy is not None
    assert third.accuracy < third.baseline_accuracy - 0.01
    assert third.blessed is False
    assert third.pushed is False
    assert pipeline_runs.snapshots[2] == pipeline_runs.snapshots[1]
