"""Real TFX components through LocalDagRunner on tiny generated images (see conftest.RUNS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.gate_report import GateReport
from conftest import MODEL_NAME, PIPELINE_NAME, RUNS, PipelineRuns
from report import REPORT_HTML, REPORT_JSON
from report.summary import Node, RunSummary, format_summary, summarize_run
from schema.records import as_data
from serving.model_dir import EvaluationRecord, model_digest

pytestmark = pytest.mark.pipeline

NODES = {
    "ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "DataGate",
    "Transform", "Trainer", "Evaluator", "Pusher",
}
# Re-executed by an unchanged re-run: the gate and the Evaluator read the served version, which
# changes outside the pipeline, so they are never cached (the Evaluator reuses its old results
# when the served model is the candidate); the Pusher gets the new blessing and finds the model
# already served.
RERUN_EXECUTED = {"DataGate", "Evaluator", "Pusher"}


def _versions(snapshot: dict[str, bytes]) -> set[str]:
    return {path.split("/")[1] for path in snapshot}


def _summary(runs: PipelineRuns, name: str) -> RunSummary:
    return summarize_run(runs.metadata_path, PIPELINE_NAME, runs.run_ids[name])


def _states(summary: RunSummary) -> dict[str, str]:
    return {c.name: c.state for c in summary.components}


def _baseline(runs: PipelineRuns, name: str) -> EvaluationRecord:
    """What the run's Evaluator recorded about the served version it compared with."""
    return EvaluationRecord.read(_summary(runs, name).evaluation_uri)


def test_all_runs_succeed(pipeline_runs: PipelineRuns) -> None:
    assert pipeline_runs.exit_codes == {name: 0 for name in RUNS}
    assert len(set(pipeline_runs.run_ids.values())) == len(RUNS)


def test_first_run_executes_every_component_and_pushes(pipeline_runs: PipelineRuns) -> None:
    first = _summary(pipeline_runs, "first")
    assert {c.name for c in first.components} == NODES
    # The node ids the summary and the report look up; the Tuner runs only with --tune.
    assert set(Node) - {Node.TUNER} <= NODES
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
    baseline = _baseline(pipeline_runs, "second")
    assert baseline.production.path == first.pushed_destination
    assert not baseline.baseline_is_candidate
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
    # The served version is the cached model itself; the Evaluator notices and copies the
    # evaluation that blessed it instead of running TFMA twice on it.
    baseline = _baseline(pipeline_runs, "rerun")
    assert baseline.production.path == first.pushed_destination
    assert baseline.baseline_is_candidate
    assert rerun.model_uri == first.model_uri
    assert rerun.evaluation_uri != first.evaluation_uri
    for copied in Path(rerun.evaluation_uri).iterdir():
        if copied.name == EvaluationRecord.FILE:  # this execution's own record
            continue
        original = Path(first.evaluation_uri) / copied.name
        assert copied.read_bytes() == original.read_bytes()
        assert copied.stat().st_mtime == original.stat().st_mtime  # copied, not recomputed
    assert rerun.accuracy == first.accuracy
    assert rerun.baseline_accuracy is None
    assert rerun.blessed


def test_rerun_compares_with_the_version_served_now_not_a_cached_result(
    pipeline_runs: PipelineRuns,
) -> None:
    """Push, change the served version (a rollback to the first model), re-run: training is
    cached, but the gate and the Evaluator run again against the rolled-back version, and the
    second model, still better, is pushed again on top of it.
    """
    second, rerun = _summary(pipeline_runs, "second"), _summary(pipeline_runs, "after_rollback")
    states = _states(rerun)
    assert {states[n] for n in NODES - RERUN_EXECUTED} == {"cached"}
    assert {states[n] for n in RERUN_EXECUTED} == {"executed"}
    assert rerun.model_uri == second.model_uri
    rolled_back = str(pipeline_runs.model_base / pipeline_runs.rolled_back_to)
    baseline = _baseline(pipeline_runs, "after_rollback")
    assert baseline.production.path == rolled_back
    assert baseline.production.version == int(pipeline_runs.rolled_back_to)
    assert not baseline.baseline_is_candidate
    assert rerun.baseline_accuracy == _summary(pipeline_runs, "first").accuracy
    assert rerun.blessed and rerun.pushed and not rerun.already_served
    assert int(rerun.pushed_destination.rsplit("/", 1)[1]) > int(pipeline_runs.rolled_back_to)
    assert model_digest(rerun.pushed_destination) == model_digest(second.pushed_destination)
    # The drift baseline was the rolled-back version's training statistics.
    gate = _report(pipeline_runs, "after_rollback")["validation"]
    assert gate["drift_baseline"] == f"{rolled_back}/assets.extra/training_statistics"


