"""What a pipeline run did, read back from ML Metadata and the Evaluator's output."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from ingest.dataset import EVAL
from ingest.manifest import DatasetManifest
from ingest.spans import WINDOW_PROPERTY
from pipeline.blessing import BlessingRule, percent
from schema.errors import Setting, neutral_name
from schema.records import as_data
from trainer.backbones.provenance import WeightsSource
from trainer.memory import human
from trainer.record import SkipDecision, TrainingInput, TrainingRecord
from trainer.tuning import TuningRecord, trials_text

if TYPE_CHECKING:  # serving/ imports TFX's fileio: loaded where a record is read
    from serving.model_dir import EvaluationRecord
    from serving.new_model import NewModel
    from serving.tflite import TfliteEvaluation

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


@dataclasses.dataclass(frozen=True)
class InferenceOutcome:
    """What the BulkInferrer stage scored (components/bulk_inferrer.py): the folder, the
    version that scored it (None: no version was served), the rows written and the bad files
    skipped, the predictions file and its note.
    """

    data: str | None
    version: int | None
    rows: int
    bad: int
    predictions: str
    note: str | None

    @classmethod
    def of(cls, result: metadata_store_pb2.Artifact) -> InferenceOutcome:
        from components.bulk_inferrer import (
            BAD_PROPERTY,
            DATA_PROPERTY,
            NOTE_PROPERTY,
            ROWS_PROPERTY,
            VERSION_PROPERTY,
            predictions_path,
        )

        return cls(data=value(result, DATA_PROPERTY), version=value(result, VERSION_PROPERTY),
                   rows=value(result, ROWS_PROPERTY) or 0, bad=value(result, BAD_PROPERTY) or 0,
                   predictions=predictions_path(result.uri), note=value(result, NOTE_PROPERTY))

    def text(self) -> str:
        if self.version is None:
            return f"Batch inference of {self.data}: {self.note or 'nothing scored'}"
        bad = f", {self.bad} bad file(s) skipped" if self.bad else ""
        return (f"Batch inference: {self.rows} images of {self.data} scored with version "
                f"{self.version}{bad}: {self.predictions}")


@dataclasses.dataclass
class RunSummary:
    pipeline_name: str
    run_id: str
    components: list[ComponentRun]
    # What was trained on, and its classes by label id (the report's, class_names_of).
    data_root: str | None = None
    class_names: list[str] = dataclasses.field(default_factory=list)
    # The model's folder name under the serving dir (the Evaluator's push destination).
    model_name: str | None = None
    # The split the Evaluator scored (`accuracy`, the baseline's, per class, the blessing):
    # "test", or "eval" for data without a test split.
    evaluation_split: str | None = None
    eval_examples: int | None = None
    accuracy: float | None = None
    # The Trainer's last accuracy on the eval split (early stopping's), without test-time
    # augmentation: a selection score, not the reported one.
    trainer_eval_accuracy: float | None = None
    refit: bool = False  # the Trainer trained on eval too (data.refit)
    recipe: str | None = None
    epochs_run: int | None = None
    members: int = 1  # networks in the model (model.members)
    # The pretrained backbone and its weights' provenance (the training record's copy of the
    # model's backbone.json); None for the scratch recipes.
    backbone: WeightsSource | None = None
    # The span(s) ExampleGen read, for data roots of spans (ingest/spans.py); None otherwise.
    spans: list[int] | None = None
    # components/trainer.py's decision when --skip-if-unchanged was given; None otherwise.
    skip_if_unchanged: SkipDecision | None = None
    # How the Trainer held its examples: in memory or streamed, and why (trainer/data.py).
    training_input: TrainingInput | None = None
    # The Tuner's trials (trainer/tuning.py) when the run tuned; None otherwise.
    tuning: TuningRecord | None = None
    baseline_accuracy: float | None = None
    # The served version when the run started (the baseline, unless `baseline_note` says why
    # not); None when nothing was served.
    baseline_version: int | None = None
    # Why there is no baseline accuracy, when there is none (components/evaluator.py).
    baseline_note: str | None = None
    # When the model directory held no version yet (serving/model_dir.py).
    new_model: NewModel | None = None
    # Label id -> accuracy on the evaluation split; `named_per_class_accuracy` names them.
    per_class_accuracy: dict[str, float] = dataclasses.field(default_factory=dict)
    # The thresholds and how the accuracy bar was set: pipeline/blessing.py's record.
    blessing_rule: BlessingRule | None = None
    blessed: bool | None = None
    pushed: bool | None = None
    pushed_destination: str | None = None
    pushed_version: int | None = None
    # The newest served version already held this model: no new version was created.
    already_served: bool = False
    # The Evaluator's score of the model's TFLite file and its verdict (serving/tflite.py);
    # None when the run made no TFLite model or its evaluation is gone.
    tflite: TfliteEvaluation | None = None
    # Whether the Pusher pushed the TFLite file with the version, and why (its PushedModel's
    # tflite_pushed and tflite_note); None when it pushed no version.
    tflite_pushed: bool | None = None
    tflite_note: str | None = None
    # The BulkInferrer stage's outcome (run --infer-data); None when the run had none.
    inference: InferenceOutcome | None = None
    model_uri: str | None = None
    examples_uri: str | None = None
    tensorboard_dir: str | None = None
    evaluation_uri: str | None = None
    # Why the Evaluator's output cannot be read now (deleted since the run); None when it can.
    evaluation_missing: str | None = None
    report_files: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def failed_components(self) -> list[str]:
        return [c.name for c in self.components if c.state == "failed"]

    def named_per_class_accuracy(self) -> dict[str, float]:
        """Class name -> accuracy, in label order (ids without a known name as #id)."""
        return {class_name(self.class_names, label): accuracy
                for label, accuracy in self.per_class_accuracy.items()}

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        # The records' parts as they are stored (JSON names, unset fields left out).
        for name in ("skip_if_unchanged", "training_input", "tflite", "tuning"):
            data[name] = as_data(getattr(self, name))
        data["tflite_outcome"] = self.tflite_outcome()
        return json.dumps(data, indent=2)

    def tflite_outcome(self) -> str:
        """The TFLite model in a few words, as `runs` lists it: "dynamic 97.1 % pushed",
        "dynamic 91.0 % not pushed", "none" (the Evaluator scored no TFLite model: the
        Pusher's note says why), "-" (no evaluation ran).
        """
        if self.evaluation_uri is None:
            return "-"
        if self.tflite is None:
            return "none"
        verdict = "pushed" if self.tflite_pushed else "not pushed"
        return f"{self.tflite.mode} {percent(self.tflite.accuracy)} {verdict}"


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


class Node(enum.StrEnum):
    """The components the summary and the report read, by their node ids in ML Metadata (the
    ids pipeline/factory.py gives them; tests/test_pipeline_e2e.py checks a run has each).
    """

    EXAMPLE_GEN = "ImportExampleGen"
    STATISTICS_GEN = "StatisticsGen"
    EXAMPLE_VALIDATOR = "ExampleValidator"
    DATA_GATE = "DataGate"
    TUNER = "Tuner"
    TRAINER = "Trainer"
    EVALUATOR = "Evaluator"
    PUSHER = "Pusher"


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
            summary.pushed_version = _int_or_none(value(pushed, "pushed_version"))
            summary.already_served = bool(value(pushed, "already_served"))
            tflite_pushed = value(pushed, "tflite_pushed")
            summary.tflite_pushed = None if tflite_pushed is None else bool(tflite_pushed)
            summary.tflite_note = value(pushed, "tflite_note") or None
        if "InferenceResult" in outputs:
            summary.inference = InferenceOutcome.of(outputs["InferenceResult"])
        if "Model" in outputs:
            summary.model_uri = outputs["Model"].uri
        if "Examples" in outputs:
            summary.examples_uri = outputs["Examples"].uri
            summary.data_root = value(node.execution, "input_base") or None
            # ExampleGen records the spans it read (components/example_gen.py).
            window = value(outputs["Examples"], WINDOW_PROPERTY)
            if window:
                summary.spans = [int(n) for n in json.loads(window)]
        if "TunerResults" in outputs:
            summary.tuning = TuningRecord.read(outputs["TunerResults"].uri)
        if "ModelRun" in outputs:
            summary.tensorboard_dir = outputs["ModelRun"].uri
            record = TrainingRecord.read(summary.tensorboard_dir)
            summary.epochs_run = record.epochs_run if record else 0
            summary.members = len(record.members) if record and record.members else 1
            if record is not None:
                summary.trainer_eval_accuracy = record.final_eval_accuracy
                summary.refit = record.refit
                summary.recipe, _ = record.recipe()
                summary.backbone = record.transfer.backbone if record.transfer else None
                summary.training_input = record.input
                summary.skip_if_unchanged = record.skip_if_unchanged
        if node.name == Node.EVALUATOR:
            splits = json.loads(value(node.execution, "example_splits") or "null") or [EVAL]
            summary.evaluation_split = splits[0]
            summary.model_name = _model_name(value(node.execution, "push_destination"))
    summary.class_names = class_names_of(nodes)
    if summary.evaluation_uri:
        summary.evaluation_missing = gone(summary.evaluation_uri, "the evaluation (Evaluator)")
        if not summary.evaluation_missing:
            _read_metrics(summary, summary.evaluation_uri)
            _read_provenance(summary, summary.evaluation_uri)
            _read_tflite(summary, summary.evaluation_uri)
    return summary


def gone(uri: str, what: str, plural: bool = False) -> str | None:
    """Why a folder the run recorded cannot be read now (deleted since, or never written);
    None when it holds files. `what` names it for the user ("the statistics (StatisticsGen)").
    """
    from tfx.dsl.io import fileio

    if fileio.exists(uri) and fileio.listdir(uri):
        return None
    return f"{what} at {uri} no longer exist{'' if plural else 's'} (deleted since the run?)"


def _int_or_none(text: Any) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _model_name(push_destination: str | None) -> str | None:
    from serving.model_dir import push_base

    base = push_base(push_destination) if push_destination else None
    return base.rsplit("/", 1)[-1] if base else None


def class_names_of(nodes: dict[str, NodeRecord]) -> list[str]:
    """From the training config the run recorded; else the data's dataset.json."""
    trainer = nodes.get(Node.TRAINER)
    if trainer is not None:
        config = json.loads(value(trainer.execution, "custom_config") or "null") or {}
        if config.get("class_names"):
            return list(config["class_names"])
    example_gen = nodes.get(Node.EXAMPLE_GEN)
    data_root = value(example_gen.execution, "input_base") if example_gen else None
    manifest = DatasetManifest.read(data_root) if data_root else None
    return list(manifest.class_names) if manifest else []


def class_name(class_names: list[str], label: str) -> str:
    """The class name of a label id; other values as they are, ids without a name as #id."""
    try:
        index = int(label)
    except ValueError:
        return label
    return class_names[index] if 0 <= index < len(class_names) else f"#{label}"


def _read_provenance(summary: RunSummary, evaluation_uri: str) -> None:
    """The Evaluator's record (components/evaluator.py): the served version, the bar."""
    from serving.model_dir import EvaluationRecord

    provenance = EvaluationRecord.read(evaluation_uri)
    if provenance is None:
        return
    summary.baseline_version = provenance.production.version if provenance.production else None
    summary.new_model = provenance.new_model
    summary.blessing_rule = (BlessingRule.parse(provenance.blessing_rule, f"the blessing rule "
                                                f"in {EvaluationRecord.path_in(evaluation_uri)}")
                             if provenance.blessing_rule else None)
    summary.baseline_note = baseline_note(provenance)


def _read_tflite(summary: RunSummary, evaluation_uri: str) -> None:
    """The Evaluator's score of the TFLite model (components/tflite_evaluation.py)."""
    from serving.tflite import TfliteEvaluation

    summary.tflite = TfliteEvaluation.read(evaluation_uri)


def baseline_note(provenance: EvaluationRecord) -> str | None:
    """Why the evaluation has no baseline accuracy, in the console's words; None if it has."""
    if provenance.class_map_changed:
        return "new class map: no baseline"
    if provenance.baseline_is_candidate:
        return "the served version is this model: no comparison"
    if provenance.new_model:
        return "new model directory: no version served yet"
    if provenance.production is None:
        # Versions that none could load (the run's log names them), or a record from before
        # new model directories were told apart.
        return ("no loadable version served" if provenance.new_model_recorded
                else "no version served yet")
    return None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_summary(summary: RunSummary,
                   name: Callable[[Setting], str] = neutral_name) -> Iterable[str]:
    """The run summary's lines; `name` says a setting the way the reader sets it."""
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
    if summary.evaluation_missing:
        yield f"  not readable: {summary.evaluation_missing}"
    if split != "test":
        yield ("  warning: no test split, so this is the split early stopping chose on; add a "
               "test/ folder for an untouched estimate")
    if summary.trainer_eval_accuracy is not None:
        role = ("trained on too (--refit), so not an estimate" if summary.refit
                else "early stopping's")
        yield (f"  training: recipe {summary.recipe}, final accuracy on the eval split "
               f"({role}) {_fmt(summary.trainer_eval_accuracy)}")
    if summary.tuning:
        yield f"  Tuned: {tuning_text(summary.tuning, summary.skip_if_unchanged)}"
        for line in trials_text(summary.tuning):
            yield f"    {line}"
    if summary.backbone:
        yield f"  backbone: {summary.backbone.text()}"
    if summary.skip_if_unchanged:
        decision = summary.skip_if_unchanged
        verb = (f"skipped, served version {decision.version} handed on" if decision.skip
                else "trained")
        yield f"  --skip-if-unchanged: {verb}: {decision.why}"
    if summary.training_input:
        yield f"  training input: {summary.training_input.reason}"
    if summary.baseline_accuracy is None:
        yield f"  baseline: none ({summary.baseline_note or 'no version served yet'})"
    else:
        change = (summary.accuracy or 0) - summary.baseline_accuracy
        yield f"  baseline accuracy {_fmt(summary.baseline_accuracy)} (change {change:+.4f})"
    if summary.new_model:
        for line in summary.new_model.lines(name):
            yield f"  {line}"
    if summary.per_class_accuracy:
        yield f"  {per_class_text(summary.named_per_class_accuracy())}"
    yield f"  {thresholds_text(summary.blessing_rule)} -> {_verdict(summary.blessed)}"
    if summary.pushed and summary.already_served:
        yield f"Already served, not pushed again: {summary.pushed_destination}"
    elif summary.pushed:
        yield f"Pushed: {summary.pushed_destination}"
    elif summary.pushed is False:
        yield "Not pushed: the candidate was not blessed; the serving directory is unchanged."
    tflite = tflite_line(summary)
    if tflite:
        yield tflite
    if summary.inference:
        yield summary.inference.text()
    if summary.tensorboard_dir:
        yield f"TensorBoard logs and training curves: {summary.tensorboard_dir}"
    yield outcome_line(summary)


def tuning_text(record: TuningRecord, skip: SkipDecision | None = None) -> str:
    """The Tuner's search in a line: how many trials, on which split, the best one, and
    whether the Trainer trained it (`skip`: its --skip-if-unchanged decision, if any).
    """
    best = record.best()
    trained = (f"not trained: the Trainer handed on served version {skip.version} "
               "(--skip-if-unchanged)" if skip is not None and skip.skip else
               "trained by the Trainer")
    found = (f"best trial {best.trial}, eval accuracy {best.eval_accuracy:.4f}, {trained}"
             if best and best.eval_accuracy is not None else "no trial completed")
    tied = record.tied_with_best()
    if tied:
        found += (f"; {len(tied)} other trial(s) scored the same, so the eval split could not "
                  "tell them apart and the first was kept (a larger eval split, "
                  "--eval-fraction, can)")
    budget = f", budget {record.budget_minutes:g} min" if record.budget_minutes else ""
    return (f"{record.algorithm} search of {record.recipe}'s space, {len(record.trials)} trials "
            f"on the {record.split} split in {record.seconds:.0f}s{budget} ({record.stopped}); "
            f"{found}")


def tflite_line(summary: RunSummary) -> str | None:
    """The console's line on the TFLite model: its score against the SavedModel's, its size,
    its latency here, and whether it went out with the version; None when nothing was evaluated.
    """
    if summary.evaluation_uri is None or summary.evaluation_missing:
        return None
    evaluation = summary.tflite
    if evaluation is None:
        return f"TFLite: {NO_TFLITE}."
    push = tflite_push_text(summary.tflite_pushed, summary.pushed_version, summary.tflite_note)
    return (f"{tflite_score_text(evaluation)}; {human(evaluation.size_bytes)} (SavedModel "
            f"{human(evaluation.saved_model_bytes)}); batch-1 latency on this host's CPU in "
            f"TFLite's interpreter {tflite_latency_text(evaluation)}; "
            f"{push}.")


# What the summary and the report say when the Evaluator scored no TFLite model.
NO_TFLITE = ("no TFLite model in this run (the model holds none: made with --tflite none, "
             "or handed on unchanged from a served version without one)")


def tflite_drop_text(evaluation: TfliteEvaluation) -> str:
    """"0.3 points below the SavedModel's 97.4 % (--max-tflite-drop allows 0.5 points)"."""
    from serving.tflite import comparison, points

    allowed = f"(--max-tflite-drop allows {points(evaluation.max_drop)})"
    if evaluation.saved_model_accuracy is None:
        return f"the SavedModel's accuracy was not found, so the drop is unknown {allowed}"
    return f"{comparison(evaluation.accuracy, evaluation.saved_model_accuracy)} {allowed}"


def tflite_score_text(evaluation: TfliteEvaluation) -> str:
    """"TFLite dynamic: 97.1 % on 18 test images, 0.3 points below the SavedModel's ..."."""
    return (f"TFLite {evaluation.mode}: {percent(evaluation.accuracy)} on "
            f"{evaluation.examples} {evaluation.split} images, {tflite_drop_text(evaluation)}")


def tflite_latency_text(evaluation: TfliteEvaluation) -> str:
    """"0.41 ms median, 0.99 ms p99 over 200 runs" (batch 1, in TFLite's interpreter)."""
    return (f"{evaluation.latency_ms_median:.2f} ms median, {evaluation.latency_ms_p99:.2f} ms "
            f"p99 over {evaluation.latency_runs} runs")


def tflite_push_text(tflite_pushed: bool | None, version: int | str | None,
                     note: str | None) -> str:
    """Whether the TFLite file went out with the version, and if not, why."""
    if tflite_pushed:
        return f"pushed with version {version}"
    if tflite_pushed is False:
        return f"version {version} has no TFLite file: {note or 'no reason recorded'}"
    return "not pushed: no version was pushed in this run"


def _verdict(blessed: bool | None) -> str:
    return {True: "BLESSED", False: "NOT blessed", None: "not evaluated"}[blessed]


# More classes than this: the console lists the worst and the best few, the report all of them.
_LISTED_CLASSES = 20
_EXTREMES = 5


def per_class_text(named: dict[str, float]) -> str:
    """"per class: cat: 0.91, dog: 0.88", or the 5 worst and the 5 best of many classes."""
    def listed(items) -> str:
        return ", ".join(f"{name}: {accuracy:.2f}" for name, accuracy in items)

    if len(named) <= _LISTED_CLASSES:
        return f"per class: {listed(named.items())}"
    ranked = sorted(named.items(), key=lambda kv: (kv[1], kv[0]))
    return (f"per class ({len(named)} classes; all in the report): the {_EXTREMES} worst "
            f"{listed(ranked[:_EXTREMES])}; the {_EXTREMES} best "
            f"{listed(reversed(ranked[-_EXTREMES:]))}")


def thresholds_text(rule: BlessingRule | None) -> str:
    """The bar, how it was set, and the regression allowed (pipeline/blessing.py's record)."""
    if not rule:
        return "thresholds: not recorded with this evaluation"
    return (f"blessing: accuracy at least {rule.text}; at most "
            f"{rule.max_regression:g} below the served version")


def data_name(data_root: str | None) -> str:
    """The data's folder name: `run --data FOLDER` ingests into <root>/data/FOLDER/tfrecords
    (pipeline/workspace.py), a folder of TFRecords is its own name.
    """
    if not data_root:
        return "the data"
    parts = data_root.rstrip("/").rsplit("/", 2)
    return parts[-2] if parts[-1] == "tfrecords" and len(parts) > 1 else parts[-1]


def outcome_line(summary: RunSummary) -> str:
    """One plain sentence: what was trained, how good it is where, whether it replaced the
    served model, and why.
    """
    if summary.accuracy is None:
        return f"{_trained(summary)}: not evaluated, nothing pushed."
    score = (f"{percent(summary.accuracy)} on {summary.evaluation_split or 'eval'} "
             f"({summary.eval_examples} images)")
    parts = [f"{_trained(summary)}: {score}", _blessing_reason(summary)]
    push = _push_outcome(summary)
    if push:
        parts.append(push)
    return "; ".join(parts) + "."


def _trained(summary: RunSummary) -> str:
    data = data_name(summary.data_root)
    decision = summary.skip_if_unchanged
    if decision is not None and decision.skip:
        return (f"Handed on served version {decision.version} for {data} "
                "(--skip-if-unchanged)")
    details = [summary.backbone.backbone] if summary.backbone else []
    if summary.epochs_run is not None:
        details.append(f"{summary.epochs_run} epoch{'' if summary.epochs_run == 1 else 's'}")
    if summary.members > 1:
        details.append(f"{summary.members} networks averaged")
    shown = f" ({', '.join(details)})" if details else ""
    return f"Trained {summary.recipe or 'a model'}{shown} on {data}"


def _pair(value: float, bound: float) -> tuple[str, str]:
    """Both as percentages, one more decimal where one decimal would show them equal."""
    if percent(value) != percent(bound):
        return percent(value), percent(bound)
    return f"{100 * value:.2f} %", f"{100 * bound:.2f} %"


def _bar_reason(rule: BlessingRule) -> str:
    default = rule.default
    if rule.source == "--min-accuracy" or not default:
        return "set by --min-accuracy"
    return (f"the bar for {default.num_classes} classes on {default.examples} images"
            + (", capped: too few to tell from chance" if default.capped else ""))


def _blessing_reason(summary: RunSummary) -> str:
    rule = summary.blessing_rule
    accuracy, bar = summary.accuracy or 0.0, rule.min_accuracy if rule else None
    if summary.blessed is None:
        return "not evaluated"
    if summary.blessed:
        return (f"blessed (at least {percent(bar)}, {_bar_reason(rule)})" if bar is not None
                else "blessed")
    reasons = []
    if bar is not None and accuracy < bar:
        chance = rule.default.chance if rule.default else None
        # TFMA's accuracy is a float32 ratio: k/n may print as chance and sit a hair above.
        if chance is not None and accuracy <= chance + 1e-6:
            reasons.append(f"{percent(accuracy)} is not above chance ({percent(chance)})")
        else:
            shown, at = _pair(accuracy, bar)
            reasons.append(f"{shown} is below the bar {at} ({_bar_reason(rule)})")
    allowed = rule.max_regression if rule else None
    baseline = summary.baseline_accuracy
    if baseline is not None and allowed is not None and accuracy - baseline < -allowed - 1e-9:
        reasons.append(f"{100 * (baseline - accuracy):.1f} points below the served version "
                       f"{summary.baseline_version} ({percent(baseline)}), more than "
                       f"--max-regression {allowed:g} allows")
    return "not blessed: " + ("; ".join(reasons) or "a threshold failed (the report lists it)")


def _push_outcome(summary: RunSummary) -> str | None:
    name = f"`{summary.model_name}`" if summary.model_name else "this model"
    served = summary.baseline_version
    if summary.pushed and summary.already_served:
        return f"already served as version {summary.pushed_version}: nothing new pushed"
    if summary.pushed:
        if served is None:
            return f"pushed as version {summary.pushed_version}, the first of {name}"
        was = f" ({percent(summary.baseline_accuracy)})" if (
            summary.baseline_accuracy is not None) else ""
        return f"pushed as version {summary.pushed_version}, replacing version {served}{was}"
    if summary.pushed is False:
        return (f"the served version {served} stays" if served is not None
                else f"nothing is served as {name} yet")
    return None

