"""What a pipeline run did, read back from ML Metadata and the Evaluator's output."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from typing import Any

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from ingest.dataset import EVAL
from ingest.spans import WINDOW_PROPERTY

_STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: "executed",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.CANCELED: "canceled",
    metadata_store_pb2.Execution.NEW: "new",
}
_ACCURACY = "sparse_categorical_accuracy"


@dataclasses.dataclass
class ComponentRun:
    name: str
    state: str
    seconds: float


@dataclasses.dataclass
class RunSummary:
    pipeline_name: str
    run_id: str
    components: list[ComponentRun]
    # The split the Evaluator scored (`accuracy`, the baseline's, per class, the blessing):
    # "test", or "eval" for data without a test split.
    evaluation_split: str | None = None
    eval_examples: int | None = None
    accuracy: float | None = None
    # The Trainer's last accuracy on the eval split (early stopping's), without test-time
    # augmentation: a selection score, not the reported one.
    trainer_eval_accuracy: float | None = None
    recipe: str | None = None
    # The pretrained backbone and its weights' provenance (trainer/backbones/registry.py
    # WeightsSource); None for the scratch recipes.
    backbone: dict[str, Any] | None = None
    # The span(s) ExampleGen read, for data roots of spans (ingest/spans.py); None otherwise.
    spans: list[int] | None = None
    # components/trainer.py's decision when --skip-if-unchanged was given; None otherwise.
    skip_if_unchanged: dict[str, Any] | None = None
    # How the Trainer held its examples: in memory or streamed, and why (trainer/data.py).
    training_input: dict | None = None
    baseline_accuracy: float | None = None
    # Why there is no baseline accuracy, when there is none (components/evaluator.py).
    baseline_note: str | None = None
    per_class_accuracy: dict[str, float] = dataclasses.field(default_factory=dict)
    blessed: bool | None = None
    pushed: bool | None = None
    pushed_destination: str | None = None
    # The newest served version already held this model: no new version was created.
    already_served: bool = False
    model_uri: str | None = None
    examples_uri: str | None = None
    tensorboard_dir: str | None = None
    evaluation_uri: str | None = None
    report_files: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def failed_components(self) -> list[str]:
        return [c.name for c in self.components if c.state == "failed"]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def open_store(metadata_path: str, readonly: bool = True) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
        if readonly
        else metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    return metadata_store.MetadataStore(config)


def _run_contexts(
    store: metadata_store.MetadataStore, pipeline_name: str
) -> list[metadata_store_pb2.Context]:
    """The pipeline's runs, oldest first (TFX links each pipeline_run to its pipeline context)."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return []
    runs = [
        c for c in store.get_children_contexts_by_context(pipeline.id) if c.type == "pipeline_run"
    ]
    return sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id))


def _node_name(store: metadata_store.MetadataStore, execution_id: int, prefix: str) -> str:
    for context in store.get_contexts_by_execution(execution_id):
        if context.type == "node":
            return context.name.removeprefix(prefix)
    return f"execution-{execution_id}"


def run_ids(store: metadata_store.MetadataStore, pipeline_name: str) -> frozenset[str]:
    """The ids of the pipeline's runs so far."""
    return frozenset(c.name for c in _run_contexts(store, pipeline_name))


def execution_states(
    store: metadata_store.MetadataStore, pipeline_name: str, earlier_runs: frozenset[str]
) -> list[tuple[str, str, float]]:
    """(node, state, seconds) of each execution of the newest run not in `earlier_runs`.

    State is ML Metadata's (NEW, RUNNING, COMPLETE, CACHED, FAILED, CANCELED); seconds run from
    the execution's registration to its last update. [] until the run has registered one.
    """
    runs = [c for c in _run_contexts(store, pipeline_name) if c.name not in earlier_runs]
    if not runs:
        return []
    prefix = f"{pipeline_name}."
    states = []
    for execution in sorted(store.get_executions_by_context(runs[-1].id), key=lambda e: e.id):
        seconds = max(0, execution.last_update_time_since_epoch
                      - execution.create_time_since_epoch) / 1000
        states.append((_node_name(store, execution.id, prefix),
                       metadata_store_pb2.Execution.State.Name(execution.last_known_state),
                       seconds))
    return states


def artifacts_by_key(
    store: metadata_store.MetadataStore, execution_id: int, event_type: int
) -> dict[str, list[metadata_store_pb2.Artifact]]:
    """Input or output key -> artifacts of an execution, from its MLMD events."""
    events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type == event_type]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    found: dict[str, list[metadata_store_pb2.Artifact]] = {}
    for event in events:
        # One event per artifact; its path names the key it was bound to.
        for step in event.path.steps:
            if step.HasField("key"):
                found.setdefault(step.key, []).append(artifacts[event.artifact_id])
    return found


