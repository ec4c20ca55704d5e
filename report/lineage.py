"""Which data, schema, Transform graph and training run produced a pushed model version.

Walks ML Metadata backwards from the Pusher's PushedModel artifact: Pusher -> Model ->
Trainer (examples, transform graph, schema, training config) -> ImportExampleGen (data
folder, spans), and Pusher -> ModelBlessing -> Evaluator (evaluation). Whether the version
holds a TFLite model, or why not: the Pusher's `tflite_pushed` and `tflite_note` on its
PushedModel, the version's tflite.json, the Evaluator's tflite_evaluation.json. A
warm-started model names the served version it started from (the Trainer's record);
`warm_start_chain` follows those back to the model trained from scratch.
"""

from __future__ import annotations

import json
from typing import Any

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.components.evaluator.constants import ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY

from report.summary import artifacts_by_key, open_store
from report.summary import value as _value
from schema.records import as_data

_INPUT, _OUTPUT = metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.OUTPUT


class LineageError(LookupError):
    pass


def _producer(store: metadata_store.MetadataStore, artifact_id: int):
    events = [e for e in store.get_events_by_artifact_ids([artifact_id]) if e.type == _OUTPUT]
    return store.get_executions_by_id([events[0].execution_id])[0] if events else None


def _inputs(store: metadata_store.MetadataStore, execution_id: int) -> dict[str, Any]:
    """Input key -> (first) artifact of an execution."""
    return {key: found[0] for key, found in artifacts_by_key(store, execution_id, _INPUT).items()}


def _run_id(store: metadata_store.MetadataStore, execution_id: int) -> str | None:
    for context in store.get_contexts_by_execution(execution_id):
        if context.type == "pipeline_run":
            return context.name
    return None


def training_config(record, custom_config: str | None) -> Any:
    """The config a model trained with: its training record's (TrainingRecord.config, which
    holds the Tuner's best settings), else the Trainer's input config (before tuning).
    """
    if record is not None and record.config:
        return record.config
    return json.loads(custom_config or "null")


def model_lineage(metadata_path: str, version: str) -> dict[str, Any]:
    store = open_store(metadata_path)
    pushes = [a for a in store.get_artifacts_by_type("PushedModel")
              if str(_value(a, "pushed_version")) == str(version) and _value(a, "pushed")]
    if not pushes:
        raise LineageError(f"{metadata_path}: no push of version {version} recorded")
    pusher = _producer(store, pushes[0].id)
    pusher_inputs = _inputs(store, pusher.id)
    model = pusher_inputs["model"]
    trainer = _producer(store, model.id)
    trainer_inputs = _inputs(store, trainer.id)
    examples = trainer_inputs["examples"]
    example_gen = _producer(store, examples.id)
    from ingest.spans import WINDOW_PROPERTY
    from trainer.record import TrainingRecord

    model_run = artifacts_by_key(store, trainer.id, _OUTPUT).get("model_run") or []
    record = TrainingRecord.read(model_run[0].uri) if model_run else None
    warm = record.warm_start if record else None
    window = _value(examples, WINDOW_PROPERTY)
    lineage: dict[str, Any] = {
        "version": str(version),
        "pushed_to": _value(pushes[0], "pushed_destination"),
        "pushed_by_run": _run_id(store, pusher.id),
        "model": model.uri,
        "trained_by_run": _run_id(store, trainer.id),
        # The config the model trained with (the Tuner's best applied): the training record's;
        # the Trainer's input config only where there is no record.
        "training_config": training_config(record, _value(trainer, "custom_config")),
        "examples": examples.uri,
        "data_root": _value(example_gen, "input_base") if example_gen else None,
        "spans": json.loads(window) if window else None,
        # The served version whose weights training started from; None: from scratch.
        "warm_started_from": warm.version if warm and warm.used else None,
        "transform_graph": trainer_inputs["transform_graph"].uri,
        "schema": trainer_inputs["schema"].uri,
    }
    from tfx.utils import path_utils

    from trainer.backbones.provenance import WeightsSource

    # The pretrained network and its weights' provenance, as the model holds it.
    backbone = WeightsSource.read(path_utils.serving_model_path(model.uri))
    if backbone is not None:
        lineage["backbone"] = as_data(backbone)
    blessing = pusher_inputs.get("model_blessing")
    if blessing is not None:
        evaluator = _producer(store, blessing.id)
        lineage["blessed"] = bool(_value(blessing, "blessed"))
        lineage["evaluated_by_run"] = _run_id(store, evaluator.id)
        # The served version the Evaluator compared with (components/evaluator.py).
        lineage["baseline_model"] = _value(blessing, ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY)
        evaluation = artifacts_by_key(store, evaluator.id, _OUTPUT).get("evaluation") or []
    else:
        evaluation = []
    lineage["tflite"] = _tflite(pushes[0], evaluation[0].uri if evaluation else None)
    lineage["inferences"] = inferences(store, version)
    return lineage


def inferences(store: metadata_store.MetadataStore, version: str) -> list[dict[str, Any]]:
    """The BulkInferrer's predictions made with this version (run --infer-data), oldest first:
    the run, the folder, the rows and the predictions file.
    """
    from report.summary import InferenceOutcome

    found = []
    for result in store.get_artifacts_by_type("InferenceResult"):
        outcome = InferenceOutcome.of(result)
        if outcome.version is None or str(outcome.version) != str(version):
            continue
        producer = _producer(store, result.id)
        found.append({"run": _run_id(store, producer.id) if producer else None,
                      "data": outcome.data, "rows": outcome.rows, "bad": outcome.bad,
                      "predictions": outcome.predictions})
    return found


def _tflite(push, evaluation_uri: str | None) -> dict[str, Any]:
    """Whether the pushed version holds a TFLite model (its mode, size, file), and why (the
    Pusher's note: the Evaluator's verdict, or that the model had none).
    """
    from serving import tflite
    from serving.tflite import TfliteEvaluation, TfliteModelInfo

    pushed = _value(push, "tflite_pushed")
    found: dict[str, Any] = {"pushed": bool(pushed)}
    # The version as served; the Pusher's own copy when the version has gone (rolled away).
    for folder in (_value(push, "pushed_destination"), push.uri):
        info = TfliteModelInfo.read(tflite.folder(folder)) if folder else None
        if info is not None and pushed:
            found.update(mode=info.mode, size_bytes=info.size_bytes,
                         file=tflite.model_path(folder))
            break
    evaluation = TfliteEvaluation.read(evaluation_uri) if evaluation_uri else None
    note = _value(push, "tflite_note")
    if note is None and evaluation is not None:
        note = evaluation.why
    found["why"] = note or ("the Pusher recorded no TFLite verdict: pushed before the "
                            "pipeline made TFLite models")
    if evaluation is not None:
        found["accuracy"] = evaluation.accuracy
        found["saved_model_accuracy"] = evaluation.saved_model_accuracy
    return found


def warm_start_chain(metadata_path: str, version: str) -> list[dict[str, Any]]:
    """The version, the version it was warm-started from, and so on back to one trained from
    scratch (or to one this store has no record of, which ends the chain with `missing`).
    """
    chain: list[dict[str, Any]] = []
    seen = set()
    current: str | None = str(version)
    while current is not None and current not in seen:
        seen.add(current)
        try:
            lineage = model_lineage(metadata_path, current)
        except LineageError:
            chain.append({"version": current, "missing": True})
            break
        chain.append({key: lineage[key] for key in
                      ("version", "spans", "trained_by_run", "warm_started_from")})
        start = lineage["warm_started_from"]
        current = None if start is None else str(start)
    return chain
