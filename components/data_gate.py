"""DataGate: fails the run before Transform when the data has anomalies or has drifted.

ExampleValidator records anomalies but never fails, so stock TFX trains and pushes models on
data it has just flagged. DataGate reads those anomalies, compares the label distribution of
each split with the last data that passed the gate (L-infinity distance, TFDV's drift
comparator), and raises with every finding spelled out. Transform runs after it, so nothing
downstream runs and nothing is pushed when it fails.

The drift baseline is the data the model in production was trained on: the Pusher stores the
gate's accepted statistics (`ValidatedStatistics`) in every version it pushes, and the gate
reads them back from the newest served version (serving/model_dir.py). Data that failed
the gate, or trained a model that was not pushed, never becomes a baseline, so re-running the
same drifted data fails again instead of comparing the data with itself. The gate is never
cached: its baseline changes outside the pipeline when a version is pushed or removed.

Why not TFX's DistributionValidator: it measures drift with the same TFDV comparator this gate
calls (`tfdv.validate_statistics` with a `drift_comparator` on the label), but takes its
baseline as an input channel. Here the baseline is whichever version is served when the run
starts: an importer fixes its URI when the pipeline is compiled, and open-source Kubeflow
Pipelines refuses the resolver that could find it at run time. So the gate reads the baseline
itself, asks TFDV the same question, and fails the run, which DistributionValidator does not.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact, artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import io_utils

from components.gate_report import (
    ClassMap,
    DataComparison,
    DriftMeasurement,
    Finding,
    GateReport,
    StatisticsDifference,
)
from ingest import spans
from ingest.manifest import DatasetManifest
from schema import features
from schema.errors import BadInput, Explained, Part, Setting
from serving.model_dir import (
    ProductionModel,
    labels_path,
    production_model,
    push_base,
    served_class_names,
)

log = logging.getLogger(__name__)
STATS_FILE = "FeatureStats.pb"
ANOMALIES_FILE = "SchemaDiff.pb"


class ValidatedStatistics(artifact.Artifact):
    """Statistics of data that passed the gate."""

    # KFP v2 wants custom type names of the form "<lowercase namespace>.<TypeName>".
    TYPE_NAME = "tfx_image.ValidatedStatistics"
    # No PROPERTIES (KFP v2 allows none on custom types): the splits are its Split-* folders.


class DataValidationError(Explained, RuntimeError):
    """The data failed the gate (the CLI exits 3); the message lists every finding and the
    settings that would let them through.
    """


def _split_dir(uri: str, split: str) -> str:
    return os.path.join(uri, f"Split-{split}")


def splits_in(uri: str) -> list[str]:
    names = (str(name).rstrip("/") for name in fileio.listdir(uri))
    return sorted(n.removeprefix("Split-") for n in names if n.startswith("Split-"))


def _findings(anomalies: anomalies_pb2.Anomalies, split: str, source: str) -> list[Finding]:
    found = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        for reason in info.reason or [None]:
            kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type) if reason else "UNKNOWN_TYPE"
            text = reason.description if reason else info.description
            found.append(Finding(split, feature, kind, text or info.short_description, source))
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        for reason in info.reason:
            found.append(Finding(split, "<dataset>", anomalies_pb2.AnomalyInfo.Type.Name(
                reason.type), reason.description, source))
    return found


def ingest_bookkeeping(finding: Finding) -> bool:
    """A schema written before ingest kept source paths, on data that has them: accepted.

    The source path (schema/features.py) traces an example to its file and is never read by
    the model, so a schema without it, or one ImportSchemaGen cached before the curated schema
    listed it, must not stop the run on data ingested since.
    """
    return (finding.feature == features.SOURCE_PATH_KEY
            and finding.anomaly_type == "SCHEMA_NEW_COLUMN")


def schema_anomalies(anomalies_uri: str, splits: list[str]) -> list[Finding]:
    """ExampleValidator's anomalies for each split."""
    found = []
    for split in splits:
        path = os.path.join(_split_dir(anomalies_uri, split), ANOMALIES_FILE)
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(io_utils.read_bytes_file(path))
        found.extend(_findings(anomalies, split, path))
    return found