def value(message, name: str) -> Any:
    """A property or custom property of an artifact or execution, None when unset."""
    field = message.custom_properties.get(name) or message.properties.get(name)
    kind = field.WhichOneof("value") if field is not None else None
    return getattr(field, kind) if kind else None


@dataclasses.dataclass
class NodeRecord:
    """One component's execution in a run, with its artifacts by input/output key."""

    name: str
    execution: metadata_store_pb2.Execution
    inputs: dict[str, list[metadata_store_pb2.Artifact]]
    outputs: dict[str, list[metadata_store_pb2.Artifact]]

    @property
    def state(self) -> str:
        return _STATE_NAMES.get(self.execution.last_known_state, "unknown")

    @property
    def seconds(self) -> float:
        e = self.execution
        return (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1e3

    def output(self, key: str) -> metadata_store_pb2.Artifact | None:
        found = self.outputs.get(key)
        return found[0] if found else None

    def input(self, key: str) -> metadata_store_pb2.Artifact | None:
        found = self.inputs.get(key)
        return found[0] if found else None


def run_nodes(
    metadata_path: str, pipeline_name: str, run_id: str | None = None
) -> tuple[str, dict[str, NodeRecord]]:
    """(run id, node name -> record) of the latest or the given run, in execution order."""
    store = open_store(metadata_path)
    runs = _run_contexts(store, pipeline_name)
    if run_id is not None:
        runs = [c for c in runs if c.name == run_id]
    if not runs:
        wanted = f"run {run_id!r} of" if run_id else "runs of"
        raise LookupError(f"no {wanted} pipeline {pipeline_name!r} in {metadata_path}")
    run = runs[-1]
    prefix = f"{pipeline_name}."
    nodes = {}
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        name = _node_name(store, execution.id, prefix)
        nodes[name] = NodeRecord(
            name, execution,
            artifacts_by_key(store, execution.id, metadata_store_pb2.Event.INPUT),
            artifacts_by_key(store, execution.id, metadata_store_pb2.Event.OUTPUT),
        )
    return run.name, nodes


def _read_metrics(summary: RunSummary, evaluation_uri: str) -> None:
    import tensorflow_model_analysis as tfma

    for metrics in tfma.load_metrics(evaluation_uri):
        keys = metrics.slice_key.single_slice_keys
        for kv in metrics.metric_keys_and_values:
            if kv.key.is_diff or not kv.value.HasField("double_value"):
                continue
            value = kv.value.double_value.value
            baseline = kv.key.model_name == "baseline"
            if not keys:
                if kv.key.name == _ACCURACY:
                    if baseline:
                        summary.baseline_accuracy = value
                    else:
                        summary.accuracy = value
                elif kv.key.name == "example_count" and not baseline:
                    summary.eval_examples = int(value)
            elif len(keys) == 1 and kv.key.name == _ACCURACY and not baseline:
                key = keys[0]
                label = key.int64_value if key.HasField("int64_value") else key.bytes_value
                summary.per_class_accuracy[str(label)] = value
    summary.per_class_accuracy = dict(
        sorted(summary.per_class_accuracy.items(), key=lambda kv: int(kv[0]))
    )


def training_record(model_run_uri: str) -> dict[str, Any] | None:
    """The Trainer's record (config, history, timings) in its model_run; None if unreadable."""
    from trainer.config import HISTORY_FILE

    try:
        with open(os.path.join(model_run_uri, HISTORY_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def list_runs(metadata_path: str, pipeline_name: str) -> list[RunSummary]:
    """Every run of the pipeline in the store, oldest first."""
    runs = _run_contexts(open_store(metadata_path), pipeline_name)
    return [summarize_run(metadata_path, pipeline_name, run.name) for run in runs]


def summarize_run(
    metadata_path: str, pipeline_name: str, run_id: str | None = None
) -> RunSummary:
    """The latest (or the given) run's per-component state and time, metrics and push."""
    return summary_of(pipeline_name, *run_nodes(metadata_path, pipeline_name, run_id))


def summary_of(pipeline_name: str, run_id: str, nodes: dict[str, NodeRecord]) -> RunSummary:
    summary = RunSummary(pipeline_name=pipeline_name, run_id=run_id, components=[])
    for node in nodes.values():
        summary.components.append(ComponentRun(node.name, node.state, node.seconds))
        outputs = {a.type: a for found in node.outputs.values() for a in found}
        if "ModelEvaluation" in outputs:
            summary.evaluation_uri = outputs["ModelEvaluation"].uri
        if "ModelBlessing" in outputs:
            summary.blessed = bool(value(outputs["ModelBlessing"], "blessed"))
        if "PushedModel" in outputs:
            pushed = outputs["PushedModel"]
            summary.pushed = bool(value(pushed, "pushed"))
            summary.pushed_destination = value(pushed, "pushed_destination") or None
            summary.already_served = bool(value(pushed, "already_served"))
        if "Model" in outputs:
            summary.model_uri = outputs["Model"].uri
        if "Examples" in outputs:
            summary.examples_uri = outputs["Examples"].uri
            # ExampleGen records the spans it read (components/example_gen.py).
            window = value(outputs["Examples"], WINDOW_PROPERTY)
            if window:
                summary.spans = [int(n) for n in json.loads(window)]
        if "ModelRun" in outputs:
            summary.tensorboard_dir = outputs["ModelRun"].uri
            record = training_record(summary.tensorboard_dir) or {}
            summary.trainer_eval_accuracy = record.get("final_eval_accuracy")
            summary.recipe = record.get("config", {}).get("recipe")
            summary.backbone = (record.get("transfer") or {}).get("backbone")
            summary.training_input = record.get("input")
            summary.skip_if_unchanged = record.get("skip_if_unchanged")
        if node.name == "Evaluator":
            splits = json.loads(value(node.execution, "example_splits") or "null") or [EVAL]
            summary.evaluation_split = splits[0]
    if summary.evaluation_uri:
        _read_metrics(summary, summary.evaluation_uri)
        summary.baseline_note = _baseline_note(summary.evaluation_uri)
    return summary


def _baseline_note(evaluation_uri: str) -> str | None:
    from serving.model_dir import read_provenance

    provenance = read_provenance(evaluation_uri) or {}
    if provenance.get("class_map_changed"):
        return "new class map: no baseline"
    if provenance.get("baseline_is_candidate"):
        return "the served version is this model: no comparison"
    if provenance and provenance.get("production") is None:
        return "no version served yet"
    return None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_summary(
    summary: RunSummary, min_accuracy: float, max_regression: float
) -> Iterable[str]:
    total = sum(c.seconds for c in summary.components)
    yield f"Pipeline {summary.pipeline_name}, run {summary.run_id}: {total:.0f}s in components"
    yield f"  {'component':<32}{'state':<10}{'seconds':>8}"
    for c in summary.components:
        yield f"  {c.name:<32}{c.state:<10}{c.seconds:>8.1f}"
    split = summary.evaluation_split or "eval"
    yield (
        f"Evaluation on the {split} split ({summary.eval_examples or '?'} examples, "
        f"serving_default signature): accuracy {_fmt(summary.accuracy)}"
    )
    if split != "test":
        yield ("  warning: no test split, so this is the split early stopping chose on; add a "
               "test/ folder for an untouched estimate")
    if summary.trainer_eval_accuracy is not None:
        yield (f"  training: recipe {summary.recipe}, final accuracy on the eval split "
               f"(early stopping's) {_fmt(summary.trainer_eval_accuracy)}")
    if summary.backbone:
        yield f"  backbone: {backbone_text(summary.backbone)}"
    if summary.skip_if_unchanged:
        decision = summary.skip_if_unchanged
        verb = (f"skipped, served version {decision.get('version')} handed on"
                if decision.get("skip") else "trained")
        yield f"  --skip-if-unchanged: {verb}: {decision.get('why')}"
    if summary.training_input:
        yield f"  training input: {summary.training_input.get('reason')}"
    if summary.baseline_accuracy is None:
        yield f"  baseline: none ({summary.baseline_note or 'no version served yet'})"
    else:
        change = (summary.accuracy or 0) - summary.baseline_accuracy
        yield f"  baseline accuracy {_fmt(summary.baseline_accuracy)} (change {change:+.4f})"
    if summary.per_class_accuracy:
        per_class = ", ".join(f"{k}: {v:.2f}" for k, v in summary.per_class_accuracy.items())
        yield f"  per class: {per_class}"
    verdict = {True: "BLESSED", False: "NOT blessed", None: "not evaluated"}[summary.blessed]
    yield (
        f"  thresholds: accuracy >= {min_accuracy}, regression <= {max_regression} "
        f"-> {verdict}"
    )
    if summary.pushed and summary.already_served:
        yield f"Already served, not pushed again: {summary.pushed_destination}"
    elif summary.pushed:
        yield f"Pushed: {summary.pushed_destination}"
    elif summary.pushed is False:
        yield "Not pushed: the candidate was not blessed; the serving directory is unchanged."
    if summary.tensorboard_dir:
        yield f"TensorBoard logs and training curves: {summary.tensorboard_dir}"


def backbone_text(backbone: dict[str, Any]) -> str:
    """One line: the network, where its weights came from, their digest and licence."""
    digest = f", sha256 {backbone['sha256'][:12]}..." if backbone.get("sha256") else ""
    return (f"{backbone.get('backbone')}, weights {backbone.get('origin')}{digest}; licence "
            f"{backbone.get('licence')}")
