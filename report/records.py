"""report.json's types: the run report's facts, one frozen dataclass per section.

report/facts.py builds a RunReport from ML Metadata, report/__init__.py writes it as
report.json through its type, and report/html.py, report/plots.py and the page's template
read its attributes: a renamed field fails where it is read, not as a silent None on the page.
A section whose components did not run is a NotRun (its component's state and why), so
"available" is a type, not a key to test.

The JSON keeps the shape report.json had before it had a type (`report --json` prints it):
a fact a run may not have (spans, a missing artifact, ingest's dataset.json, a data gate that
did not run) is left out rather than written as null, and the stage records a section carries
(the gate's drift and class map, the Trainer's input, warm start and skip decision, the
blessing rule, a new model) keep the JSON their own records give them.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import pydantic

from components.gate_report import ClassMap, DriftMeasurement, Finding
from ingest.dataset import EVAL, TRAIN
from ingest.manifest import ImageSizes
from pipeline.blessing import BlessingRule
from report.summary import ComponentRun, InferenceOutcome
from schema.records import Record
from serving.new_model import NewModel
from serving.tflite import TfliteEvaluation
from trainer.backbones.provenance import WeightsSource
from trainer.record import MemberRecord, SkipDecision, TrainingInput, WarmStart
from trainer.tuning import TuningRecord

REPORT_JSON = "report.json"


def _none(value: Any) -> bool:
    return value is None


def _empty(value: Any) -> bool:
    return not value


# A field shown only when the run has it (absent from the JSON, not null).
OMIT_NONE = pydantic.Field(exclude_if=_none)
OMIT_EMPTY = pydantic.Field(exclude_if=_empty)


def _without_nones(value: Any, handler: pydantic.SerializerFunctionWrapHandler) -> Any:
    """A stage record's part as its record writes it: fields it left unset are absent."""
    data = handler(value)
    return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


# A stage record's part carried as is (schema.records.as_data's JSON).
AS_RECORDED = pydantic.WrapSerializer(_without_nones)


def _class_map(value: ClassMap, handler: pydantic.SerializerFunctionWrapHandler) -> Any:
    """The gate's class map as the report states it: the names and the change, not where the
    gate read them.
    """
    data = handler(value)
    return {k: data[k] for k in ("class_names", "served_class_names", "change")}


@dataclasses.dataclass(frozen=True, kw_only=True)
class NotRun:
    """A section whose component did not run or whose facts are gone: its state and why."""

    available: Literal[False] = False
    state: Annotated[str | None, OMIT_NONE] = None  # the component's; None: no one component
    why: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class SplitFacts:
    examples: int
    per_class: dict[str, int]
    image_formats: dict[str, int] = dataclasses.field(default_factory=dict)
    # Where ingest took the split from (its folder, or carved from another split).
    origin: Annotated[str | None, pydantic.Field(alias="from", exclude_if=_none)] = None


