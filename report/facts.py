"""Everything a run report shows, gathered from ML Metadata and the artifacts it points to.

`collect` builds a RunReport (report/records.py, also written as report.json). A section whose
components did not run (data rejected, a failure) is a NotRun with the state of the component
it waited for, instead of being left out: the reader should see where the run stopped.
"""

from __future__ import annotations

import dataclasses
import datetime
import heapq
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.dataset import EVAL, TRAIN, evaluation_split
from ingest.manifest import DatasetManifest
from ingest.spans import WINDOW_PROPERTY, dataset_folder
from report.records import (
    AnomalyFacts,
    ConfusedPair,
    DatasetFacts,
    EvaluationFacts,
    NotRun,
    PushFacts,
    RunReport,
    SplitFacts,
    TfliteFacts,
    Threshold,
    TrainingFacts,
    ValidationFacts,
)
from report.summary import (
    NO_TFLITE,
    Node,
    NodeRecord,
    RunSummary,
    class_name,
    gone,
    outcome_line,
    run_nodes,
    summary_of,
    value,
)
from schema import features
from trainer.record import TrainingRecord
from trainer.tuning import TuningRecord

if TYPE_CHECKING:  # components/ loads TFX: imported where a record is read
    from components.gate_report import GateReport

# How the report names the StatisticsGen artifact when it is gone.
STATISTICS = "the statistics (StatisticsGen)"


def split_evaluated(dataset: DatasetFacts | NotRun) -> str | None:
    """The split the Evaluator scores on this data (test, else eval), when it did not run."""
    splits = dataset.splits if isinstance(dataset, DatasetFacts) else None
    return evaluation_split(splits) if splits else None


def _not_run(node: NodeRecord | None, what: Node) -> NotRun:
    state = node.state if node else "not run"
    return NotRun(state=state,
                  why=f"{what} {'failed' if state == 'failed' else 'did not run'} in this run")


def _split_names(artifact) -> list[str]:
    return sorted(json.loads(value(artifact, "split_names") or "[]"))


