"""What a pipeline run did, read back from ML Metadata and the Evaluator's output."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

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
    eval_examples: int | None = None
    accuracy: float | None = None
    baseline_accuracy: float | None = None
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


def _outputs(
    store: metadata_store.MetadataStore, execution_id: int, type_names: dict[int, str]
) -> dict[str, metadata_store_pb2.Artifact]:
    """Output artifacts of an execution, keyed by artifact type name."""
    events = store.get_events_by_execution_ids([execution_id])
    ids = [e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT]
    return {type_names[a.type_id]: a for a in store.get_artifacts_by_id(ids)}


def _property(artifact: metadata_store_pb2.Artifact, name: str):
    value = artifact.custom_properties.get(name)
    kind = value.WhichOneof("value") if value is not None else None
    return getattr(value, kind) if kind else None


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


def list_runs(metadata_path: str, pipeline_name: str) -> list[RunSummary]:
    """Every run of the pipeline in the store, oldest first."""
    runs = _run_contexts(open_store(metadata_path), pipeline_name)
    return [summarize_run(metadata_path, pipeline_name, run.name) for run in runs]


def summarize_run(
    metadata_path: str, pipeline_name: str, run_id: str | None = None
) -> RunSummary:
    """The latest (or the given) run's per-component state and time, metrics and push."""
    store = open_store(metadata_path)
    runs = _run_contexts(store, pipeline_name)
    if run_id is not None:
        runs = [c for c in runs if c.name == run_id]
    if not runs:
        raise LookupError(f"no runs of pipeline {pipeline_name!r} in {metadata_path}")
    run = runs[-1]
    summary = RunSummary(pipeline_name=pipeline_name, run_id=run.name, components=[])
    prefix = f"{pipeline_name}."
    executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
    type_names = {t.id: t.name for t in store.get_artifact_types()}
    for execution in executions:
        name = _node_name(store, execution.id, prefix)
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1e3
        summary.components.append(
            ComponentRun(name, _STATE_NAMES.get(execution.last_known_state, "unknown"), seconds)
        )
        outputs = _outputs(store, execution.id, type_names)
        if "ModelEvaluation" in outputs:
            summary.evaluation_uri = outputs["ModelEvaluation"].uri
        if "ModelBlessing" in outputs:
            summary.blessed = bool(_property(outputs["ModelBlessing"], "blessed"))
        if "PushedModel" in outputs:
            pushed = outputs["PushedModel"]
            summary.pushed = bool(_property(pushed, "pushed"))
            summary.pushed_destination = _property(pushed, "pushed_destination") or None
            summary.already_served = bool(_property(pushed, "already_served"))
        if "Model" in outputs:
            summary.model_uri = outputs["Model"].uri
        if "Examples" in outputs:
            summary.examples_uri = outputs["Examples"].uri
        if "ModelRun" in outputs:
            summary.tensorboard_dir = outputs["ModelRun"].uri
    if summary.evaluation_uri:
        _read_metrics(summary, summary.evaluation_uri)
    return summary


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
    yield (
        f"Evaluation ({summary.eval_examples or '?'} eval examples, serving_default signature): "
        f"accuracy {_fmt(summary.accuracy)}"
    )
    if summary.baseline_accuracy is None:
        yield "  baseline: none (no earlier blessed model)"
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