def test_pushed_versions_carry_the_statistics_of_their_training_data(
    pipeline_runs: PipelineRuns,
) -> None:
    first = _summary(pipeline_runs, "first")
    stored = Path(first.pushed_destination) / "assets.extra" / "training_statistics"
    assert sorted(p.name for p in stored.iterdir()) == [
        "Split-eval", "Split-test", "Split-train", GateReport.FILE]
    for split in stored.glob("Split-*"):
        assert (split / "FeatureStats.pb").stat().st_size > 0
    # The gate's report travels with them: the next gate names what it compares with.
    assert GateReport.read(stored).statistics


def _execution_property(runs: PipelineRuns, name: str, node: str, key: str):
    from report.summary import run_nodes, value

    _, nodes = run_nodes(runs.metadata_path, PIPELINE_NAME, runs.run_ids[name])
    return json.loads(value(nodes[node].execution, key))


@pytest.mark.parametrize("name", ["first", "second"])
def test_early_stopping_and_the_evaluator_see_different_splits(
    pipeline_runs: PipelineRuns, name: str
) -> None:
    """Read back from ML Metadata: the Trainer fits `train` and validates on `eval`; the
    Evaluator scores `test`, which training never saw.
    """
    trainer_train = _execution_property(pipeline_runs, name, "Trainer", "train_args")
    trainer_eval = _execution_property(pipeline_runs, name, "Trainer", "eval_args")
    evaluated = _execution_property(pipeline_runs, name, "Evaluator", "example_splits")
    assert trainer_train["splits"] == ["train"] and trainer_eval["splits"] == ["eval"]
    assert evaluated == ["test"]
    summary = _summary(pipeline_runs, name)
    assert summary.evaluation_split == "test" and summary.eval_examples == 18
    assert summary.trainer_eval_accuracy is not None
    assert json.loads(summary.to_json())["evaluation_split"] == "test"


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


def _report(runs: PipelineRuns, name: str) -> dict:
    return json.loads((runs.report_dir(name) / REPORT_JSON).read_text())


def test_run_writes_a_report_for_every_run(pipeline_runs: PipelineRuns) -> None:
    report_root = pipeline_runs.root / "reports" / PIPELINE_NAME
    assert len(list(report_root.iterdir())) == len(RUNS)
    for name in RUNS:
        report = _report(pipeline_runs, name)
        assert report["run_id"] == pipeline_runs.run_ids[name]
        html = Path(report["files"]["html"])
        assert html.parent.parent == report_root
        assert html.read_text().count("<section id=") == 8
        for key, path in report["files"].items():
            if key != "html":
                assert Path(path).read_bytes().startswith(b"\x89PNG"), key


