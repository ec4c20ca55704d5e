"""TFX's Trainer, which can hand on the served model when nothing it would learn from changed.

With `continuity.skip_if_unchanged` in the training config (`run --skip-if-unchanged`), the
Trainer does not train when both hold:
  * the new data's statistics equal those the served model was trained on (the DataGate
    records the differences it found, components/gate_report.py DataComparison; deciding what
    they mean is the Trainer's), and
  * the training config equals the one the served model was trained with (the Trainer writes
    it into every model as assets.extra/training_config.json; settings that say how to get
    there, not what to train, such as warm start, are left out of the comparison).
It then copies the served version as its model. The Evaluator finds the candidate to be the
served model and evaluates it on the new test split without a comparison, and the Pusher does
not push an identical model again. Otherwise it trains as TFX's Trainer does, and its record
says why it did. Either way the decision is in the Trainer's record (model_run/history.json),
which the run summary and the report show.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2, trainer_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, json_utils, path_utils

from components.data_gate import ValidatedStatistics
from components.gate_report import GateReport
from schema.errors import BadInput
from serving.model_dir import (
    STATISTICS_DIR,
    join,
    production_model,
    push_base,
    read_json,
    relative_files,
)
from trainer.config import TRAINING_CONFIG_FILE, TrainerConfig
from trainer.record import SkipDecision, TrainingRecord
from trainer.tuning import tuned_config

log = logging.getLogger(__name__)
DATA_GATE_KEY = "data_gate"
PUSH_DESTINATION_KEY = "push_destination"
# How the model is reached, not what it is (TrainerConfig's continuity part, and why the recipe
# was chosen): left out when two training configs are compared.
NOT_COMPARED = frozenset({"continuity", "tuning", "recipe_reason"})


def config_change(served: dict[str, Any] | None, current: dict[str, Any]) -> str | None:
    """The settings that differ between two training configs, by dotted path; None if none do.

    Both are read as TrainerConfigs, so a served model's flat training_config.json (written
    before the config had parts) equals a nested config with the same values.
    """
    if served is None:
        return "the served version records no training config"
    try:
        before = TrainerConfig.from_dict(served).settings()
    except BadInput as e:
        return f"the served version's training config does not read as one of today's: {e}"
    after = TrainerConfig.from_dict(current).settings()
    changed = [f"{path} {before[path]!r} -> {value!r}" for path, value in sorted(after.items())
               if path.split(".")[0] not in NOT_COMPARED and before[path] != value]
    return ", ".join(changed) or None


# At most this many statistics that differ are named in the decision.
_DIFFERENCES_SHOWN = 4


def data_unchanged(gate: GateReport | None) -> tuple[bool, str]:
    """Whether the gate found the data's statistics equal to the served model's training
    data's in every split (the same splits, no statistic that differs), and why.
    """
    comparison = gate.comparison if gate else None
    if comparison is None:
        return False, "the data gate compared no statistics"
    differences = [d.text() for d in comparison.differences]
    if comparison.splits != comparison.baseline_splits:
        differences.insert(0, f"splits {list(comparison.splits)} "
                              f"(was {list(comparison.baseline_splits)})")
    if differences:
        shown = "; ".join(differences[:_DIFFERENCES_SHOWN]) + (
            "; ..." if len(differences) > _DIFFERENCES_SHOWN else "")
        return False, f"{comparison.compared}: the statistics differ: {shown}"
    return True, (f"{comparison.compared}: the statistics are equal in every split "
                  "(example counts, image byte sizes, class counts)")


def skip_decision(
    config: dict[str, Any], gate: GateReport | None, push_destination: str | None
) -> SkipDecision:
    """Whether to hand on the served model instead of training, and why: the data the gate
    compared is unchanged and so is the training config.
    """
    production = production_model(push_base(push_destination))
    if production is None:
        return SkipDecision(skip=False, why="no version is served yet")
    decision = SkipDecision(skip=False, why="", version=production.version,
                            origin=production.path)
    unchanged, why = data_unchanged(gate)
    if not unchanged:
        return dataclasses.replace(decision, why=why)
    change = config_change(
        read_json(join(production.path, TRAINING_CONFIG_FILE)), config)
    if change:
        return dataclasses.replace(decision,
                                   why=f"{why}, but the training config changed: {change}")
    return dataclasses.replace(decision, skip=True, why=(
        f"{why}, and the training config is the one served version {production.version} was "
        "trained with"))


def _copy_model(source: str, target: str) -> None:
    """The served version's files, without the statistics the Pusher added to it."""
    for relative in relative_files(source):
        if relative.startswith(STATISTICS_DIR + "/"):
            continue
        fileio.makedirs(os.path.dirname(join(target, relative)))
        fileio.copy(join(source, relative), join(target, relative), overwrite=True)


