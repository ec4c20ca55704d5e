"""Real TFX components through LocalDagRunner on tiny generated images (see conftest.RUNS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2

from conftest import PIPELINE_NAME, RUNS, PipelineRuns
from pipeline.summary import RunSummary, open_store, summarize_run

NODES = {
    "ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
    "validated_statistics_resolver", "DataGate", "Transform", "Trainer",
    "latest_blessed_model_resolver", "Evaluator", "Pusher",
}
# Re-executed by an unchanged re-run: resolvers always run; the gate compares the data with the
# previous run's accepted statistics (a new baseline artifact); the Evaluator reuses the old
# evaluation; the Pusher finds the model already served.
RERUN_EXECUTED = {
    "validated_statistics_resolver", "DataGate", "latest_blessed_model_resolver", "Evaluator",
    "Pusher",
}


def _versions(snapshot: dict[str, bytes]) -> set[str]:
    return {path.split("/")[1] for path in snapshot}


def _summary(runs: PipelineRuns, name: str) -> RunSummary:
    return summarize_run(runs.metadata_path, PIPELINE_NAME, runs.run_ids[name])


def _states(summary: RunSummary) -> dict[str, str]:
    return {c.name: c.state for c in summary.components}


def _evaluator_inputs(runs: PipelineRuns, name: str) -> dict[str, list[str]]:
    """Input key -> artifact URIs of the run's Evaluator execution, read from MLMD events."""
    store = open_store(runs.metadata_path)
    run = store.get_context_by_type_and_name("pipeline_run", runs.run_ids[name])
    evaluator = next(
        e for e in store.get_executions_by_context(run.id)
        if f"{PIPELINE_NAME}.Evaluator" in {c.name for c in store.get_contexts_by_execution(e.id)}
    )
    inputs: dict[str, list[str]] = {}
    for event in store.get_events_by_execution_ids([evaluator.id]):
        if event.type != metadata_store_pb2.Event.INPUT:
            continue
        uri = store.get_artifacts_by_id([event.artifact_id])[0].uri
        # One event per artifact; its path lists every input key it was bound to.
        for step in event.path.steps:
            if step.HasField("key"):
                inputs.setdefault(step.key, []).append(uri)
    return inputs


def test_all_runs_succeed(pipeline_runs: PipelineRuns) -> None:
    assert pipeline_runs.exit_codes == {name: 0 for name in RUNS}
    assert len(set(pipeline_runs.run_ids.values())) == len(RUNS)


def test_first_run_executes_every_component_and_pushes(pipeline_runs: PipelineRuns) -> None:
    first = _summary(pipeline_runs, "first")
    assert {c.name for c in first.components} == NODES
    assert set(_states(first).values()) == {"executed"}
    assert first.accuracy is not None and first.accuracy >= 0.9
    assert first.baseline_accuracy is None
    assert set(first.per_class_accuracy) == {"0", "1", "2"}
    assert first.blessed and first.pushed
    version = first.pushed_destination.rsplit("/", 1)[1]
    assert _versions(pipeline_runs.snapshots["first"]) == {version}
    assert f"{version}/saved_model.pb" in {
        p.split("/", 1)[1] for p in pipeline_runs.snapshots["first"]
    }


def test_second_run_uses_the_first_model_as_baseline_and_pushes(
    pipeline_runs: PipelineRuns,
) -> None:
    first, second = _summary(pipeline_runs, "first"), _summary(pipeline_runs, "second")
    states = _states(second)
    assert states["Trainer"] == "executed"
    assert states["Transform"] == "cached"  # training knobs do not invalidate Transform
    assert _evaluator_inputs(pipeline_runs, "second")["baseline_model"] == [first.model_uri]
    assert second.model_uri != first.model_uri
    assert second.baseline_accuracy is not None
    assert second.blessed and second.pushed
    new = _versions(pipeline_runs.snapshots["second"]) - _versions(pipeline_runs.snapshots["rerun"])
    assert new == {second.pushed_destination.rsplit("/", 1)[1]}