def test_report_of_the_first_run(pipeline_runs: PipelineRuns) -> None:
    first = _summary(pipeline_runs, "first")
    report = _report(pipeline_runs, "first")
    assert report["class_names"] == ["blue", "green", "red"]
    dataset = report["dataset"]
    assert {s: v["examples"] for s, v in dataset["splits"].items()} == {
        "train": 48, "eval": 21, "test": 18}
    assert dataset["splits"]["test"]["per_class"] == {"blue": 6, "green": 6, "red": 6}
    assert dataset["splits"]["eval"]["from"] == "validation/"
    # TFDV counts image formats from 100 images up (test_data_gate checks them).
    assert dataset["image_shape"] == [8, 8, 3] and dataset["dataset_json_matches_run"]

    validation = report["validation"]
    assert validation["anomalies"] == [] and validation["gate_state"] == "executed"
    assert validation["drift_baseline"] is None  # the first data to pass the gate

    training = report["training"]
    assert training["epochs_run"] == 8 and len(training["history"]["loss"]) == 8
    assert (training["num_train"], training["num_eval"]) == (48, 21)
    assert training["recipe"] == "classic" and training["recipe_reason"] == "chosen with --recipe"
    # 69 images of 8x8x3 fit the default budget: cached, as uint8 (the graph is affine).
    assert training["input"]["mode"] == "memory" and training["input"]["dtype"] == "uint8"
    assert training["input"]["needed_bytes"] == 69 * 8 * 8 * 3
    assert training["model"] == first.model_uri
    assert set(report["files"]) >= {"class_balance", "training_curves", "per_class_accuracy",
                                    "confusion_matrix", "html"}

    evaluation = report["evaluation"]
    assert evaluation["split"] == "test"
    assert evaluation["accuracy"] == pytest.approx(first.accuracy)
    assert evaluation["blessed"] and evaluation["validation_ok"]
    assert evaluation["baseline_model"] is None
    # The default bar (pipeline/blessing.py): 1/3 + 2 standard errors on 18 images.
    assert {(t["kind"], t["value"]) for t in evaluation["thresholds"]} == {
        ("at least", 0.556), ("change vs baseline at least", -0.01)}
    assert evaluation["blessing_rule"]["text"] == (
        "55.6 %: chance 33.3 % (always answering `blue`) plus 2 standard errors on 18 test "
        "images")
    assert evaluation["new_model"]["name"] == MODEL_NAME
    assert evaluation["new_model"]["same_classes"] == []
    matrix = evaluation["confusion_matrix"]
    assert sum(map(sum, matrix)) == evaluation["eval_examples"] == 18
    assert sum(matrix[i][i] for i in range(3)) / 18 == pytest.approx(evaluation["accuracy"])
    assert set(evaluation["per_class_accuracy"]) == {"blue", "green", "red"}

    # The report re-predicts through serving_default: its mistakes match TFMA's accuracy.
    mistakes = report["misclassified"]
    assert mistakes["scanned"] == 18 and mistakes["complete"] and mistakes["split"] == "test"
    assert mistakes["misclassified"] == round(18 * (1 - evaluation["accuracy"]))

    push = report["push"]
    assert push["pushed"] and not push["already_served"]
    assert push["destination"] == first.pushed_destination
    assert push["version"] == first.pushed_destination.rsplit("/", 1)[1]

    # The TFLite model, scored on the same split in TFLite's interpreter, beside the SavedModel.
    tflite = report["tflite"]
    scored = tflite["evaluation"]
    assert tflite["available"] and scored["mode"] == "dynamic"
    assert (scored["split"], scored["examples"]) == ("test", 18)
    assert scored["saved_model_accuracy"] == pytest.approx(evaluation["accuracy"])
    assert [c["name"] for c in scored["per_class"]] == ["blue", "green", "red"]
    assert scored["size_bytes"] > 0 and scored["saved_model_bytes"] > 0
    assert scored["latency_runs"] == 200
    assert 0 < scored["latency_ms_median"] <= scored["latency_ms_p99"]
    assert scored["differs_from_serving"]
    assert tflite["version"] == first.pushed_version
    assert tflite["pushed"] == scored["blessed"] == first.tflite_pushed
    page = (pipeline_runs.report_dir("first") / REPORT_HTML).read_text()
    section = page.split('<section id="tflite">', 1)[1].split("</section>", 1)[0]
    assert section.startswith("<h2>TFLite model</h2>")
    assert f"{scored['size_bytes']:,} bytes" in section
    assert f"{scored['saved_model_bytes']:,} bytes" in section
    assert f"{scored['latency_ms_median']:.2f} ms median" in section and "over 200 runs" in section
    assert "SavedModel accuracy</th><th>TFLite accuracy" in section
    assert (f"pushed with version {first.pushed_version}" if tflite["pushed"]
            else f"version {first.pushed_version} has no TFLite file: ") in section


def test_the_misclassified_search_keeps_only_the_most_confident(
    pipeline_runs: PipelineRuns,
) -> None:
    """Scanning with room for 3 keeps the same 3 a scan that keeps everything puts first."""
    from report.misclassified import find_mistakes

    worse = _summary(pipeline_runs, "worse")
    args = (worse.model_uri, worse.examples_uri, ["blue", "green", "red"], "test")
    everything_summary, everything = find_mistakes(*args, max_shown=100)
    top_summary, top = find_mistakes(*args, max_shown=3)
    assert top_summary.misclassified == everything_summary.misclassified == len(everything)
    assert len(everything) > 3 and top_summary.scanned == 18
    assert [m.index for m in top] == [m.index for m in everything[:3]]
    assert [m.confidence for m in everything] == sorted(
        (m.confidence for m in everything), reverse=True)


