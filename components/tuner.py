"""TFX's Tuner, keeping a record of every trial for the report.

TFX's Tuner executor writes the best trial's hyperparameters (`best_hyperparameters`, which
the Trainer reads) and a table of the completed trials (`tuner_results.json`). tuner_fn
(trainer/tuning.py) cannot reach the output artifacts, so this executor runs the same search
and then also writes the tuner's TuningRecord (every trial's settings, eval accuracy and
seconds; why the search stopped) into `tuner_results`, where the run summary and the report
read it. With TuneArgs' num_parallel_trials above 1 (the factory sets it for a Beam preset of
worker processes), trials run side by side in processes of their own. The component is TFX's,
with this executor; custom_config may be a Kubeflow run-time
parameter (the training config), which TFX's own constructor would serialize as text.
"""

from __future__ import annotations

import logging
from typing import Any

from tfx import types
from tfx.components.trainer import fn_args_utils
from tfx.components.tuner import executor as tuner_executor
from tfx.components.util import udf_utils
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import trainer_pb2, tuner_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import json_utils

from trainer.tuning import trials_text, usable_cpus

log = logging.getLogger(__name__)


class Executor(tuner_executor.Executor):
    # The TFX executor interface, the same in every executor (`duplicates` pairs them).
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        # TFX's search (tuner_executor.search), with TuneArgs' parallel trials, which TFX's own
        # executor refuses: up to that many at a time, at most one per core, each in its own
        # process (trainer/tuning.py).
        fn_args = fn_args_utils.get_common_fn_args(input_dict, exec_properties,
                                                   self._get_tmp_dir())
        result = udf_utils.get_fn(exec_properties, "tuner_fn")(fn_args)
        tuner = result.tuner
        tune_args = tuner_executor.get_tune_args(exec_properties)
        if tune_args and tune_args.num_parallel_trials > 1:
            tuner.parallel = min(tune_args.num_parallel_trials, usable_cpus())
        tuner.search(**result.fit_kwargs)
        tuner_executor.write_best_hyperparameters(tuner, output_dict)
        record = tuner.record()
        record.write(artifact_utils.get_single_uri(
            output_dict[standard_component_specs.TUNER_RESULTS_KEY]))
        log.info("[tuner] %s; %s", record.stopped, "; ".join(trials_text(record)))


# TFX component boilerplate: the spec's channels and parameters passed through, the shape every
# component here has (`duplicates` pairs them; there is no logic to share).
class ImageTuner(base_component.BaseComponent):
    SPEC_CLASS = standard_component_specs.TunerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        tuner_fn: str,
        examples: types.BaseChannel,
        transform_graph: types.BaseChannel,
        schema: types.BaseChannel,
        train_args: trainer_pb2.TrainArgs,
        eval_args: trainer_pb2.EvalArgs,
        custom_config: dict[str, Any] | Any,
        tune_args: tuner_pb2.TuneArgs | None = None,
    ) -> None:
        super().__init__(spec=standard_component_specs.TunerSpec(
            examples=examples,
            schema=schema,
            transform_graph=transform_graph,
            tuner_fn=tuner_fn,
            train_args=train_args,
            eval_args=eval_args,
            tune_args=tune_args,
            custom_config=(custom_config if not isinstance(custom_config, dict)
                           else json_utils.dumps(custom_config)),
            best_hyperparameters=types.Channel(type=standard_artifacts.HyperParameters),
            tuner_results=types.Channel(type=standard_artifacts.TunerResults),
        ))
