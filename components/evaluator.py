"""The stock TFMA Evaluator, minus the work of re-evaluating a model it has already evaluated.

With caching, re-running an unchanged pipeline reuses the Trainer's model, and the
latest-blessed-model resolver returns that same model as the baseline. The stock Evaluator then
evaluates it twice (on CIFAR-10: two models x two TTA views x 10,000 images) to find no change.
Here, when the baseline is the candidate itself:
  * the baseline is dropped (no change threshold can fail against oneself; value thresholds
    still apply), which makes the work identical to the evaluation that first blessed it, and
  * if that evaluation is in the pipeline root (same model, same eval config), its results are
    copied instead of recomputed, and the blessing is decided from its validation result.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tfx.components import Evaluator
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as stock_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact, artifact_utils, standard_component_specs
from tfx.utils import proto_utils

log = logging.getLogger(__name__)

_MODEL = standard_component_specs.MODEL_KEY
_BASELINE = standard_component_specs.BASELINE_MODEL_KEY
_EVALUATION = standard_component_specs.EVALUATION_KEY
_BLESSING = standard_component_specs.BLESSING_KEY
_EVAL_CONFIG = standard_component_specs.EVAL_CONFIG_KEY
_SAVED_CONFIG = "eval_config.json"


def _effective_eval_config(exec_properties: dict[str, Any]) -> dict | None:
    """The eval config as TFMA saves it for a run without a baseline."""
    if not exec_properties.get(_EVAL_CONFIG):
        return None
    config = tfma.EvalConfig()
    proto_utils.json_to_proto(exec_properties[_EVAL_CONFIG], config)
    config = tfma.utils.update_eval_config_with_defaults(
        config, has_baseline=False, rubber_stamp=True
    )
    return json_format.MessageToDict(config)


def find_previous_evaluation(output_uri: str, model_uri: str, eval_config: dict) -> Path | None:
    """An earlier evaluation in this pipeline root of the same model with the same config."""
    output = Path(output_uri)
    if not output.parent.is_dir():
        return None
    for candidate in sorted(output.parent.iterdir(), reverse=True):
        saved = candidate / _SAVED_CONFIG
        if candidate == output or not saved.is_file():
            continue
        try:
            meta = json.loads(saved.read_text())
        except (OSError, ValueError):
            continue
        locations = list(meta.get("modelLocations", {}).values())
        if (
            len(locations) == 1
            and Path(locations[0]).parent == Path(model_uri)
            and meta.get("evalConfig") == eval_config
            and tfma.load_validation_result(str(candidate)) is not None
        ):
            return candidate
    return None


def _write_blessing(
    input_dict: dict[str, list[artifact.Artifact]],
    output_dict: dict[str, list[artifact.Artifact]],
    evaluation_uri: str,
) -> bool:
    """The stock Evaluator's blessing protocol: marker file plus MLMD custom properties."""
    model = input_dict[_MODEL][0]
    blessing = artifact_utils.get_single_instance(output_dict[_BLESSING])
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY,
                                        model.uri)
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
    blessed = tfma.load_validation_result(evaluation_uri).validation_ok
    marker = constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME
    Path(blessing.uri).mkdir(parents=True, exist_ok=True)
    (Path(blessing.uri) / marker).write_text("")
    blessing.set_int_custom_property(
        constants.ARTIFACT_PROPERTY_BLESSED_KEY,
        constants.BLESSED_VALUE if blessed else constants.NOT_BLESSED_VALUE,
    )
    return blessed


class Executor(stock_executor.Executor):
    def Do(  # noqa: N802 - TFX executor interface
        self,
        input_dict: dict[str, list[artifact.Artifact]],
        output_dict: dict[str, list[artifact.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        models, baselines = input_dict.get(_MODEL) or [], input_dict.get(_BASELINE) or []
        if models and baselines and models[0].id == baselines[0].id:
            input_dict = {**input_dict, _BASELINE: []}
            eval_config = _effective_eval_config(exec_properties)
            output_uri = artifact_utils.get_single_uri(output_dict[_EVALUATION])
            previous = eval_config and find_previous_evaluation(
                output_uri, models[0].uri, eval_config
            )
            if previous:
                shutil.copytree(previous, output_uri, dirs_exist_ok=True)
                blessed = _write_blessing(input_dict, output_dict, output_uri)
                log.info("model %d was already evaluated in %s: results reused (blessed: %s)",
                         models[0].id, previous, blessed)
                return
            log.info("baseline is the candidate itself (model %d): evaluating it once, without "
                     "a baseline", models[0].id)
        super().Do(input_dict, output_dict, exec_properties)


class ImageEvaluator(Evaluator):
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
