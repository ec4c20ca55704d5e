"""Everything a run report shows, gathered from ML Metadata and the artifacts it points to.

Each section is plain JSON data (also written as report.json). A section whose components did
not run (data rejected, a failure) says so with the state of the component it waited for,
instead of being left out: the reader should see where the run stopped.
"""

from __future__ import annotations

import datetime
import heapq
import json
from pathlib import Path
from typing import Any

from ingest.dataset import DATASET_INFO, EVAL, TRAIN, evaluation_split
from ingest.spans import WINDOW_PROPERTY, dataset_folder
from report.summary import (
    NodeRecord,
    RunSummary,
    class_name,
    gone,
    outcome_line,
    run_nodes,
    summary_of,
    training_record,
    value,
)
from schema import features

_ACCURACY = "sparse_categorical_accuracy"
# How the report names the StatisticsGen artifact when it is gone.
STATISTICS = "the statistics (StatisticsGen)"


def split_evaluated(dataset: dict[str, Any]) -> str | None:
    """The split the Evaluator scores on this data (test, else eval), when it did not run."""
    splits = dataset.get("splits") if dataset.get("available") else None
    return evaluation_split(splits) if splits else None


def _not_run(node: NodeRecord | None, what: str) -> dict[str, Any]:
    state = node.state if node else "not run"
    return {"available": False, "state": state,
            "why": f"{what} {'failed' if state == 'failed' else 'did not run'} in this run"}


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


def _statistics_splits(statistics, class_names: list[str]) -> dict[str, dict[str, Any]]:
    from components.data_gate import load_split_statistics

    splits = {}
    for split in _split_names(statistics):
        dataset = load_split_statistics(statistics.uri, split).datasets[0]
        splits[split] = {
            "examples": int(dataset.num_examples),
            "per_class": _label_counts(dataset, class_names),
            "image_formats": _image_formats(dataset),
        }
    return splits


