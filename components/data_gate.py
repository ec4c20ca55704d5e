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

from ingest import spans
from schema import features
from schema.errors import BadInput, Explained, Part, Setting
from serving.model_dir import (
    labels_path,
    production_model,
    push_base,
    read_json,
    served_class_names,
)

log = logging.getLogger(__name__)
STATS_FILE = "FeatureStats.pb"
ANOMALIES_FILE = "SchemaDiff.pb"
REPORT_FILE = "gate.json"


class ValidatedStatistics(artifact.Artifact):
    """Statistics of data that passed the gate."""

    # KFP v2 wants custom type names of the form "<lowercase namespace>.<TypeName>".
    TYPE_NAME = "tfx_image.ValidatedStatistics"
    # No PROPERTIES (KFP v2 allows none on custom types): the splits are its Split-* folders.


class DataValidationError(Explained, RuntimeError):
    """The data failed the gate (the CLI exits 3); the message lists every finding and the
    settings that would let them through.
    """


@dataclasses.dataclass(frozen=True)
class Finding:
    split: str
    feature: str
    anomaly_type: str
    description: str
    source: str

    def line(self) -> str:
        return (f"  - split {self.split!r}, feature {self.feature!r}: {self.anomaly_type}: "
                f"{self.description} ({self.source})")


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


@dataclasses.dataclass(frozen=True)
class DriftMeasurement:
    split: str
    distance: float  # L-infinity distance between the two label distributions
    threshold: float
    baseline: str


def _compare_labels(
    statistics_uri: str, baseline_uri: str, splits: list[str], baseline_splits: list[str],
    schema: schema_pb2.Schema, max_label_drift: float,
):
    """(split, TFDV anomalies, source) of each split present in both statistics."""
    comparing = drift_schema(schema, max_label_drift)
    for split in splits:
        if split not in baseline_splits:
            continue
        anomalies = tfdv.validate_statistics(
            load_split_statistics(statistics_uri, split),
            comparing,
            previous_statistics=load_split_statistics(baseline_uri, split),
        )
        yield split, anomalies, f"{_split_dir(statistics_uri, split)} vs " \
                                f"{_split_dir(baseline_uri, split)}"


def label_drift(
    statistics_uri: str,
    baseline_uri: str,
    splits: list[str],
    baseline_splits: list[str],
    schema: schema_pb2.Schema,
    max_label_drift: float,
) -> list[Finding]:
    """Each split's label distribution against the same split of the baseline."""
    found = []
    for split, anomalies, source in _compare_labels(
        statistics_uri, baseline_uri, splits, baseline_splits, schema, max_label_drift
    ):
        found.extend(f for f in _findings(anomalies, split, source)
                     if f.anomaly_type.startswith("COMPARATOR"))
    return found


def label_drift_measurements(
    statistics_uri: str, baseline_uri: str, schema: schema_pb2.Schema, max_label_drift: float
) -> list[DriftMeasurement]:
    """The distance TFDV measured for each split, whether or not it crossed the threshold."""
    measured = []
    for split, anomalies, _ in _compare_labels(
        statistics_uri, baseline_uri, splits_in(statistics_uri), splits_in(baseline_uri),
        schema, max_label_drift,
    ):
        for info in anomalies.drift_skew_info:
            for m in info.drift_measurements:
                measured.append(DriftMeasurement(split, m.value, m.threshold, baseline_uri))
    return measured


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


def _differences(new: dict[str, Any], old: dict[str, Any], prefix: str) -> list[str]:
    found = []
    for key in sorted(set(new) | set(old)):
        a, b = new.get(key), old.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key} ")
        elif a != b:
            found.append(f"{prefix}{key} {a} (was {b})")
    return found


def unchanged_verdict(
    statistics_uri: str, baseline_uri: str, splits: list[str], baseline_splits: list[str],
    compared: str,
) -> dict[str, Any]:
    """Whether the data's statistics equal the baseline's in every split (statistics_summary)."""
    differences = []
    if sorted(splits) != sorted(baseline_splits):
        differences.append(f"splits {sorted(splits)} (was {sorted(baseline_splits)})")
    for split in sorted(set(splits) & set(baseline_splits)):
        new = statistics_summary(load_split_statistics(statistics_uri, split).datasets[0])
        old = statistics_summary(load_split_statistics(baseline_uri, split).datasets[0])
        differences += _differences(new, old, f"{split}: ")
    if differences:
        shown = "; ".join(differences[:4]) + ("; ..." if len(differences) > 4 else "")
        return {"unchanged": False, "why": f"{compared}: the statistics differ: {shown}"}
    return {"unchanged": True, "why": f"{compared}: the statistics are equal in every split "
                                      "(example counts, image byte sizes, class counts)"}


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


def baseline_record(baseline_uri: str) -> dict[str, Any]:
    """The gate report stored with a baseline's statistics (the Pusher copies it); {} if none."""
    return read_json(os.path.join(baseline_uri, REPORT_FILE)) or {}


def comparison(span: int | None, baseline_span: int | None, production) -> str:
    """Which data the drift check compares, in words: spans where both have one."""
    new = f"span {span}" if span is not None else "this data"
    old = (f"span {baseline_span}" if baseline_span is not None
           else "the data")
    return (f"{new} with {old}, the training data of served version {production.version} "
            "(the last accepted data)")