def test_unchanged_rerun_is_cached_and_reuses_the_evaluation(pipeline_runs: PipelineRuns) -> None:
    first, rerun = _summary(pipeline_runs, "first"), _summary(pipeline_runs, "rerun")
    states = _states(rerun)
    assert {states[n] for n in NODES - RERUN_EXECUTED} == {"cached"}
    # Same model: the Pusher creates no new version.
    assert rerun.pushed and rerun.already_served
    assert rerun.pushed_destination == first.pushed_destination
    assert pipeline_runs.snapshots["rerun"] == pipeline_runs.snapshots["first"]
    # The resolver hands the cached model back as its own baseline; the Evaluator notices and
    # copies the evaluation that blessed it instead of running TFMA twice on it.
    assert _evaluator_inputs(pipeline_runs, "rerun")["baseline_model"] == [first.model_uri]
    assert rerun.model_uri == first.model_uri
    assert rerun.evaluation_uri != first.evaluation_uri
    for copied in Path(rerun.evaluation_uri).iterdir():
        original = Path(first.evaluation_uri) / copied.name
        assert copied.read_bytes() == original.read_bytes()
        assert copied.stat().st_mtime == original.stat().st_mtime  # copied, not recomputed
    assert rerun.accuracy == first.accuracy
    assert rerun.baseline_accuracy is None
    assert rerun.blessed


def test_worse_candidate_is_not_blessed_and_serving_dir_unchanged(
    pipeline_runs: PipelineRuns,
) -> None:
    worse = _summary(pipeline_runs, "worse")
    assert _states(worse)["Trainer"] == "executed"
    assert worse.baseline_accuracy is not None and worse.accuracy is not None
    assert worse.accuracy < worse.baseline_accuracy - 0.01
    assert worse.blessed is False
    assert worse.pushed is False
    assert pipeline_runs.snapshots["worse"] == pipeline_runs.snapshots["second"]


def test_training_curves_and_evaluation_report(pipeline_runs: PipelineRuns) -> None:
    first = _summary(pipeline_runs, "first")
    curves = Path(first.tensorboard_dir) / "training_curves.png"
    assert curves.read_bytes().startswith(b"\x89PNG")
    history = json.loads((Path(first.tensorboard_dir) / "history.json").read_text())
    assert len(history["history"]["loss"]) == 8

    report_root = pipeline_runs.root / "reports" / PIPELINE_NAME
    assert len(list(report_root.iterdir())) == len(RUNS)
    report_dir = report_root / first.run_id.replace(":", "")
    report = json.loads((report_dir / "evaluation.json").read_text())
    assert report["class_names"] == ["blue", "green", "red"]
    assert set(report["per_class_accuracy"]) == {"blue", "green", "red"}
    matrix = report["confusion_matrix"]
    assert sum(map(sum, matrix)) == report["eval_examples"] == 18
    assert sum(matrix[i][i] for i in range(3)) / 18 == pytest.approx(report["accuracy"])
    for png in ("per_class_accuracy.png", "confusion_matrix.png"):
        assert (report_dir / png).read_bytes().startswith(b"\x89PNG")


def test_runs_command_lists_every_run_from_mlmd(pipeline_runs: PipelineRuns, capsys) -> None:
    from pipeline.cli import main

    args = ["runs", "--root", str(pipeline_runs.root), "--pipeline-name", PIPELINE_NAME]
    assert main([*args, "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in runs] == [pipeline_runs.run_ids[name] for name in RUNS]
    by_name = dict(zip(RUNS, runs, strict=True))
    assert by_name["first"]["blessed"] and by_name["first"]["pushed"]
    assert by_name["rerun"]["already_served"]
    assert by_name["worse"]["blessed"] is False and by_name["worse"]["pushed"] is False
    assert all(r["examples_uri"] for r in runs)
    assert main(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["run", "accuracy", "blessed", "pushed"]
    assert "(already served)" in table[2] and table[4].rstrip().endswith("no")
    assert main(["runs", "--root", str(pipeline_runs.root / "nope")]) == 2


def test_lineage_of_a_pushed_version(pipeline_runs: PipelineRuns, capsys) -> None:
    from pipeline.cli import main

    first, second = _summary(pipeline_runs, "first"), _summary(pipeline_runs, "second")
    version = second.pushed_destination.rsplit("/", 1)[1]
    args = ["lineage", "--model", version, "--root", str(pipeline_runs.root),
            "--pipeline-name", PIPELINE_NAME]
    assert main([*args, "--json"]) == 0
    lineage = json.loads(capsys.readouterr().out)
    assert lineage["model"] == second.model_uri
    assert lineage["trained_by_run"] == pipeline_runs.run_ids["second"]
    assert lineage["training_config"]["epochs"] == 9
    assert lineage["examples"] == second.examples_uri == first.examples_uri  # cached data
    assert lineage["data_root"].endswith("tfrecords")
    assert lineage["blessed"] and lineage["baseline_model"] == first.model_uri
    assert Path(lineage["transform_graph"]).is_dir() and Path(lineage["schema"]).is_dir()
    assert main(args) == 0
    assert f"model              {second.model_uri}" in capsys.readouterr().out
    assert main([*args[:2], "123", *args[3:]]) == 2