def _label_counts(dataset, class_names: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(class_names, 0)
    for feature in dataset.features:
        if feature.path.step != [features.LABEL_KEY]:
            continue
        strings = feature.string_stats
        if strings.rank_histogram.buckets:
            pairs = [(b.label, b.sample_count) for b in strings.rank_histogram.buckets]
        else:
            pairs = [(v.value, v.frequency) for v in strings.top_values]
        for label, count in pairs:
            counts[class_name(class_names, label)] = int(round(count))
    return counts


def _image_formats(dataset) -> dict[str, int]:
    for feature in dataset.features:
        if feature.path.step == [features.IMAGE_KEY]:
            for custom in feature.custom_stats:
                if custom.name == "image_format_histogram":
                    return {b.label: int(b.sample_count) for b in custom.rank_histogram.buckets}
    return {}


def _statistics_splits(statistics, class_names: list[str]) -> dict[str, SplitFacts]:
    from components.data_gate import load_split_statistics

    splits = {}
    for split in _split_names(statistics):
        dataset = load_split_statistics(statistics.uri, split).datasets[0]
        splits[split] = SplitFacts(examples=int(dataset.num_examples),
                                   per_class=_label_counts(dataset, class_names),
                                   image_formats=_image_formats(dataset))
    return splits


def _ingested_splits(manifest: DatasetManifest) -> dict[str, SplitFacts]:
    """Per-split counts as ingest wrote them: what the report shows when statistics are gone."""
    return {split: SplitFacts(examples=meta.count, per_class=meta.per_class)
            for split, meta in manifest.splits.items()}


def dataset_section(nodes: dict[str, NodeRecord], class_names: list[str]
                    ) -> DatasetFacts | NotRun:
    example_gen, stats_gen = nodes.get(Node.EXAMPLE_GEN), nodes.get(Node.STATISTICS_GEN)
    statistics = stats_gen.output("statistics") if stats_gen else None
    examples = example_gen.output("examples") if example_gen else None
    if examples is None or statistics is None:
        return _not_run(stats_gen or example_gen, Node.STATISTICS_GEN)
    data_root = value(example_gen.execution, "input_base")
    statistics_gone = gone(statistics.uri, STATISTICS, plural=True)
    examples_gone = gone(examples.uri, "the examples (ImportExampleGen)", plural=True)
    facts = DatasetFacts(
        data_root=data_root, examples=examples.uri, statistics=statistics.uri,
        splits={} if statistics_gone else _statistics_splits(statistics, class_names),
        missing=tuple(why for why in (statistics_gone, examples_gone) if why))
    span = value(examples, "span")
    folder = dataset_folder(data_root, span) if data_root else ""
    if data_root and folder != data_root:
        window = value(examples, WINDOW_PROPERTY)
        # A root of spans: this run's span has the dataset.json.
        facts = dataclasses.replace(facts, span=int(span),
                                    window_spans=tuple(json.loads(window)) if window
                                    else (int(span),))
    manifest = DatasetManifest.read(folder) if data_root else None
    if manifest is None:
        return facts
    splits = _ingested_splits(manifest) if statistics_gone else facts.splits
    splits = {split: dataclasses.replace(counts, origin=manifest.splits[split].origin)
              if split in manifest.splits else counts for split, counts in splits.items()}
    seen = {split: counts.examples for split, counts in splits.items()}
    return dataclasses.replace(
        facts,
        splits=splits,
        dataset_json=str(Path(DatasetManifest.path_in(folder))),
        source=manifest.source,
        splits_from=DatasetManifest.FILE if statistics_gone else None,
        image_shape=manifest.image_shape,
        image_shapes_seen=manifest.image_shapes_seen,
        sizes_vary=manifest.sizes_vary,
        image_sizes=manifest.image_sizes,
        channels_chosen=manifest.channels_chosen,
        shape_policy=manifest.shape_policy,
        skipped_files=manifest.skipped_files,
        image_modes=manifest.image_modes,
        converted=manifest.converted,
        duplicates=manifest.duplicates,
        dataset_json_matches_run=None if statistics_gone else manifest.split_counts == seen,
    )


def validation_section(nodes: dict[str, NodeRecord]) -> ValidationFacts | NotRun:
    from components.data_gate import ingest_bookkeeping, schema_anomalies

    validator, gate = nodes.get(Node.EXAMPLE_VALIDATOR), nodes.get(Node.DATA_GATE)
    anomalies = validator.output("anomalies") if validator else None
    if anomalies is None:
        return _not_run(validator, Node.EXAMPLE_VALIDATOR)
    facts = ValidationFacts(
        anomalies_uri=anomalies.uri,
        anomalies=tuple(AnomalyFacts(**dataclasses.asdict(f), bookkeeping=ingest_bookkeeping(f))
                        for f in schema_anomalies(anomalies.uri, _split_names(anomalies))),
        gate_state=gate.state if gate else "not run")
    if gate is None:
        return facts
    # What the gate recorded in this run, never a comparison redone with today's served model.
    report = gate_report(gate)
    facts = dataclasses.replace(
        facts,
        allowed_anomaly_types=tuple(json.loads(
            value(gate.execution, "allowed_anomaly_types") or "[]")),
        max_label_drift=float(value(gate.execution, "max_label_drift") or 0.0))
    if report is None:
        return dataclasses.replace(
            facts, drift_missing="the data gate recorded nothing in this run (it did not "
            "finish, its record was deleted since, or it ran before gates recorded rejected "
            "data)")
    return dataclasses.replace(facts, drift_baseline=report.baseline,
                               drift_compared=report.drift_compared, class_map=report.class_map,
                               drift=report.drift)


def gate_report(gate: NodeRecord) -> GateReport | None:
    """The gate's record of this run: in its output when it accepted the data, in its
    execution's folder when it rejected it (components/gate_report.py); None if neither holds.
    """
    from components.gate_report import GateReport, execution_folder

    accepted = gate.output("validated_statistics")
    if accepted is not None:
        return GateReport.read(accepted.uri)
    statistics = gate.input("statistics")
    if statistics is None:
        return None
    return GateReport.read(execution_folder(statistics.uri, gate.execution.id, gate.name))


def training_section(nodes: dict[str, NodeRecord]) -> TrainingFacts | NotRun:
    trainer = nodes.get(Node.TRAINER)
    model_run = trainer.output("model_run") if trainer else None
    record = TrainingRecord.read(model_run.uri) if model_run is not None else None
    if record is None:
        return _not_run(trainer, Node.TRAINER)
    recipe, recipe_reason = record.recipe()
    tuner = nodes.get(Node.TUNER)
    results = tuner.output("tuner_results") if tuner else None
    return TrainingFacts(
        state=trainer.state,
        model=trainer.output("model").uri,
        tensorboard_dir=model_run.uri,
        config=record.config,
        recipe=recipe,
        recipe_reason=recipe_reason,
        backbone=record.transfer.backbone if record.transfer else None,
        train_split=f"{TRAIN} + {EVAL}" if record.refit else TRAIN,
        eval_split=EVAL,
        refit=record.refit,
        epochs_run=record.epochs_run,
        num_train=record.num_train,
        num_eval=record.num_eval,
        input=record.input,
        warm_start=record.warm_start,
        skip_if_unchanged=record.skip_if_unchanged,
        tuning=TuningRecord.read(results.uri) if results is not None else None,
        fit_seconds=record.fit_seconds,
        train_images_per_second=record.train_images_per_second,
        final_eval_accuracy=record.final_eval_accuracy,
        members=record.members,
        history=record.history,
    )


def _thresholds(eval_config_json: str | None) -> list[Threshold]:
    """The Evaluator's thresholds as configured: metric, slice, kind and bound."""
    if not eval_config_json:
        return []
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format

    config = json_format.Parse(eval_config_json, tfma.EvalConfig())
    found = []
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            for entry in metric.per_slice_thresholds:
                where = ", ".join(
                    "overall" if not (s.feature_keys or s.feature_values) else str(s).strip()
                    for s in entry.slicing_specs
                ) or "overall"
                threshold = entry.threshold
                if threshold.value_threshold.HasField("lower_bound"):
                    found.append(Threshold(
                        metric=metric.class_name, slice=where, kind="at least",
                        value=threshold.value_threshold.lower_bound.value))
                if threshold.change_threshold.HasField("absolute"):
                    found.append(Threshold(
                        metric=metric.class_name, slice=where,
                        kind="change vs baseline at least",
                        value=threshold.change_threshold.absolute.value))
    return found


def confusion_matrix(evaluation_uri: str, num_classes: int) -> list[list[int]] | None:
    """Counts[actual][predicted] on the overall slice from TFMA's MultiClassConfusionMatrixPlot."""
    import tensorflow_model_analysis as tfma

    for plots_for_slice in tfma.load_plots(evaluation_uri):
        if plots_for_slice.slice_key.single_slice_keys:
            continue
        for kv in plots_for_slice.plot_keys_and_values:
            if kv.key.model_name == "baseline":
                continue
            matrices = kv.value.multi_class_confusion_matrix_at_thresholds.matrices
            if not matrices:
                continue
            # The default (and only) threshold 0.0 means: predicted class = argmax.
            matrix = [[0] * num_classes for _ in range(num_classes)]
            for entry in matrices[0].entries:
                if 0 <= entry.actual_class_id < num_classes and (
                    0 <= entry.predicted_class_id < num_classes
                ):
                    matrix[entry.actual_class_id][entry.predicted_class_id] = round(
                        entry.num_weighted_examples
                    )
            return matrix
    return None


# report.json keeps the whole confusion matrix up to this many classes: at 1,000 classes its
# million cells would dwarf the rest of the report. The most confused pairs are always kept.
MAX_MATRIX_CLASSES_KEPT = 100
MOST_CONFUSED = 20


def confusion_facts(matrix: list[list[int]] | None, class_names: list[str]) -> dict[str, Any]:
    """EvaluationFacts' confusion fields: the matrix (up to MAX_MATRIX_CLASSES_KEPT classes),
    its class count, and the MOST_CONFUSED largest off-diagonal cells, largest first.
    """
    if not matrix:
        return {"confusion_matrix": None, "confusion_classes": 0, "most_confused": ()}
    cells = ((count, actual, predicted) for actual, row in enumerate(matrix)
             for predicted, count in enumerate(row) if actual != predicted and count > 0)
    largest = heapq.nsmallest(MOST_CONFUSED, cells, key=lambda c: (-c[0], c[1], c[2]))
    return {
        "confusion_matrix": matrix if len(matrix) <= MAX_MATRIX_CLASSES_KEPT else None,
        "confusion_classes": len(matrix),
        "most_confused": tuple(ConfusedPair(actual=class_name(class_names, str(a)),
                                            predicted=class_name(class_names, str(p)),
                                            count=count) for count, a, p in largest),
    }


def _validation_failures(evaluation_uri: str) -> tuple[bool | None, list[str]]:
    import tensorflow_model_analysis as tfma

    result = tfma.load_validation_result(evaluation_uri)
    if result is None:
        return None, []
    failures = [
        f"{failure.metric_key.name}: {failure.message}"
        for per_slice in result.metric_validations_per_slice
        for failure in per_slice.failures
    ]
    return result.validation_ok, failures


def evaluation_section(
    nodes: dict[str, NodeRecord], summary: RunSummary, class_names: list[str]
) -> EvaluationFacts | NotRun:
    evaluator = nodes.get(Node.EVALUATOR)
    if evaluator is None or not summary.evaluation_uri:
        return _not_run(evaluator, Node.EVALUATOR)
    if summary.evaluation_missing:
        return NotRun(state=evaluator.state, why=summary.evaluation_missing)
    from serving.model_dir import EvaluationRecord

    provenance = EvaluationRecord.read(summary.evaluation_uri)
    production = provenance.production if provenance else None
    validation_ok, failures = _validation_failures(summary.evaluation_uri)
    return EvaluationFacts(
        state=evaluator.state,
        evaluation_uri=summary.evaluation_uri,
        signature=features.SERVING_SIGNATURE,
        split=summary.evaluation_split,
        eval_examples=summary.eval_examples,
        accuracy=summary.accuracy,
        baseline_model=production.path if production else None,
        baseline_version=production.version if production else None,
        baseline_is_candidate=bool(provenance and provenance.baseline_is_candidate),
        class_map_changed=bool(provenance and provenance.class_map_changed),
        baseline_accuracy=summary.baseline_accuracy,
        baseline_note=summary.baseline_note,
        thresholds=tuple(_thresholds(value(evaluator.execution, "eval_config"))),
        blessing_rule=summary.blessing_rule,
        new_model=summary.new_model,
        validation_ok=validation_ok,
        failures=tuple(failures),
        blessed=summary.blessed,
        per_class_accuracy=summary.named_per_class_accuracy(),
        **confusion_facts(confusion_matrix(summary.evaluation_uri, len(class_names)),
                          class_names),
    )


def push_section(nodes: dict[str, NodeRecord], summary: RunSummary) -> PushFacts | NotRun:
    pusher = nodes.get(Node.PUSHER)
    pushed = pusher.output("pushed_model") if pusher else None
    if pushed is None:
        return _not_run(pusher, Node.PUSHER)
    return PushFacts(state=pusher.state, pushed=bool(summary.pushed),
                     already_served=summary.already_served,
                     destination=summary.pushed_destination,
                     version=value(pushed, "pushed_version"), blessed=summary.blessed,
                     inference=summary.inference)


def tflite_section(nodes: dict[str, NodeRecord], summary: RunSummary) -> TfliteFacts | NotRun:
    """The Evaluator's score of the TFLite model and the Pusher's outcome for its file."""
    evaluator = nodes.get(Node.EVALUATOR)
    if evaluator is None or not summary.evaluation_uri:
        return _not_run(evaluator, Node.EVALUATOR)
    if summary.evaluation_missing:
        return NotRun(state=evaluator.state, why=summary.evaluation_missing)
    if summary.tflite is None:  # the Pusher's note says why, when a version was pushed
        return NotRun(state=evaluator.state, why=summary.tflite_note or NO_TFLITE)
    return TfliteFacts(evaluation=summary.tflite, pushed=summary.tflite_pushed,
                       version=summary.pushed_version, note=summary.tflite_note)


def collect(metadata_path: str, pipeline_name: str, run_id: str | None = None) -> RunReport:
    run_id, nodes = run_nodes(metadata_path, pipeline_name, run_id)
    summary = summary_of(pipeline_name, run_id, nodes)
    class_names = summary.class_names
    started = min((n.execution.create_time_since_epoch for n in nodes.values()), default=0)
    dataset = dataset_section(nodes, class_names)
    return RunReport(
        pipeline_name=pipeline_name,
        run_id=run_id,
        started=datetime.datetime.fromtimestamp(started / 1e3, datetime.UTC).isoformat(
            timespec="seconds"),
        components=tuple(summary.components),
        failed_components=tuple(summary.failed_components),
        class_names=tuple(class_names),
        evaluation_split=summary.evaluation_split or split_evaluated(dataset),
        dataset=dataset,
        validation=validation_section(nodes),
        training=training_section(nodes),
        evaluation=evaluation_section(nodes, summary, class_names),
        push=push_section(nodes, summary),
        tflite=tflite_section(nodes, summary),
        outcome=outcome_line(summary) if summary.evaluation_uri else None,
    )