def read_class_names(path: str) -> list[str] | None:
    """Class names, one per line (labels.txt), or under "class_names" (ingest's dataset.json)."""
    if not fileio.exists(path):
        return None
    with fileio.open(path, "rb") as f:
        text = f.read().decode("utf-8")
    if path.endswith(".json"):
        return list(json.loads(text)["class_names"])
    return text.splitlines()


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


def class_map_record(data_root: str | None, production) -> dict[str, Any]:
    """The data's class map (dataset.json), the served model's (labels.txt), and the change."""
    record: dict[str, Any] = {"class_names": None, "served_class_names": None, "change": None,
                              "class_names_source": None, "served_class_names_source": None}
    if not data_root:
        return record
    record["class_names_source"] = os.path.join(data_root, "dataset.json")
    record["class_names"] = read_class_names(record["class_names_source"])
    if production is None or record["class_names"] is None:
        return record
    record["served_class_names_source"] = labels_path(production.path)
    record["served_class_names"] = served_class_names(production.path)
    if record["served_class_names"] is not None:
        record["change"] = class_map_change(record["served_class_names"], record["class_names"])
    return record


def class_map_findings(record: dict[str, Any], production) -> list[Finding]:
    if record["change"] is None:
        return []
    return [Finding(
        "<all>", features.LABEL_KEY, CLASS_MAP_CHANGED,
        f"the class map differs from served version {production.version}'s: "
        f"{record['change']}. Label ids would mean other classes than in the served model, so "
        "neither the comparison with it nor the drift check would mean anything. Restore the "
        "class folders, or accept the new class map",
        f"{record['class_names_source']} vs {record['served_class_names_source']}",
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
        schema_dir = artifact_utils.get_single_uri(input_dict["schema"])
        schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema_dir))
        splits = artifact_utils.decode_split_names(statistics.split_names)
        allowed = set(json.loads(exec_properties.get("allowed_anomaly_types") or "[]"))

        findings = schema_anomalies(
            anomalies.uri, artifact_utils.decode_split_names(anomalies.split_names)
        )
        production = production_model(push_base(exec_properties.get("push_destination")))
        root = exec_properties.get("data_root")
        span = window = None
        if input_dict.get("examples"):
            # ExampleGen records the span it read, and the window (components/example_gen.py).
            examples = input_dict["examples"][0]
            if examples.has_custom_property("span"):
                span = examples.get_int_custom_property("span")
            if examples.has_custom_property(spans.WINDOW_PROPERTY):
                window = json.loads(examples.get_string_custom_property(spans.WINDOW_PROPERTY))
            if not window:
                span = None  # a root without spans: TFX's span 0 means none
        # The dataset.json with the class map: the root's, or the span's in a root of spans.
        class_map = class_map_record(spans.dataset_folder(root, span) if root else None,
                                     production)
        if not exec_properties.get("accept_new_classes"):
            findings += class_map_findings(class_map, production)
        mixed = (spans.mixed_class_maps(root, window)
                 if root and window and len(window) > 1 else None)
        if mixed:
            findings.append(Finding("<window>", features.LABEL_KEY, WINDOW_CLASS_MAPS_DIFFER,
                                    mixed, root))
        baseline = production.statistics if production else None
        if class_map["change"] is not None:
            baseline = None  # label ids of two class maps: nothing to compare
        baseline_span = compared = unchanged = None
        if baseline:
            baseline_span = baseline_record(baseline).get("span")
            compared = comparison(span, baseline_span, production)
            baseline_splits = splits_in(baseline)
            max_drift = float(exec_properties.get("max_label_drift") or 0.0)
            if max_drift > 0:
                log.info("[gate] label drift: %s", compared)
                findings += [dataclasses.replace(f, source=f"{compared}: {f.source}")
                             for f in label_drift(statistics.uri, baseline, splits,
                                                  baseline_splits, schema, max_drift)]
            unchanged = unchanged_verdict(statistics.uri, baseline, splits, baseline_splits,
                                          compared)
        blocking = [f for f in findings
                    if f.anomaly_type not in allowed and not ingest_bookkeeping(f)]
        if blocking:
            raise DataValidationError(*failure_message(blocking, statistics.uri))

        output = artifact_utils.get_single_instance(output_dict["validated_statistics"])
        for split in splits:
            fileio.makedirs(_split_dir(output.uri, split))
            fileio.copy(os.path.join(_split_dir(statistics.uri, split), STATS_FILE),
                        os.path.join(_split_dir(output.uri, split), STATS_FILE), overwrite=True)
        report = {
            "statistics": statistics.uri,
            # The span these statistics are of, and the window the Trainer fits.
            "span": span,
            "window_spans": window,
            "baseline": baseline,
            "baseline_version": production.version if production else None,
            "baseline_span": baseline_span,
            "drift_compared": compared,
            # Whether the data equals the served model's training data (--skip-if-unchanged).
            "unchanged": unchanged,
            "accepted": [dataclasses.asdict(f) for f in findings],
            # The class map of the accepted data, and how it differs from the served one's.
            **class_map,
        }
        with fileio.open(os.path.join(output.uri, REPORT_FILE), "w") as f:
            json.dump(report, f, indent=2)


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