def load_split_statistics(uri: str, split: str):
    """The DatasetFeatureStatisticsList of one split of a statistics artifact."""
    return tfdv.load_stats_binary(os.path.join(_split_dir(uri, split), STATS_FILE))


def drift_schema(schema: schema_pb2.Schema, max_label_drift: float) -> schema_pb2.Schema:
    """The schema with an L-infinity drift comparator on the label."""
    drift = schema_pb2.Schema()
    drift.CopyFrom(schema)
    for feature in drift.feature:
        if feature.name == features.LABEL_KEY:
            feature.drift_comparator.infinity_norm.threshold = max_label_drift
    return drift


def label_drift(
    statistics_uri: str,
    baseline_uri: str,
    splits: list[str],
    baseline_splits: list[str],
    schema: schema_pb2.Schema,
    max_label_drift: float,
) -> tuple[list[Finding], list[DriftMeasurement]]:
    """Each split's label distribution against the same split of the baseline: the splits
    that drifted too far, and the distance TFDV measured for every split compared.
    """
    comparing = drift_schema(schema, max_label_drift)
    found, measured = [], []
    for split in (s for s in splits if s in baseline_splits):
        anomalies = tfdv.validate_statistics(
            load_split_statistics(statistics_uri, split),
            comparing,
            previous_statistics=load_split_statistics(baseline_uri, split),
        )
        source = f"{_split_dir(statistics_uri, split)} vs {_split_dir(baseline_uri, split)}"
        found.extend(f for f in _findings(anomalies, split, source)
                     if f.anomaly_type.startswith("COMPARATOR"))
        measured.extend(DriftMeasurement(split, m.value, m.threshold, baseline_uri)
                        for info in anomalies.drift_skew_info for m in info.drift_measurements)
    return found, sorted(measured, key=lambda m: m.split)


def statistics_summary(dataset) -> dict[str, Any]:
    """What two datasets must share to count as the same data: the example count, and each
    feature's byte sizes, value moments or category counts (TFDV's statistics of one split).
    The source path is left out: the same images ingested by an older ingest (without paths)
    or under other file names are the same data.

    New images almost never leave all of these equal (the mean encoded size alone moves);
    the same images ingested again, or the same span read again, always do.
    """
    summary: dict[str, Any] = {"examples": int(dataset.num_examples)}
    for feature in dataset.features:
        name = ".".join(feature.path.step) or feature.name
        if name == features.SOURCE_PATH_KEY:
            continue
        kind = feature.WhichOneof("stats")
        stats = getattr(feature, kind) if kind else None
        if kind == "bytes_stats":
            summary[name] = {"mean bytes": round(stats.avg_num_bytes, 4),
                             "min bytes": stats.min_num_bytes, "max bytes": stats.max_num_bytes,
                             "present": int(stats.common_stats.num_non_missing)}
        elif kind == "num_stats":
            summary[name] = {"mean": round(stats.mean, 6), "std": round(stats.std_dev, 6),
                             "min": stats.min, "max": stats.max}
        elif kind == "string_stats":
            summary[name] = {"counts": {b.label: int(b.sample_count)
                                        for b in stats.rank_histogram.buckets}}
    return summary


def statistics_differences(
    new: dict[str, Any], old: dict[str, Any], split: str, prefix: str = ""
) -> list[StatisticsDifference]:
    """Every statistic of two statistics_summary results that differs, one level per key."""
    found = []
    for key in sorted(set(new) | set(old)):
        a, b = new.get(key), old.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += statistics_differences(a, b, split, f"{prefix}{key} ")
        elif a != b:
            found.append(StatisticsDifference(split, f"{prefix}{key}", a, b))
    return found


