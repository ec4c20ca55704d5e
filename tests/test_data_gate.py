"""DataGate through the real pipeline: bad TFRecords and drifted labels stop the run before
Transform, with the anomaly spelled out, and nothing is trained or pushed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

import imagegen
from cli import EXIT_DATA_REJECTED, EXIT_OK
from conftest import int_properties, run_artifact, snapshot

PIPELINE = "gate-pipeline"
# 40 images per class: TFDV computes image-format statistics only from 100 values up.
PER_CLASS = {"train": 40, "test": 10}
# The new name of the "red" class folder in the class-map runs.
RENAMED = "rouge café, 日本 (№ 1)"


def _example(image: list[bytes] | None = None, label=None) -> bytes:
    feature = {}
    if image is not None:
        feature["image"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=image))
    if isinstance(label, bytes):
        feature["label"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[label]))
    elif label is not None:
        feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_records(path: Path, records: list[bytes]) -> None:
    """A gzip TFRecord file, written with TensorFlow's own writer."""
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for record in records:
            writer.write(record)


def _good_image() -> bytes:
    import numpy as np

    return imagegen.image_bytes("red", np.random.default_rng(7))


# name -> (extra train records, expected feature, expected anomaly type)
BAD_RECORDS = {
    "missing_label": ([_example([_good_image()], None)], "label",
                      "FEATURE_TYPE_LOW_FRACTION_PRESENT"),
    "label_out_of_range": ([_example([_good_image()], 7)], "label", "INT_TYPE_BIG_INT"),
    "two_images": ([_example([_good_image(), _good_image()], 0)], "image",
                   "INVALID_FEATURE_SHAPE"),
    "not_an_image": ([_example([b"this is not an image"], 0)], "image",
                     "LOW_SUPPORTED_IMAGE_FRACTION"),
}


@dataclasses.dataclass
class GateRun:
    exit_code: int
    log: str
    serving_before: dict[str, bytes]
    serving_after: dict[str, bytes]
    executed: set[str]
    # report.json that `run` wrote for this run, None if it wrote none.
    report: dict | None
    # The gate's ValidatedStatistics in ML Metadata: its folder and integer custom properties
    # (None: the gate accepted nothing in this run).
    gate_output: str | None
    gate_properties: dict[str, int] | None


@dataclasses.dataclass
class GateRuns:
    root: Path
    serving_dir: Path
    runs: dict[str, GateRun]


def _rewrite_train(data: Path, change) -> None:
    """Replaces the train shards with one shard of change(example) (None drops the example)."""
    shards = sorted(str(p) for p in (data / "train").glob("*.gz"))
    records = []
    for record in tf.data.TFRecordDataset(shards, "GZIP").as_numpy_iterator():
        changed = change(tf.train.Example.FromString(record))
        if changed is not None:
            records.append(changed)
    for shard in shards:
        Path(shard).unlink()
    _write_records(data / "train" / "data-00000-of-00001.tfrecord.gz", records)