def test_report_of_later_runs(pipeline_runs: PipelineRuns) -> None:
    first, second = _summary(pipeline_runs, "first"), _summary(pipeline_runs, "second")
    rerun = _report(pipeline_runs, "rerun")
    assert rerun["evaluation"]["baseline_is_candidate"]
    assert rerun["push"]["already_served"]
    # Same data as the accepted first run: measured, and no drift.
    assert {m["split"] for m in rerun["validation"]["drift"]} == {"train", "eval", "test"}
    assert all(m["distance"] == 0 for m in rerun["validation"]["drift"])

    report = _report(pipeline_runs, "second")
    assert report["evaluation"]["baseline_model"] == first.pushed_destination
    assert report["evaluation"]["baseline_accuracy"] == pytest.approx(first.accuracy)
    assert report["push"]["destination"] == second.pushed_destination
    assert report["evaluation"]["new_model"] is None
    assert (f"; blessed (at least 55.6 %, the bar for 3 classes on 18 images); pushed as version "
            f"{second.pushed_version}, replacing version {first.pushed_version} (") in (
        report["outcome"])
    # Its --cache-budget 5kB holds 26 of the 69 images: streamed, and the run says so.
    assert second.training_input.mode == "stream"
    assert second.training_input.shuffle_buffer == 5000 // (8 * 8 * 3)
    assert "more than the budget of 5 kB (cache_budget 5kB)" in second.training_input.reason
    assert report["training"]["input"] == as_data(second.training_input)
    # --refit: eval trained on too, and said so; the Evaluator still scored test alone.
    assert second.refit and not first.refit and second.evaluation_split == "test"
    assert "refit: trained on train + eval" in second.training_input.reason
    assert report["training"]["train_split"] == "train + eval" and report["training"]["refit"]
    assert report["training"]["num_train"] == 48 + 21 and report["training"]["num_eval"] == 21
    assert "(trained on too (--refit), so not an estimate)" in "\n".join(format_summary(second))

    worse = _report(pipeline_runs, "worse")
    assert worse["evaluation"]["blessed"] is False and worse["evaluation"]["failures"]
    assert worse["evaluation"]["blessing_rule"]["source"] == "--min-accuracy"
    assert " points below the served version " in worse["outcome"]
    assert worse["outcome"].endswith(f"; the served version {second.pushed_version} stays.")
    assert worse["push"]["pushed"] is False
    assert worse["training"]["epochs_run"] == 0
    # An untrained model gets eval images wrong: they are shown, most confident first.
    shown = worse["misclassified"]["shown"]
    assert shown and "misclassified" in worse["files"]
    assert all(m["true"] != m["predicted"] for m in shown)
    assert [m["confidence"] for m in shown] == sorted((m["confidence"] for m in shown),
                                                      reverse=True)