def data_comparison(
    statistics_uri: str, baseline_uri: str, splits: list[str], baseline_splits: list[str],
    compared: str,
) -> DataComparison:
    """The statistics (statistics_summary) of every split in both that differ from the
    baseline's: the facts the Trainer's --skip-if-unchanged decides on.
    """
    differences = []
    for split in sorted(set(splits) & set(baseline_splits)):
        new = statistics_summary(load_split_statistics(statistics_uri, split).datasets[0])
        old = statistics_summary(load_split_statistics(baseline_uri, split).datasets[0])
        differences += statistics_differences(new, old, split)
    return DataComparison(compared, tuple(sorted(splits)), tuple(sorted(baseline_splits)),
                          tuple(differences))


def failure_message(findings: list[Finding], statistics_uri: str) -> tuple[Part, ...]:
    """The DataValidationError's message: the findings, then the settings that would let
    each kind of them through, as `Setting` parts that every runner names its own way.
    """
    types = {f.anomaly_type for f in findings}
    advice: list[Part] = [
        "Fix the data (or the curated schema in schema/, after review) and run again."]
    if types - {CLASS_MAP_CHANGED, WINDOW_CLASS_MAPS_DIFFER}:
        advice += [" To accept an anomaly type knowingly, list it in ",
                   Setting("allowed_anomaly_types"), "."]
    if CLASS_MAP_CHANGED in types:
        advice += [" To train a model with the new class map (blessed without a comparison "
                   "with the served one), use ", Setting("accept_new_classes"), "."]
    if WINDOW_CLASS_MAPS_DIFFER in types:
        advice += [" To train on the spans after the change, shorten the window with ",
                   Setting("span_window"), "."]
    return ("\n".join([
        f"data validation failed with {len(findings)} finding(s); Transform, Trainer and Pusher "
        "did not run:",
        *(f.line() for f in findings),
        f"statistics: {statistics_uri}",
        "",
    ]), *advice)


CLASS_MAP_CHANGED = "CLASS_MAP_CHANGED"
# The spans of a window (run --spans) have different class maps: never trainable together.
WINDOW_CLASS_MAPS_DIFFER = "WINDOW_CLASS_MAPS_DIFFER"


def comparison(span: int | None, baseline_span: int | None, production) -> str:
    """Which data the drift check compares, in words: spans where both have one."""
    new = f"span {span}" if span is not None else "this data"
    old = (f"span {baseline_span}" if baseline_span is not None
           else "the data")
    return (f"{new} with {old}, the training data of served version {production.version} "
            "(the last accepted data)")


def class_map_change(served: list[str], new: list[str]) -> str | None:
    """What changed between two class maps (label id = position), or None if nothing did."""
    if served == new:
        return None
    added = [n for n in new if n not in served]
    removed = [n for n in served if n not in new]
    parts = []
    if added:
        parts.append(f"added {added}")
    if removed:
        parts.append(f"removed {removed}")
    if len(added) == len(removed) == 1:
        parts.append(f"(renamed {removed[0]!r} -> {added[0]!r}?)")
    moved = [f"{name!r} {served.index(name)}->{new.index(name)}"
             for name in new if name in served and served.index(name) != new.index(name)]
    if moved:
        parts.append(f"ids that change: {', '.join(moved)}")
    return "; ".join(parts)


def class_map_record(data_root: str | None, production: ProductionModel | None) -> ClassMap:
    """The data's class map (dataset.json), the served model's (labels.txt), and the change."""
    if not data_root:
        return ClassMap()
    manifest = DatasetManifest.read(data_root)
    data = ClassMap(class_names=manifest.class_names if manifest else None,
                    class_names_source=DatasetManifest.path_in(data_root))
    if production is None or data.class_names is None:
        return data
    served = served_class_names(production.path)
    return dataclasses.replace(
        data, served_class_names=tuple(served) if served is not None else None,
        served_class_names_source=labels_path(production.path),
        change=class_map_change(served, list(data.class_names)) if served is not None else None)


def class_map_findings(record: ClassMap, production) -> list[Finding]:
    if record.change is None:
        return []
    return [Finding(
        "<all>", features.LABEL_KEY, CLASS_MAP_CHANGED,
        f"the class map differs from served version {production.version}'s: "
        f"{record.change}. Label ids would mean other classes than in the served model, so "
        "neither the comparison with it nor the drift check would mean anything. Restore the "
        "class folders, or accept the new class map",
        f"{record.class_names_source} vs {record.served_class_names_source}",
    )]