# DatasetFacts fields read from dataset.json: in the JSON only when the run's data has one.
_MANIFEST_FIELDS = ("source", "image_shape", "image_shapes_seen", "sizes_vary", "image_sizes",
                    "channels_chosen", "shape_policy", "skipped_files", "image_modes",
                    "converted", "duplicates", "dataset_json_matches_run")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetFacts:
    """The data the run read: its statistics per split, and what ingest recorded of it."""

    available: Literal[True] = True
    data_root: str | None = None
    examples: str | None = None  # the ImportExampleGen artifact
    statistics: str | None = None  # the StatisticsGen artifact
    splits: dict[str, SplitFacts] = dataclasses.field(default_factory=dict)
    missing: Annotated[tuple[str, ...], OMIT_EMPTY] = ()  # artifacts deleted since the run
    span: Annotated[int | None, OMIT_NONE] = None  # a root of spans: the run's span
    # The spans whose train images the Trainer fitted (this span and the ones before it).
    window_spans: Annotated[tuple[int, ...] | None, OMIT_NONE] = None
    # dataset.json, when the data has one; the fields after it are ingest's (DatasetManifest).
    dataset_json: Annotated[str | None, OMIT_NONE] = None
    source: str | None = None  # the folder the examples' source paths are relative to
    splits_from: Annotated[str | None, OMIT_NONE] = None  # the counts' file, statistics gone
    image_shape: tuple[int, ...] | None = None
    image_shapes_seen: dict[str, int] = dataclasses.field(default_factory=dict)
    sizes_vary: bool = False
    image_sizes: dict[str, Any] | None = None  # None: ingested before it was kept
    channels_chosen: dict[str, Any] | None = None
    shape_policy: dict[str, Any] = dataclasses.field(default_factory=dict)
    skipped_files: int | None = None
    image_modes: dict[str, int] = dataclasses.field(default_factory=dict)
    converted: dict[str, Any] | None = None
    duplicates: dict[str, Any] | None = None  # None: ingested before they were counted
    # The folder may have been re-ingested, or its TFRecords replaced, since `ingest`; None:
    # not known (the statistics are gone).
    dataset_json_matches_run: bool | None = None

    @property
    def sizes(self) -> ImageSizes | None:
        """`image_sizes` read through ingest's type; None: not summarized by that ingest."""
        return ImageSizes.from_json(self.image_sizes) if self.image_sizes else None

    @pydantic.model_serializer(mode="wrap")
    def _json(self, handler: pydantic.SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if self.dataset_json is None:
            for name in _MANIFEST_FIELDS:
                data.pop(name, None)
        return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class AnomalyFacts(Finding):
    """An ExampleValidator finding, and whether it is only ingest's bookkeeping."""

    bookkeeping: bool = False


# ValidationFacts fields the data gate's execution gives: in the JSON only when it ran.
_GATE_FIELDS = ("max_label_drift", "drift_baseline", "drift_compared", "class_map")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ValidationFacts:
    """ExampleValidator's anomalies and what the DataGate recorded in this run."""

    available: Literal[True] = True
    anomalies_uri: str | None = None
    anomalies: tuple[AnomalyFacts, ...] = ()
    gate_state: str = "not run"
    allowed_anomaly_types: tuple[str, ...] = ()
    drift: tuple[DriftMeasurement, ...] = ()
    max_label_drift: float | None = None  # None: the gate did not run
    drift_baseline: str | None = None  # the served version's statistics; None: none
    drift_compared: str | None = None  # which spans, in words
    class_map: Annotated[ClassMap, pydantic.WrapSerializer(_class_map)] = ClassMap()
    drift_missing: Annotated[str | None, OMIT_NONE] = None  # why the gate recorded nothing

    @pydantic.model_serializer(mode="wrap")
    def _json(self, handler: pydantic.SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if self.max_label_drift is None:
            for name in _GATE_FIELDS:
                data.pop(name, None)
        return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingFacts:
    """The Trainer's record of this run (trainer/record.py TrainingRecord) as the page shows
    it.
    """

    available: Literal[True] = True
    state: str | None = None
    model: str | None = None
    tensorboard_dir: str | None = None
    config: dict[str, Any] = dataclasses.field(default_factory=dict)  # TrainerConfig.to_dict()
    recipe: str | None = None
    recipe_reason: str | None = None
    backbone: WeightsSource | None = None  # the model's backbone.json, as training recorded it
    # The Trainer fits the first and early-stops / picks checkpoints on the second
    # ("train + eval" and eval when it refit: eval was then trained on, not held out).
    train_split: str = TRAIN
    eval_split: str = EVAL
    refit: bool = False  # eval was trained on too (data.refit): its accuracy is no estimate
    epochs_run: int | None = None
    num_train: int | None = None
    num_eval: int | None = None
    input: Annotated[TrainingInput | None, AS_RECORDED] = None
    # None: from scratch, not asked to warm-start; else trainer/warm_start.py's record.
    warm_start: Annotated[WarmStart | None, AS_RECORDED] = None
    # None: not asked; else components/trainer.py's decision, skipped or trained, and why.
    skip_if_unchanged: Annotated[SkipDecision | None, AS_RECORDED] = None
    # None: not tuned; else the Tuner's trials (trainer/tuning.py), whose best one was trained.
    tuning: Annotated[TuningRecord | None, AS_RECORDED] = None
    fit_seconds: float | None = None
    train_images_per_second: float | None = None
    final_eval_accuracy: float | None = None
    # An ensemble's networks (model.members); `history` and `epochs_run` are the first one's.
    members: tuple[MemberRecord, ...] = ()
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Threshold:
    """One of the Evaluator's thresholds as configured."""

    metric: str
    slice: str
    kind: str  # "at least" or "change vs baseline at least"
    value: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConfusedPair:
    actual: str
    predicted: str
    count: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluationFacts:
    """The Evaluator's result on the evaluated split, and what it was compared with."""

    available: Literal[True] = True
    state: str | None = None
    evaluation_uri: str | None = None
    signature: str | None = None
    split: str | None = None
    eval_examples: int | None = None
    accuracy: float | None = None
    # The served version the candidate was compared with (components/evaluator.py).
    baseline_model: str | None = None
    baseline_version: int | None = None
    # On an unchanged re-run the served version is the candidate itself: nothing to compare.
    baseline_is_candidate: bool = False
    # Data accepted with --accept-new-classes: the served model's label ids mean other classes.
    class_map_changed: bool = False
    baseline_accuracy: float | None = None
    baseline_note: str | None = None  # why there is no baseline, the console's words
    thresholds: tuple[Threshold, ...] = ()
    # How the accuracy bar was set: pipeline/blessing.py's rule or --min-accuracy.
    blessing_rule: BlessingRule | None = None
    # The model directory held no version yet (serving/new_model.py).
    new_model: Annotated[NewModel | None, AS_RECORDED] = None
    validation_ok: bool | None = None
    failures: tuple[str, ...] = ()
    blessed: bool | None = None
    per_class_accuracy: dict[str, float] = dataclasses.field(default_factory=dict)
    # report/facts.py confusion_facts: the matrix up to MAX_MATRIX_CLASSES_KEPT classes.
    confusion_matrix: list[list[int]] | None = None
    confusion_classes: int = 0
    most_confused: tuple[ConfusedPair, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class MistakeFacts:
    """One misclassified image (report/misclassified.py Mistake, without its bytes)."""

    # Relative to the ingested folder; None for data ingested before ingest stored it.
    source_path: str | None
    split: str
    index: int  # the record's position in the split as ExampleGen wrote it
    true: str
    predicted: str
    confidence: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class MisclassifiedFacts:
    available: Literal[True] = True
    model: str
    signature: str
    split: str
    scanned: int
    complete: bool  # every image of the split was looked at
    misclassified: int
    # False for data ingested before ingest stored source paths: rows show the index.
    source_paths: bool | None
    shown: tuple[MistakeFacts, ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PushFacts:
    available: Literal[True] = True
    state: str | None = None
    pushed: bool = False
    already_served: bool = False
    destination: str | None = None
    version: str | None = None
    blessed: bool | None = None
    # What the BulkInferrer stage after the Pusher scored (run --infer-data); None without it.
    inference: InferenceOutcome | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class TfliteFacts:
    """The model's TFLite file: the Evaluator's score of it beside the SavedModel's, its size
    and latency (serving/tflite.py TfliteEvaluation, as recorded), and whether the Pusher
    pushed it with the version, and why not.
    """

    available: Literal[True] = True
    evaluation: TfliteEvaluation
    # The Pusher's PushedModel: True or False when it pushed a version (with or without the
    # TFLite file), None when it pushed none in this run.
    pushed: bool | None = None
    version: int | None = None
    note: str | None = None  # the Pusher's why (the Evaluator's verdict, or no file)


def _section(kind: type) -> Any:
    """A section's type: its facts, or NotRun; told apart by `available`."""
    return Annotated[kind | NotRun, pydantic.Field(discriminator="available")]


Dataset = _section(DatasetFacts)
Validation = _section(ValidationFacts)
Training = _section(TrainingFacts)
Evaluation = _section(EvaluationFacts)
Misclassified = _section(MisclassifiedFacts)
Push = _section(PushFacts)
Tflite = _section(TfliteFacts)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunReport(Record):
    """report.json: what one pipeline run did, section by section."""

    SCHEMA_VERSION = 1
    FILE = REPORT_JSON

    pipeline_name: str
    run_id: str
    started: str  # ISO 8601, UTC: when the run's first component started
    components: tuple[ComponentRun, ...] = ()
    failed_components: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    # The one split every evaluation title, caption and heading names.
    evaluation_split: str | None = None
    dataset: Dataset
    validation: Validation
    training: Training
    evaluation: Evaluation
    push: Push
    # The TFLite model scored by the Evaluator; NotRun when the run made none (or older runs).
    tflite: Tflite = NotRun(why="not recorded: the report was written before it had a TFLite "
                            "section")
    # The run summary's last line: what was trained, how good, pushed or not, and why.
    outcome: str | None = None
    # Added by write_report: the images the model gets wrong, and the files it wrote.
    misclassified: Misclassified = NotRun(why="not looked for: write_report looks for them")
    files: Annotated[dict[str, str], OMIT_EMPTY] = dataclasses.field(default_factory=dict)