def _ingested_splits(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-split counts as ingest wrote them: what the report shows when statistics are gone."""
    return {split: {"examples": meta.get("count", 0), "per_class": meta.get("per_class", {}),
                    "image_formats": {}} for split, meta in info.get("splits", {}).items()}


def dataset_section(nodes: dict[str, NodeRecord], class_names: list[str]) -> dict[str, Any]:
    example_gen, stats_gen = nodes.get("ImportExampleGen"), nodes.get("StatisticsGen")
    statistics = stats_gen.output("statistics") if stats_gen else None
    examples = example_gen.output("examples") if example_gen else None
    if examples is None or statistics is None:
        return _not_run(stats_gen or example_gen, "StatisticsGen")
    data_root = value(example_gen.execution, "input_base")
    section: dict[str, Any] = {
        "available": True,
        "data_root": data_root,
        "examples": examples.uri,
        "statistics": statistics.uri,
        "splits": {},
    }
    statistics_gone = gone(statistics.uri, STATISTICS, plural=True)
    examples_gone = gone(examples.uri, "the examples (ImportExampleGen)", plural=True)
    missing = [why for why in (statistics_gone, examples_gone) if why]
    if missing:
        section["missing"] = missing
    if not statistics_gone:
        section["splits"] = _statistics_splits(statistics, class_names)
    span = value(examples, "span")
    folder = dataset_folder(data_root, span) if data_root else ""
    if data_root and folder != data_root:
        section["span"] = int(span)  # a root of spans: this run's span has the dataset.json
        window = value(examples, WINDOW_PROPERTY)
        # The spans whose train images the Trainer fitted (this span and the ones before it).
        section["window_spans"] = json.loads(window) if window else [int(span)]
    info_path = Path(folder) / DATASET_INFO
    if data_root and info_path.is_file():
        info = json.loads(info_path.read_text())
        section["dataset_json"] = str(info_path)
        section["source"] = info.get("source")  # the folder source paths are relative to
        if statistics_gone:
            section["splits"] = _ingested_splits(info)
            section["splits_from"] = "dataset.json"
        section["image_shape"] = info.get("image_shape")
        section["image_shapes_seen"] = info.get("image_shapes_seen", {})
        section["sizes_vary"] = info.get("sizes_vary", False)
        section["image_sizes"] = info.get("image_sizes")  # None: ingested before it was kept
        section["channels_chosen"] = info.get("channels_chosen")
        section["shape_policy"] = info.get("shape_policy", {})
        section["skipped_files"] = info.get("skipped_files", 0)
        section["image_modes"] = info.get("image_modes", {})
        section["converted"] = info.get("converted")
        section["duplicates"] = info.get("duplicates")  # None: ingested before they were counted
        for split, meta in info.get("splits", {}).items():
            if split in section["splits"] and meta.get("from"):
                section["splits"][split]["from"] = meta["from"]
        ingested = {s: v.get("count") for s, v in info.get("splits", {}).items()}
        seen = {s: v["examples"] for s, v in section["splits"].items()}
        # The folder may have been re-ingested, or its TFRecords replaced, since `ingest`.
        section["dataset_json_matches_run"] = None if statistics_gone else ingested == seen
    return section


def validation_section(nodes: dict[str, NodeRecord]) -> dict[str, Any]:
    from tfx.utils import io_utils

    from components.data_gate import ingest_bookkeeping, label_drift_measurements, schema_anomalies

    validator, gate = nodes.get("ExampleValidator"), nodes.get("DataGate")
    anomalies = validator.output("anomalies") if validator else None
    if anomalies is None:
        return _not_run(validator, "ExampleValidator")
    findings = [{**f.__dict__, "bookkeeping": ingest_bookkeeping(f)}
                for f in schema_anomalies(anomalies.uri, _split_names(anomalies))]
    section: dict[str, Any] = {
        "available": True,
        "anomalies_uri": anomalies.uri,
        "anomalies": findings,
        "gate_state": gate.state if gate else "not run",
        "allowed_anomaly_types": [],
        "drift": [],
    }
    if gate is None:
        return section
    section["allowed_anomaly_types"] = json.loads(
        value(gate.execution, "allowed_anomaly_types") or "[]"
    )
    max_drift = float(value(gate.execution, "max_label_drift") or 0.0)
    section["max_label_drift"] = max_drift
    statistics, schema = gate.input("statistics"), gate.input("schema")
    gate_record = _gate_record(gate)
    baseline = gate_record.get("baseline")
    section["drift_baseline"] = baseline
    section["drift_compared"] = gate_record.get("drift_compared")  # which spans, in words
    section["class_map"] = {key: gate_record.get(key) for key in
                            ("class_names", "served_class_names", "change")}
    unreadable = statistics is not None and gone(statistics.uri, STATISTICS, plural=True)
    if unreadable and max_drift > 0:
        section["drift_missing"] = unreadable
    elif baseline is not None and statistics is not None and schema is not None and max_drift > 0:
        loaded = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema.uri))
        section["drift"] = [
            m.__dict__
            for m in label_drift_measurements(statistics.uri, baseline, loaded, max_drift)
        ]
    return section


def _gate_record(gate: NodeRecord) -> dict[str, Any]:
    """What the gate compared with: its report (gate.json), or, when it failed and wrote none,
    the same comparison with the served version now (the report is written after the run).
    """
    from components.data_gate import REPORT_FILE, class_map_record
    from serving.model_dir import production_model, push_base

    accepted = gate.output("validated_statistics")
    report = Path(accepted.uri) / REPORT_FILE if accepted is not None else None
    if report is not None and report.is_file():
        return json.loads(report.read_text())
    production = production_model(push_base(value(gate.execution, "push_destination")))
    record = class_map_record(value(gate.execution, "data_root"), production)
    changed = record["change"] is not None
    record["baseline"] = production.statistics if production and not changed else None
    return record


def training_section(nodes: dict[str, NodeRecord]) -> dict[str, Any]:
    trainer = nodes.get("Trainer")
    model_run = trainer.output("model_run") if trainer else None
    record = training_record(model_run.uri) if model_run is not None else None
    if record is None:
        return _not_run(trainer, "Trainer")
    history = record.get("history", {})
    return {
        "available": True,
        "state": trainer.state,
        "model": trainer.output("model").uri,
        "tensorboard_dir": model_run.uri,
        "config": record.get("config", {}),
        "recipe": record.get("config", {}).get("recipe"),
        "recipe_reason": record.get("config", {}).get("recipe_reason"),
        "backbone": (record.get("transfer") or {}).get("backbone"),
        # The Trainer fits the first and early-stops / picks checkpoints on the second.
        "train_split": TRAIN,
        "eval_split": EVAL,
        "epochs_run": len(history.get("loss", [])),
        "num_train": record.get("num_train"),
        "num_eval": record.get("num_eval"),
        "input": record.get("input"),
        # None: from scratch, not asked to warm-start; else trainer/warm_start.py's record.
        "warm_start": record.get("warm_start"),
        # None: not asked; else components/trainer.py's decision, skipped or trained, and why.
        "skip_if_unchanged": record.get("skip_if_unchanged"),
        "fit_seconds": record.get("fit_seconds"),
        "train_images_per_second": record.get("train_images_per_second"),
        "final_eval_accuracy": record.get("final_eval_accuracy"),
        "history": history,
    }


def _thresholds(eval_config_json: str | None) -> list[dict[str, Any]]:
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
                    found.append({"metric": metric.class_name, "slice": where,
                                  "kind": "at least",
                                  "value": threshold.value_threshold.lower_bound.value})
                if threshold.change_threshold.HasField("absolute"):
                    found.append({"metric": metric.class_name, "slice": where,
                                  "kind": "change vs baseline at least",
                                  "value": threshold.change_threshold.absolute.value})
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
    """The matrix (up to MAX_MATRIX_CLASSES_KEPT classes), its class count, and the
    MOST_CONFUSED largest off-diagonal cells as (actual, predicted, count), largest first.
    """
    if not matrix:
        return {"confusion_matrix": None, "confusion_classes": 0, "most_confused": []}
    cells = ((count, actual, predicted) for actual, row in enumerate(matrix)
             for predicted, count in enumerate(row) if actual != predicted and count > 0)
    largest = heapq.nsmallest(MOST_CONFUSED, cells, key=lambda c: (-c[0], c[1], c[2]))
    return {
        "confusion_matrix": matrix if len(matrix) <= MAX_MATRIX_CLASSES_KEPT else None,
        "confusion_classes": len(matrix),
        "most_confused": [{"actual": class_name(class_names, str(a)),
                           "predicted": class_name(class_names, str(p)), "count": count}
                          for count, a, p in largest],
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
) -> dict[str, Any]:
    evaluator = nodes.get("Evaluator")
    if evaluator is None or not summary.evaluation_uri:
        return _not_run(evaluator, "Evaluator")
    if summary.evaluation_missing:
        return {"available": False, "state": evaluator.state, "why": summary.evaluation_missing}
    from serving.model_dir import read_provenance

    provenance = read_provenance(summary.evaluation_uri) or {}
    production = provenance.get("production") or {}
    validation_ok, failures = _validation_failures(summary.evaluation_uri)
    return {
        "available": True,
        "state": evaluator.state,
        "evaluation_uri": summary.evaluation_uri,
        "signature": features.SERVING_SIGNATURE,
        "split": summary.evaluation_split,
        "eval_examples": summary.eval_examples,
        "accuracy": summary.accuracy,
        # The served version the candidate was compared with (components/evaluator.py).
        "baseline_model": production.get("path"),
        "baseline_version": production.get("version"),
        # On an unchanged re-run the served version is the candidate itself: nothing to compare.
        "baseline_is_candidate": bool(provenance.get("baseline_is_candidate")),
        # Data accepted with --accept-new-classes: the served model's label ids mean other classes.
        "class_map_changed": bool(provenance.get("class_map_changed")),
        "baseline_accuracy": summary.baseline_accuracy,
        # Why there is no baseline, when there is none: the console's words.
        "baseline_note": summary.baseline_note,
        "thresholds": _thresholds(value(evaluator.execution, "eval_config")),
        # How the accuracy bar was set: pipeline/blessing.py's rule or --min-accuracy.
        "blessing_rule": summary.blessing_rule,
        # The model directory held no version yet (serving/model_dir.py NewModel).
        "new_model": summary.new_model,
        "validation_ok": validation_ok,
        "failures": failures,
        "blessed": summary.blessed,
        "per_class_accuracy": summary.named_per_class_accuracy(),
        **confusion_facts(confusion_matrix(summary.evaluation_uri, len(class_names)),
                          class_names),
    }


def push_section(nodes: dict[str, NodeRecord], summary: RunSummary) -> dict[str, Any]:
    pusher = nodes.get("Pusher")
    pushed = pusher.output("pushed_model") if pusher else None
    if pushed is None:
        return _not_run(pusher, "Pusher")
    destination = summary.pushed_destination
    return {
        "available": True,
        "state": pusher.state,
        "pushed": bool(summary.pushed),
        "already_served": summary.already_served,
        "destination": destination,
        "version": value(pushed, "pushed_version"),
        "blessed": summary.blessed,
    }


def collect(metadata_path: str, pipeline_name: str, run_id: str | None = None) -> dict[str, Any]:
    run_id, nodes = run_nodes(metadata_path, pipeline_name, run_id)
    summary = summary_of(pipeline_name, run_id, nodes)
    class_names = summary.class_names
    started = min((n.execution.create_time_since_epoch for n in nodes.values()), default=0)
    dataset = dataset_section(nodes, class_names)
    return {
        "pipeline_name": pipeline_name,
        "run_id": run_id,
        "started": datetime.datetime.fromtimestamp(started / 1e3, datetime.UTC).isoformat(
            timespec="seconds"
        ),
        "components": [c.__dict__ for c in summary.components],
        "failed_components": summary.failed_components,
        "class_names": class_names,
        # The one split every evaluation title, caption and heading names.
        "evaluation_split": summary.evaluation_split or split_evaluated(dataset),
        "dataset": dataset,
        "validation": validation_section(nodes),
        "training": training_section(nodes),
        "evaluation": evaluation_section(nodes, summary, class_names),
        "push": push_section(nodes, summary),
        # The run summary's last line: what was trained, how good, pushed or not, and why.
        "outcome": outcome_line(summary) if summary.evaluation_uri else None,
    }