class DataGateSpec(ComponentSpec):
    PARAMETERS = {
        # JSON list of anomaly type names (e.g. "FEATURE_TYPE_LOW_FRACTION_PRESENT") to accept.
        "allowed_anomaly_types": ExecutionParameter(type=str),
        # Largest accepted L-infinity distance between label distributions; <= 0 turns it off.
        "max_label_drift": ExecutionParameter(type=float),
        # The Pusher's destination: the newest version there holds the baseline statistics.
        "push_destination": ExecutionParameter(type=pusher_pb2.PushDestination, optional=True),
        # The data root: its dataset.json holds the class map (label id -> name).
        "data_root": ExecutionParameter(type=str, optional=True),
        # Let a class map that differs from the served model's through (1) or stop it (0).
        "accept_new_classes": ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
        "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        "schema": ChannelParameter(type=standard_artifacts.Schema),
        # ExampleGen's output: its span says which span-N/dataset.json of a root of spans
        # holds the class map of the data being gated.
        "examples": ChannelParameter(type=standard_artifacts.Examples, optional=True),
    }
    OUTPUTS = {
        "validated_statistics": ChannelParameter(type=ValidatedStatistics),
    }


def span_window(examples: list[types.Artifact] | None) -> tuple[int | None, list[int] | None]:
    """The span ExampleGen read and its window (components/example_gen.py records both);
    (None, None) for a root without spans, where TFX's span 0 means none.
    """
    if not examples:
        return None, None
    span = (examples[0].get_int_custom_property("span")
            if examples[0].has_custom_property("span") else None)
    window = (json.loads(examples[0].get_string_custom_property(spans.WINDOW_PROPERTY))
              if examples[0].has_custom_property(spans.WINDOW_PROPERTY) else None)
    return (span, window) if window else (None, None)


def window_findings(root: str | None, window: list[int] | None) -> list[Finding]:
    """A window whose spans have different class maps: never trainable together."""
    mixed = spans.mixed_class_maps(root, window) if root and window and len(window) > 1 else None
    return [Finding("<window>", features.LABEL_KEY, WINDOW_CLASS_MAPS_DIFFER, mixed, root)
            ] if mixed else []


def compare_with_baseline(
    report: GateReport, production: ProductionModel, splits: list[str], schema_uri: str,
    max_drift: float,
) -> tuple[GateReport, list[Finding]]:
    """The data against the served version's training statistics: the label drift found, and
    the report with what was compared, the drift measured and the statistics that differ.
    """
    baseline = production.statistics
    stored = GateReport.read(baseline)
    baseline_span = stored.span if stored else None
    compared = comparison(report.span, baseline_span, production)
    baseline_splits = splits_in(baseline)
    drifted: list[Finding] = []
    measured: list[DriftMeasurement] = []
    if max_drift > 0:
        log.info("[gate] label drift: %s", compared)
        schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema_uri))
        found, measured = label_drift(report.statistics, baseline, splits, baseline_splits,
                                      schema, max_drift)
        drifted = [dataclasses.replace(f, source=f"{compared}: {f.source}") for f in found]
    return dataclasses.replace(
        report, baseline=baseline, baseline_version=production.version,
        baseline_span=baseline_span, drift_compared=compared, drift=tuple(measured),
        comparison=data_comparison(report.statistics, baseline, splits, baseline_splits,
                                   compared),
    ), drifted


def copy_statistics(statistics_uri: str, output_uri: str, splits: list[str]) -> None:
    """The accepted statistics into ValidatedStatistics (the Pusher stores them as a baseline)."""
    for split in splits:
        fileio.makedirs(_split_dir(output_uri, split))
        fileio.copy(os.path.join(_split_dir(statistics_uri, split), STATS_FILE),
                    os.path.join(_split_dir(output_uri, split), STATS_FILE), overwrite=True)