def best_hyperparameters(input_dict) -> dict[str, Any] | None:
    """The Tuner's best hyperparameters (KerasTuner's config), read as TFX's Trainer reads them
    for run_fn's fn_args.hyperparameters; None without a Tuner.
    """
    artifacts = input_dict.get(standard_component_specs.HYPERPARAMETERS_KEY)
    if not artifacts:
        return None
    path = io_utils.get_only_uri_in_dir(artifact_utils.get_single_uri(artifacts))
    return json.loads(io_utils.read_string_file(path))


class Executor(trainer_executor.GenericExecutor):
    # The TFX executor interface, the same in every executor (`duplicates` pairs them).
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        config = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
                            or "{}")
        gate = input_dict.get(DATA_GATE_KEY) or []
        inputs = {k: v for k, v in input_dict.items() if k != DATA_GATE_KEY}
        model_run = artifact_utils.get_single_uri(
            output_dict[standard_component_specs.MODEL_RUN_KEY])
        if not (config and TrainerConfig.from_dict(config).continuity.skip_if_unchanged):
            super().Do(inputs, output_dict, exec_properties)
            return
        # The Tuner's best hyperparameters, as run_fn applies them: the config compared.
        config = tuned_config(TrainerConfig.from_dict(config),
                              best_hyperparameters(input_dict)).to_dict()
        decision = skip_decision(config, GateReport.read(gate[0].uri) if gate else None,
                                 exec_properties.get(PUSH_DESTINATION_KEY))
        log.info("[trainer] skip_if_unchanged: %s: %s",
                 "skipped" if decision.skip else "training", decision.why)
        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        if decision.skip:
            _copy_model(decision.origin, path_utils.serving_model_dir(model.uri))
            record = TrainingRecord(config=config)
        else:
            super().Do(inputs, output_dict, exec_properties)
            record = TrainingRecord.read(model_run) or TrainingRecord(config=config)
        dataclasses.replace(record, skip_if_unchanged=decision).write(model_run)
        for name, value in decision.artifact_properties().items():
            model.set_int_custom_property(name, value)


class ImageTrainerSpec(standard_component_specs.TrainerSpec):
    PARAMETERS = {
        **standard_component_specs.TrainerSpec.PARAMETERS,
        # The Pusher's destination: its newest version is the model that may be handed on.
        PUSH_DESTINATION_KEY: ExecutionParameter(type=pusher_pb2.PushDestination, optional=True),
    }
    INPUTS = {
        **standard_component_specs.TrainerSpec.INPUTS,
        # The gate's record: the statistics that differ from the served model's training data.
        DATA_GATE_KEY: ChannelParameter(type=ValidatedStatistics, optional=True),
    }


# TFX component boilerplate: the spec's channels and parameters passed through, the shape every
# component here has (`duplicates` pairs them; there is no logic to share).
class ImageTrainer(base_component.BaseComponent):
    # Reads the served version only with skip_if_unchanged, and then through the gate's
    # output, which is never cached: a cached Trainer had the same inputs and the same gate.
    SPEC_CLASS = ImageTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        run_fn: str,
        examples: types.BaseChannel,
        transform_graph: types.BaseChannel,
        schema: types.BaseChannel,
        train_args: trainer_pb2.TrainArgs,
        eval_args: trainer_pb2.EvalArgs,
        custom_config: dict[str, Any] | Any,
        data_gate: types.BaseChannel | None = None,
        push_destination: pusher_pb2.PushDestination | Any = None,
        hyperparameters: types.BaseChannel | None = None,
    ) -> None:
        super().__init__(spec=ImageTrainerSpec(
            examples=examples,
            transform_graph=transform_graph,
            schema=schema,
            train_args=train_args,
            eval_args=eval_args,
            run_fn=run_fn,
            custom_config=(custom_config if not isinstance(custom_config, dict)
                           else json_utils.dumps(custom_config)),
            data_gate=data_gate,
            push_destination=push_destination,
            hyperparameters=hyperparameters,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun),
        ))