@pytest.fixture(scope="module")
def gate_runs(tmp_path_factory: pytest.TempPathFactory) -> GateRuns:
    from cli import main
    from pipeline.workspace import Workspace
    from report import REPORT_JSON
    from report.summary import summarize_run
    from schema.curated import write_schema

    base = tmp_path_factory.mktemp("gate")
    imagegen.write_folder(base / "images", PER_CLASS)
    good = base / "good"
    assert main(["ingest", str(base / "images"), str(good)]) == EXIT_OK
    schema = base / "schema.pbtxt"
    write_schema(len(imagegen.CLASS_NAMES), schema)
    result = GateRuns(root=base / "root", serving_dir=base / "serving", runs={})
    common = ["run", "--recipe", "classic",
              "--root", str(result.root), "--serving-dir", str(result.serving_dir),
              "--pipeline-name", PIPELINE, "--model-name", "gate", "--schema", str(schema),
              "--epochs", "1", "--batch-size", "8", "--min-accuracy", "0"]

    def run(name: str, data: Path, *extra: str) -> None:
        before = snapshot(result.serving_dir)
        code = main([*common, "--data", str(data), *extra])
        log = max((result.root / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime)
        metadata = result.root / "metadata" / f"{PIPELINE}.sqlite"
        # Components with an execution (cached or run) in this, the latest, run.
        summary = summarize_run(str(metadata), PIPELINE)
        executed = {c.name for c in summary.components}
        report = Workspace(result.root, PIPELINE).report_dir(summary.run_id) / REPORT_JSON
        gate = run_artifact(metadata, summary.run_id, "tfx_image.ValidatedStatistics")
        result.runs[name] = GateRun(
            code, log.read_text(), before, snapshot(result.serving_dir), executed,
            json.loads(report.read_text()) if report.is_file() else None,
            gate.uri if gate else None, int_properties(gate) if gate else None,
        )

    run("good", good)
    for name, (records, _, _) in BAD_RECORDS.items():
        data = base / name
        shutil.copytree(good, data)
        _write_records(data / "train" / "bad-00000-of-00001.tfrecord.gz", records)
        run(name, data)
    # Someone else's TFRecords with class names as labels: the wrong type in every record...
    string_labels = base / "string_labels"
    shutil.copytree(good, string_labels)
    _rewrite_train(string_labels, lambda example: _example(
        list(example.features.feature["image"].bytes_list.value),
        imagegen.CLASS_NAMES[example.features.feature["label"].int64_list.value[0]].encode(),
    ))
    run("string_labels", string_labels)
    # ...and in one record only, which TFX's statistics cannot even merge.
    mixed = base / "mixed_label_types"
    shutil.copytree(good, mixed)
    _write_records(mixed / "train" / "bad-00000-of-00001.tfrecord.gz",
                   [_example([_good_image()], b"red")])
    run("mixed_label_types", mixed)
    # A PNG cut short: the format signature passes the schema, the decode in Transform fails.
    truncated = base / "truncated_image"
    shutil.copytree(good, truncated)
    _write_records(truncated / "train" / "bad-00000-of-00001.tfrecord.gz",
                   [_example([_good_image()[:40]], 0)])
    run("truncated_image", truncated)
    # Same images, but train keeps only a few "blue" (label 0) images: label drift.
    drifted = base / "drifted"
    shutil.copytree(good, drifted)
    blue = 0

    def drop_most_blue(example: tf.train.Example) -> bytes | None:
        nonlocal blue
        label = example.features.feature["label"].int64_list.value[0]
        blue += label == 0
        return example.SerializeToString() if label != 0 or blue <= 5 else None

    _rewrite_train(drifted, drop_most_blue)
    run("drifted", drifted)
    run("drifted_again", drifted)
    run("drift_accepted", drifted, "--max-label-drift", "0.5")
    # A class folder renamed, to a name with non-ASCII letters, spaces and punctuation: the
    # class map differs from the served model's. Stopped, then accepted knowingly.
    renamed_images = base / "renamed_images"
    shutil.copytree(base / "images", renamed_images)
    for split in PER_CLASS:
        (renamed_images / split / "red").rename(renamed_images / split / RENAMED)
    renamed = base / "renamed"
    assert main(["ingest", str(renamed_images), str(renamed)]) == EXIT_OK
    run("class_renamed", renamed)
    run("class_renamed_accepted", renamed, "--accept-new-classes", "--warmup", "synthetic")
    return result


def test_good_data_passes_the_gate_and_is_pushed(gate_runs: GateRuns) -> None:
    good = gate_runs.runs["good"]
    assert good.exit_code == EXIT_OK
    assert {"DataGate", "Transform", "Trainer", "Pusher"} <= good.executed
    assert good.serving_after


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_records_stop_the_run_before_transform(gate_runs: GateRuns, case: str) -> None:
    _, feature, anomaly = BAD_RECORDS[case]
    run = gate_runs.runs[case]
    assert run.exit_code == EXIT_DATA_REJECTED
    assert f"split 'train', feature '{feature}': {anomaly}" in run.log
    assert "SchemaDiff.pb" in run.log and "statistics:" in run.log
    assert "ExampleValidator" in run.executed
    assert not run.executed & {"Transform", "Trainer", "Evaluator", "Pusher"}
    assert run.serving_after == run.serving_before


def test_string_labels_stop_the_run_before_transform(gate_runs: GateRuns) -> None:
    run = gate_runs.runs["string_labels"]
    assert run.exit_code == EXIT_DATA_REJECTED
    assert "split 'train', feature 'label': UNEXPECTED_DATA_TYPE" in run.log
    assert not run.executed & {"Transform", "Trainer", "Pusher"}
    assert run.serving_after == run.serving_before


def test_a_feature_type_that_changes_between_records_fails_in_statistics_gen(
    gate_runs: GateRuns,
) -> None:
    run = gate_runs.runs["mixed_label_types"]
    assert run.exit_code == 1
    assert "pipeline failed in StatisticsGen" in run.log
    assert "incompatible type" in run.log
    assert not run.executed & {"Transform", "Trainer", "Pusher"}
    assert run.serving_after == run.serving_before


def test_a_truncated_image_fails_in_transform_before_training(gate_runs: GateRuns) -> None:
    run = gate_runs.runs["truncated_image"]
    assert run.exit_code == 1
    assert "pipeline failed in Transform" in run.log
    assert "Trainer" not in run.executed and "Pusher" not in run.executed
    assert run.serving_after == run.serving_before


def test_label_drift_stops_the_run_until_accepted(gate_runs: GateRuns) -> None:
    for name in ("drifted", "drifted_again"):
        run = gate_runs.runs[name]
        assert run.exit_code == EXIT_DATA_REJECTED, name
        assert "feature 'label': COMPARATOR_L_INFTY_HIGH" in run.log
        assert not run.executed & {"Transform", "Trainer", "Pusher"}
        assert run.serving_after == run.serving_before
    accepted = gate_runs.runs["drift_accepted"]
    assert accepted.exit_code == EXIT_OK
    assert "Trainer" in accepted.executed


def test_report_of_rejected_data_names_the_anomalies(gate_runs: GateRuns) -> None:
    good = gate_runs.runs["good"].report
    assert good["validation"]["anomalies"] == [] and good["evaluation"]["available"]
    # 120 training images: enough for TFDV's image format statistics.
    train = good["dataset"]["splits"]["train"]
    # 120 train/ images, half PNG, half JPEG; eval is carved from them.
    assert set(train["image_formats"]) == {"png", "jpeg"}
    assert sum(train["image_formats"].values()) == train["examples"] == 108
    for case, (_, feature, anomaly) in BAD_RECORDS.items():
        report = gate_runs.runs[case].report
        assert report is not None, case
        found = {(a["split"], a["feature"], a["anomaly_type"])
                 for a in report["validation"]["anomalies"]}
        assert ("train", feature, anomaly) in found, case
        assert report["validation"]["gate_state"] == "failed"
        assert report["failed_components"] == ["DataGate"]
        for section in ("training", "evaluation", "push", "misclassified"):
            assert report[section]["available"] is False, (case, section)
        html = Path(report["files"]["html"]).read_text()
        assert "REJECTED the data" in html and anomaly in html
    # Class names as label values: reported as they are, next to the anomaly they cause.
    strings = gate_runs.runs["string_labels"].report
    assert ("train", "label", "UNEXPECTED_DATA_TYPE") in {
        (a["split"], a["feature"], a["anomaly_type"]) for a in strings["validation"]["anomalies"]}
    assert strings["dataset"]["splits"]["train"]["per_class"] == {"blue": 36, "green": 36,
                                                                   "red": 36}


def test_report_of_a_run_that_failed_in_statistics_gen(gate_runs: GateRuns) -> None:
    report = gate_runs.runs["mixed_label_types"].report
    assert report["failed_components"] == ["StatisticsGen"]
    assert report["dataset"] == {"available": False, "state": "failed",
                                 "why": "StatisticsGen failed in this run"}
    assert "failed in StatisticsGen" in Path(report["files"]["html"]).read_text()


def test_report_shows_label_drift_against_the_accepted_data(gate_runs: GateRuns) -> None:
    drifted = gate_runs.runs["drifted"].report["validation"]
    # Measured by the gate that rejected the data, and recorded before it stopped the run.
    assert drifted["gate_state"] == "failed" and "drift_missing" not in drifted
    train = next(m for m in drifted["drift"] if m["split"] == "train")
    assert train["distance"] > train["threshold"] == pytest.approx(0.1)
    assert drifted["drift_baseline"] == train["baseline"]
    # The statistics the served model was trained on, stored with it by the Pusher.
    served = gate_runs.serving_dir / "gate"
    assert Path(drifted["drift_baseline"]).parent.parent.parent == served
    assert drifted["drift_baseline"].endswith("/assets.extra/training_statistics")
    accepted = gate_runs.runs["drift_accepted"].report["validation"]
    train = next(m for m in accepted["drift"] if m["split"] == "train")
    assert 0.1 < train["distance"] <= train["threshold"] == pytest.approx(0.5)
    assert accepted["gate_state"] == "executed"
    # The comparison's facts on the gate's output in ML Metadata, from the gate's record.
    from components.gate_report import GateReport

    run = gate_runs.runs["drift_accepted"]
    gate = GateReport.read(run.gate_output)
    assert gate.baseline_version is not None and gate.comparison.differences  # class counts
    assert {key: run.gate_properties.get(key) for key in (
        "class_map_changed", "baseline_version", "statistics_differences")} == {
        "class_map_changed": 0, "baseline_version": gate.baseline_version,
        "statistics_differences": len(gate.comparison.differences)}
    assert gate_runs.runs["drifted"].gate_properties is None  # rejected: no output


def test_a_changed_class_map_stops_the_run_until_accepted(gate_runs: GateRuns) -> None:
    stopped = gate_runs.runs["class_renamed"]
    assert stopped.exit_code == EXIT_DATA_REJECTED
    assert "CLASS_MAP_CHANGED" in stopped.log
    assert f"added [{RENAMED!r}]; removed ['red']" in stopped.log
    assert "--accept-new-classes" in stopped.log
    assert not stopped.executed & {"Transform", "Trainer", "Pusher"}
    assert stopped.serving_after == stopped.serving_before
    assert stopped.report["validation"]["class_map"]["class_names"] == ["blue", "green", RENAMED]
    # What the rejecting gate recorded (gate_report.execution_folder), not redone afterwards.
    assert "drift_missing" not in stopped.report["validation"]

    accepted = gate_runs.runs["class_renamed_accepted"]
    assert accepted.exit_code == EXIT_OK
    evaluation = accepted.report["evaluation"]
    assert evaluation["class_map_changed"] and evaluation["baseline_accuracy"] is None
    assert "new class map: no baseline" in Path(accepted.report["files"]["html"]).read_text()
    assert accepted.report["validation"]["drift"] == []  # other label ids: not compared
    # In ML Metadata too: the class map changed, and no served version was compared with.
    assert accepted.gate_properties["class_map_changed"] == 1
    assert not {"baseline_version", "statistics_differences"} & set(accepted.gate_properties)
    assert accepted.report["push"]["pushed"]


def test_synthetic_warmup_requests_hold_no_image_of_the_data(gate_runs: GateRuns) -> None:
    from serving.warmup import read_warmup_requests

    version = gate_runs.runs["class_renamed_accepted"].report["push"]["destination"]
    sent = {image for request in read_warmup_requests(version)
            for image in tf.make_ndarray(request.inputs["image"])}
    data = {f.read_bytes() for f in (gate_runs.root.parent / "renamed_images").rglob("*.*")}
    assert sent and not sent & data


def test_non_ascii_class_names_survive_the_whole_trip(gate_runs: GateRuns, capsys) -> None:
    """Ingest, the report, the served model's labels.txt and its predictions."""
    from cli import main

    accepted = gate_runs.runs["class_renamed_accepted"]
    version = Path(accepted.report["push"]["destination"])
    labels = (version / "assets" / "labels.txt").read_text(encoding="utf-8")
    assert labels.splitlines() == ["blue", "green", RENAMED]
    assert RENAMED in Path(accepted.report["files"]["html"]).read_text(encoding="utf-8")
    assert RENAMED in accepted.report["dataset"]["splits"]["train"]["per_class"]
    red = sorted((gate_runs.root.parent / "renamed_images" / "test" / RENAMED).iterdir())
    assert main(["predict", "--model-dir", str(version), "--json", *map(str, red[:4])]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    # A one-epoch model: its names, not its accuracy, are under test.
    assert {p["class_name"] for p in predictions} <= {"blue", "green", RENAMED}
    assert all(RENAMED in {name for name, _ in p["top"]} for p in predictions)


def test_gate_rejects_unknown_allow_list_entries() -> None:
    from tfx.types import Channel, standard_artifacts

    from components.data_gate import DataGate

    with pytest.raises(ValueError, match="NOT_A_TYPE"):
        DataGate(
            statistics=Channel(type=standard_artifacts.ExampleStatistics),
            anomalies=Channel(type=standard_artifacts.ExampleAnomalies),
            schema=Channel(type=standard_artifacts.Schema),
            allowed_anomaly_types=["NOT_A_TYPE"],
            max_label_drift=0.1,
        )



def test_a_class_map_rejection_names_the_flag_on_the_cli_and_the_setting_elsewhere(
        tmp_path: Path) -> None:
    """The gate's message for a renamed class: the CLI says `--accept-new-classes`; str(),
    what Kubeflow's log shows, says the setting is fixed at compile time and names no flag.
    """
    from cli.main import explain
    from components.data_gate import (
        DataValidationError,
        class_map_findings,
        class_map_record,
        failure_message,
    )
    from ingest.manifest import DatasetManifest, SplitManifest
    from schema.errors import Setting
    from serving.model_dir import ProductionModel, labels_path

    data_root, version = tmp_path / "data", tmp_path / "model" / "3"
    data_root.mkdir()
    DatasetManifest(class_names=("blue", "crimson"), image_shape=(8, 8, 3),
                    splits={"train": SplitManifest(count=2)}).write(str(data_root))
    Path(labels_path(str(version))).parent.mkdir(parents=True)
    Path(labels_path(str(version))).write_text("blue\nred\n")
    production = ProductionModel(3, str(version))
    findings = class_map_findings(class_map_record(str(data_root), production), production)
    error = DataValidationError(*failure_message(findings, "stats"))

    assert error.settings == (Setting("accept_new_classes"),)
    assert "(renamed 'red' -> 'crimson'?)" in str(error)
    assert str(error).endswith(
        "use the setting accept_new_classes (on Kubeflow: fixed when the pipeline is compiled, "
        "compile-kfp).")
    assert "--" not in str(error)
    assert explain(error).endswith("use --accept-new-classes.")


def test_source_paths_pass_a_schema_written_before_ingest_kept_them(tmp_path: Path) -> None:
    """The curated schema lists the source path as optional; a schema without it (a user's,
    or one ImportSchemaGen cached before) flags it as a new column, which the gate accepts.
    """
    import tensorflow_data_validation as tfdv

    from components.data_gate import _findings, ingest_bookkeeping
    from ingest.dataset import ingest
    from schema import features
    from schema.curated import load_schema, write_schema

    imagegen.write_folder(tmp_path / "images", {"train": 3, "test": 1})
    ingest(tmp_path / "images", tmp_path / "data", workers=1)
    write_schema(len(imagegen.CLASS_NAMES), tmp_path / "schema.pbtxt")
    schema = load_schema(tmp_path / "schema.pbtxt")
    older = load_schema(tmp_path / "schema.pbtxt")
    older.feature.remove(next(f for f in older.feature if f.name == features.SOURCE_PATH_KEY))
    statistics = tfdv.generate_statistics_from_tfrecord(
        str(tmp_path / "data" / "train" / "*"), stats_options=tfdv.StatsOptions(schema=schema))
    assert not tfdv.validate_statistics(statistics, schema).anomaly_info
    findings = _findings(tfdv.validate_statistics(statistics, older), "train", "statistics")
    assert [(f.feature, f.anomaly_type) for f in findings] == [
        (features.SOURCE_PATH_KEY, "SCHEMA_NEW_COLUMN")]
    assert all(ingest_bookkeeping(f) for f in findings)