class Executor(base_executor.BaseExecutor):
    # The TFX executor interface, the same in every executor (`duplicates` pairs them).
    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        statistics = artifact_utils.get_single_instance(input_dict["statistics"])
        anomalies = artifact_utils.get_single_instance(input_dict["anomalies"])
        splits = artifact_utils.decode_split_names(statistics.split_names)
        production = production_model(push_base(exec_properties.get("push_destination")))
        root = exec_properties.get("data_root")
        span, window = span_window(input_dict.get("examples"))

        findings = schema_anomalies(
            anomalies.uri, artifact_utils.decode_split_names(anomalies.split_names))
        # The dataset.json with the class map: the root's, or the span's in a root of spans.
        class_map = class_map_record(spans.dataset_folder(root, span) if root else None,
                                     production)
        if not exec_properties.get("accept_new_classes"):
            findings += class_map_findings(class_map, production)
        findings += window_findings(root, window)
        report = GateReport(statistics=statistics.uri, span=span,
                            window_spans=tuple(window) if window else None, class_map=class_map)
        # A changed class map: label ids of two class maps, nothing to compare.
        if production is not None and production.statistics and class_map.change is None:
            report, drifted = compare_with_baseline(
                report, production, splits, artifact_utils.get_single_uri(input_dict["schema"]),
                float(exec_properties.get("max_label_drift") or 0.0))
            findings += drifted

        allowed = set(json.loads(exec_properties.get("allowed_anomaly_types") or "[]"))
        blocking = [f for f in findings
                    if f.anomaly_type not in allowed and not ingest_bookkeeping(f)]
        report = dataclasses.replace(
            report, accepted=tuple(f for f in findings if f not in blocking),
            rejected=tuple(blocking))
        if blocking:
            self._record_rejection(report)
            raise DataValidationError(*failure_message(blocking, statistics.uri))
        output = artifact_utils.get_single_instance(output_dict["validated_statistics"])
        copy_statistics(statistics.uri, output.uri, splits)
        report.write(output.uri)
        for name, value in report.artifact_properties().items():
            output.set_int_custom_property(name, value)

    def _record_rejection(self, report: GateReport) -> None:
        """The report of rejected data, in this execution's folder: a failed execution has no
        output artifact, and TFX removes its output folders (gate_report.execution_folder).
        """
        output_uri = self._context.executor_output_uri if self._context else None
        if output_uri:
            report.write(os.path.dirname(output_uri))


# TFX component boilerplate: the spec's channels and parameters passed through, the shape every
# component here has (`duplicates` pairs them; there is no logic to share).
class DataGate(base_component.BaseComponent):
    READS_PRODUCTION = True
    SPEC_CLASS = DataGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        statistics: types.BaseChannel,
        anomalies: types.BaseChannel,
        schema: types.BaseChannel,
        examples: types.BaseChannel | None = None,
        push_destination: pusher_pb2.PushDestination | Any = None,
        data_root: str | Any = None,
        accept_new_classes: bool = False,
        allowed_anomaly_types: list[str] | tuple[str, ...] = (),
        *,
        # No default here: PipelineConfig.max_label_drift is the one default, and the factory
        # always passes it, so a second default could only drift from it unnoticed.
        max_label_drift: float,
    ) -> None:
        unknown = sorted(set(allowed_anomaly_types) - set(anomalies_pb2.AnomalyInfo.Type.keys()))
        if unknown:
            raise BadInput(f"unknown anomaly types {unknown}; see "
                           "tensorflow_metadata anomalies.proto AnomalyInfo.Type")
        super().__init__(spec=DataGateSpec(
            statistics=statistics,
            anomalies=anomalies,
            schema=schema,
            examples=examples,
            push_destination=push_destination,
            data_root=data_root,
            accept_new_classes=int(accept_new_classes),
            allowed_anomaly_types=json.dumps(sorted(allowed_anomaly_types)),
            max_label_drift=float(max_label_drift),
            validated_statistics=types.Channel(type=ValidatedStatistics),
        ))