def test_report_command(pipeline_runs: PipelineRuns, tmp_path: Path, capsys) -> None:
    from cli import main

    args = ["report", "--root", str(pipeline_runs.root), "--pipeline-name", PIPELINE_NAME]
    run_id = pipeline_runs.run_ids["second"]
    assert main([*args, "--run", run_id, "--output", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.strip() == f"Report: {tmp_path / 'r' / REPORT_HTML}"
    assert run_id in (tmp_path / "r" / REPORT_HTML).read_text()
    assert main([*args, "--output", str(tmp_path / "latest"), "--json"]) == 0
    latest = pipeline_runs.run_ids["after_rollback"]
    assert json.loads(capsys.readouterr().out)["run_id"] == latest
    assert main([*args, "--run", "no-such-run"]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err


def test_runs_command_lists_every_run_from_mlmd(pipeline_runs: PipelineRuns, capsys) -> None:
    from cli import main

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
    assert table[0].split() == ["run", "spans", "accuracy", "on", "recipe", "blessed", "tflite",
                                "scored", "pushed"]
    # Images the BulkInferrer scored: the runs with --infer-data; "-" for the others.
    rows = dict(zip(RUNS, table[1:], strict=True))
    assert rows["worse"].split()[-2] == str(len(pipeline_runs.unlabelled_images))  # pushed: no
    assert rows["first"].split()[-3] == "-"  # pushed: version N
    assert by_name["second"]["inference"]["rows"] == len(pipeline_runs.unlabelled_images)
    assert by_name["first"]["inference"] is None
    assert by_name["first"]["tflite"]["mode"] == "dynamic"
    assert by_name["first"]["tflite_outcome"] in table[1]
    assert by_name["first"]["tflite_outcome"].startswith("dynamic ")
    # No spans in this data root: "-".
    assert table[1].split()[1] == "-" and table[1].split()[3:5] == ["test", "classic"]
    assert all(r["spans"] is None for r in runs)
    assert by_name["first"]["evaluation_split"] == "test"
    assert "(already served)" in table[2] and table[4].rstrip().endswith("no")
    assert main(["runs", "--root", str(pipeline_runs.root / "nope")]) == 2


def test_lineage_of_a_pushed_version(pipeline_runs: PipelineRuns, capsys) -> None:
    from cli import main

    first, second = _summary(pipeline_runs, "first"), _summary(pipeline_runs, "second")
    version = second.pushed_destination.rsplit("/", 1)[1]
    args = ["lineage", "--model", version, "--root", str(pipeline_runs.root),
            "--pipeline-name", PIPELINE_NAME]
    assert main([*args, "--json"]) == 0
    lineage = json.loads(capsys.readouterr().out)
    assert lineage["model"] == second.model_uri
    assert lineage["trained_by_run"] == pipeline_runs.run_ids["second"]
    assert lineage["training_config"]["optimizer"]["epochs"] == 9
    assert lineage["examples"] == second.examples_uri == first.examples_uri  # cached data
    assert lineage["data_root"].endswith("tfrecords")
    assert lineage["blessed"] and lineage["baseline_model"] == first.pushed_destination
    assert Path(lineage["transform_graph"]).is_dir() and Path(lineage["schema"]).is_dir()
    assert main(args) == 0
    assert f"model              {second.model_uri}" in capsys.readouterr().out
    assert main([*args[:2], "123", *args[3:]]) == 2


def test_every_record_the_runs_wrote_round_trips_through_its_type(
    pipeline_runs: PipelineRuns,
) -> None:
    """dataset.json, gate.json (in the gate's output and in every pushed version),
    history.json, baseline.json, tflite_evaluation.json, tflite.json (in each model and pushed
    version with its TFLite file) and each run's report.json: each file is exactly its type's
    JSON, schema version included, so no key is written that the type does not know or reads
    differently.
    """
    from ingest.manifest import DatasetManifest
    from report import RunReport
    from serving.tflite import TfliteEvaluation, TfliteModelInfo
    from trainer.record import TrainingRecord

    found = {}
    for record_type in (DatasetManifest, GateReport, TrainingRecord, EvaluationRecord,
                        TfliteEvaluation, TfliteModelInfo, RunReport):
        paths = [*pipeline_runs.root.rglob(record_type.FILE),
                 *pipeline_runs.serving_dir.rglob(record_type.FILE)]
        found[record_type.__name__] = len(paths)
        for path in paths:
            record = record_type.read(path.parent)
            assert json.loads(path.read_text()) == record.to_data(), path
            assert record_type.from_json(record.to_json(), str(path)) == record
            assert record.to_data()["schema_version"] == record_type.SCHEMA_VERSION
    assert all(found.values()), found


def test_bulk_inferrer_scores_each_unlabelled_image_once(pipeline_runs: PipelineRuns) -> None:
    """--infer-data: one row per image, with the version this run pushed (second) or, when it
    pushed none (worse), the served one; the file that is not an image is counted as bad.
    """
    from serving.batch_scoring import read_rows

    second, worse = _summary(pipeline_runs, "second"), _summary(pipeline_runs, "worse")
    assert _states(second)["BulkInferrer"] == "executed"
    assert "BulkInferrer" not in _states(_summary(pipeline_runs, "first"))
    expected = {str(p.relative_to(pipeline_runs.unlabelled))
                for p in pipeline_runs.unlabelled_images}
    for summary in (second, worse):
        inference = summary.inference
        assert inference is not None
        assert inference.version == second.pushed_version  # worse pushed none: the served one
        assert inference.data == str(pipeline_runs.unlabelled)
        assert (inference.rows, inference.bad) == (len(expected), 1)
        rows = list(read_rows(inference.predictions))
        assert sorted(row.path for row in rows) == sorted(expected)
        assert {str(row.version) for row in rows} == {str(second.pushed_version)}
        assert inference.text() in "\n".join(format_summary(summary))
    # lineage links the predictions to the version that made them.
    from report.lineage import model_lineage

    lineage = model_lineage(pipeline_runs.metadata_path, str(second.pushed_version))
    assert [i["run"] for i in lineage["inferences"]] == [pipeline_runs.run_ids["second"],
                                                          pipeline_runs.run_ids["worse"]]
    assert all(i["rows"] == len(expected) for i in lineage["inferences"])
    # The run report's push section carries it too (report.json and the page).
    report = _report(pipeline_runs, "worse")["push"]["inference"]
    assert (report["rows"], report["bad"], report["version"]) == (
        len(expected), 1, second.pushed_version)
    html = (pipeline_runs.report_dir("worse") / REPORT_HTML).read_text()
    assert "batch inference" in html and "6 images of" in html
    assert _report(pipeline_runs, "first")["push"]["inference"] is None
