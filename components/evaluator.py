"""The stock TFMA Evaluator with the model in production as its baseline.

The baseline is the newest version in the push destination (serving/model_dir.py), not an
ML Metadata resolver: any orchestrator can read a folder, while open-source Kubeflow Pipelines
cannot run resolver tasks. The served version is copied into the execution's temporary folder
first (a snapshot, which Beam workers can read wherever the pipeline root is), and
`baseline.json` in the evaluation output records which version it was.

When the production model is the candidate itself (an unchanged re-run, where the Trainer is
cached and its model was pushed):
  * the baseline is dropped (no change threshold can fail against oneself; value thresholds
    still apply), which makes the work identical to the evaluation that first blessed it, and
  * if that evaluation is in the pipeline root (same model, same eval config), its results are
    copied instead of recomputed, and the blessing is decided from its validation result.
The Evaluator is never cached (`READS_PRODUCTION`): the served version changes outside the
pipeline, and a cached blessing would be relative to a model that may no longer be served.

TFX internals this relies on, checked against TFX 1.16.0 and TFMA 0.47.0 (no public API offers
either): reusing an evaluation writes the stock Evaluator's blessing itself (`_write_blessing`:
the BLESSED / NOT_BLESSED marker file and the `blessed`, `current_model` custom properties of
tfx/components/evaluator/constants.py, which TFX's own Pusher and our report read), and
`find_previous_evaluation` reads the `eval_config.json` TFMA saves next to its metrics
(`modelLocations`, `evalConfig`). What it saves: the whole evaluation on every unchanged re-run,
on the digits (bench/results/rerun.json) and on CIFAR-10's test images with test-time
augmentation (bench/results/cifar10.json). tests/test_pipeline_e2e.py
runs a re-run that reuses an evaluation and a regressed model that is not blessed, so an
upgrade that changes either format fails there.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tfx import types
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as stock_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact, artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import io_utils, path_utils, proto_utils

from components.tflite_evaluation import (
    TfliteScores,
    judged,
    rejudged,
    saved_model_accuracy,
    score_tflite,
    scoring_in_background,
    unscored,
    write_verdict,
)
from serving.model_dir import (
    EvaluationRecord,
    ProductionModel,
    join,
    model_digest,
    new_model,
    production_model,
    push_base,
    served_class_names,
)
from serving.new_model import NewModel
from serving.predict import error_line
from serving.tflite import DEFAULT_MAX_TFLITE_DROP, TFLITE_DIR, TfliteEvaluation

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


PUSH_DESTINATION_KEY = "push_destination"
# JSON of pipeline/blessing.py EvalThresholds.record(): the bar and why it is what it is.
BLESSING_RULE_KEY = "blessing_rule"


def evaluation_record(
    candidate: str, production: ProductionModel | None, base: str | None,
    blessing_rule: dict[str, Any] | None,
) -> EvaluationRecord:
    """What this evaluation compares: the served version, or why there is none to compare."""
    served = production.provenance() if production else None
    note: NewModel | None = (new_model(base, served_class_names(candidate) or []) if base
                             and production is None else None)
    # The same model even when the served version went out without the candidate's TFLite
    # file (the Pusher leaves out one the Evaluator did not bless).
    same = bool(served and model_digest(served.path, (TFLITE_DIR,))
                == model_digest(candidate, (TFLITE_DIR,)))
    return EvaluationRecord(
        candidate=candidate, production=served, blessing_rule=blessing_rule, new_model=note,
        baseline_is_candidate=same,
        class_map_changed=bool(production and not same and served_class_names(candidate)
                               != served_class_names(production.path)),
    )


def _serving_dir(model: artifact.Artifact) -> str:
    return path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))


class Executor(stock_executor.Executor):
    # The TFX executor interface, the same in every executor (`duplicates` pairs them).
    def Do(  # noqa: N802 - TFX executor interface
        self,
        input_dict: dict[str, list[artifact.Artifact]],
        output_dict: dict[str, list[artifact.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        candidate = artifact_utils.get_single_instance(input_dict[_MODEL])
        base = push_base(exec_properties.get(PUSH_DESTINATION_KEY))
        # Loaded in full: TFMA loads the baseline next, and would fail naming its snapshot.
        production = production_model(base, load=True)
        output_uri = artifact_utils.get_single_uri(output_dict[_EVALUATION])
        # How the default accuracy bar was set (pipeline/blessing.py), for the report.
        provenance = evaluation_record(
            _serving_dir(candidate), production, base,
            json.loads(exec_properties.get(BLESSING_RULE_KEY) or "null"))
        input_dict = {**input_dict, _BASELINE: []}
        previous = (self._previous_evaluation(candidate, output_uri, exec_properties)
                    if provenance.baseline_is_candidate else None)
        # A reused evaluation that holds the TFLite score is judged again, not scored; one
        # without it (the scoring failed, or came before the score was kept) is scored.
        reused = TfliteEvaluation.read(str(previous)) if previous else None
        with scoring_in_background(None if reused else functools.partial(
                _score_tflite, candidate, input_dict, exec_properties)) as tflite_scores:
            if previous:
                shutil.copytree(previous, output_uri, dirs_exist_ok=True)
                blessed = _write_blessing(input_dict, output_dict, output_uri)
                log.info("model %d was already evaluated in %s: results reused (blessed: %s)",
                         candidate.id, previous, blessed)
            else:
                self._run_tfma(provenance, production, input_dict, output_dict,
                               exec_properties)
            provenance.write(output_uri)
            blessing = artifact_utils.get_single_instance(output_dict[_BLESSING])
            self._judge_tflite(candidate, reused, tflite_scores, output_uri, blessing,
                               exec_properties)
        if production is not None and not (provenance.baseline_is_candidate
                                           or provenance.class_map_changed):
            blessing.set_string_custom_property(
                constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, production.path)
            blessing.set_int_custom_property("baseline_version", production.version)

    def _run_tfma(self, provenance: EvaluationRecord, production: ProductionModel | None,
                  input_dict: dict[str, list[artifact.Artifact]],
                  output_dict: dict[str, list[artifact.Artifact]],
                  exec_properties: dict[str, Any]) -> None:
        """The stock Evaluator (TFMA), with the served version as its baseline when there is
        one to compare with.
        """
        candidate = input_dict[_MODEL][0]
        if provenance.baseline_is_candidate:
            log.info("the served version is the candidate itself (model %d): evaluating it "
                     "once, without a baseline", candidate.id)
        elif provenance.class_map_changed:
            # Label ids mean other classes in the served model (accepted at the gate with
            # --accept-new-classes): no comparison, value thresholds only.
            log.info("new class map: the served version %d is not a baseline",
                     production.version)
        elif production is not None:
            snapshot = join(self._get_tmp_dir(), "production-model")
            io_utils.copy_dir(production.path, path_utils.serving_model_dir(snapshot))
            baseline = standard_artifacts.Model()
            baseline.uri = snapshot
            log.info("baseline: served version %d (%s)", production.version, production.path)
            try:
                super().Do({**input_dict, _BASELINE: [baseline]}, output_dict, exec_properties)
            finally:
                fileio.rmtree(snapshot)
            return
        else:
            log.info("%s: evaluating the candidate without a baseline",
                     "new model directory" if provenance.new_model
                     else "no loadable served version")
        super().Do(input_dict, output_dict, exec_properties)

    def _judge_tflite(self, candidate: artifact.Artifact, reused: TfliteEvaluation | None,
                      tflite_scores: Callable[[], TfliteScores | None], output_uri: str,
                      blessing: artifact.Artifact, exec_properties: dict[str, Any]) -> None:
        """Judges the candidate's TFLite model (if it has one) on its scores from the
        evaluation split, or re-judges the score of a reused evaluation (`reused`, copied into
        output_uri with it) under this run's max_tflite_drop, and leaves the verdict for the
        Pusher. A TFLite model that cannot be scored is not pushed, and the SavedModel's
        blessing stands: its failure is logged, never the run's.
        """
        rule = json.loads(exec_properties.get(BLESSING_RULE_KEY) or "null") or {}
        max_drop = float(rule.get("max_tflite_drop", DEFAULT_MAX_TFLITE_DROP))
        try:
            if reused is not None:
                evaluation = rejudged(reused, max_drop)
            else:
                scores = tflite_scores()
                evaluation = scores and judged(scores, _serving_dir(candidate),
                                               saved_model_accuracy(output_uri), max_drop)
        except Exception as e:  # noqa: BLE001 - the TFLite model's failure is not the run's
            log.warning("the TFLite model could not be scored; the version goes without it",
                        exc_info=True)
            write_verdict(blessing.uri, False, unscored(f"{e.__class__.__name__}: "
                                                        f"{error_line(e)}"))
            blessing.set_int_custom_property("tflite_blessed", 0)
            return
        if evaluation is None:
            return
        if evaluation != reused:  # a reused verdict that still holds stays the copied file
            evaluation.write(output_uri)
        write_verdict(blessing.uri, evaluation.blessed, evaluation.why)
        blessing.set_int_custom_property("tflite_blessed", int(evaluation.blessed))

    def _previous_evaluation(self, candidate: artifact.Artifact, output_uri: str,
                             exec_properties: dict[str, Any]) -> Path | None:
        """An earlier evaluation of this very model under the same eval config, if the
        pipeline root holds one: the served version is the candidate, so it is reused.
        """
        eval_config = _effective_eval_config(exec_properties)
        return (find_previous_evaluation(output_uri, candidate.uri, eval_config)
                if eval_config else None)


def _score_tflite(candidate: artifact.Artifact, input_dict: dict[str, list[artifact.Artifact]],
                  exec_properties: dict[str, Any], stop: threading.Event) -> TfliteScores | None:
    """The candidate's TFLite model scored on the evaluation split (the one split TFMA
    evaluates), in scoring_in_background's thread.
    """
    (split,) = json.loads(exec_properties[standard_component_specs.EXAMPLE_SPLITS_KEY])
    split_uri = artifact_utils.get_split_uri(
        input_dict[standard_component_specs.EXAMPLES_KEY], split)
    return score_tflite(_serving_dir(candidate), split, split_uri, stop)


class ImageEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    PARAMETERS = {
        **standard_component_specs.EvaluatorSpec.PARAMETERS,
        # The Pusher's destination: its newest version is the baseline.
        PUSH_DESTINATION_KEY: ExecutionParameter(type=pusher_pb2.PushDestination, optional=True),
        BLESSING_RULE_KEY: ExecutionParameter(type=str, optional=True),
    }


# TFX component boilerplate: the spec's channels and parameters passed through, the shape every
# component here has (`duplicates` pairs them; there is no logic to share).
class ImageEvaluator(base_component.BaseComponent):
    READS_PRODUCTION = True
    SPEC_CLASS = ImageEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        eval_config: tfma.EvalConfig,
        example_splits: list[str],
        push_destination: pusher_pb2.PushDestination | Any = None,
        schema: types.BaseChannel | None = None,
        blessing_rule: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(spec=ImageEvaluatorSpec(
            examples=examples,
            model=model,
            schema=schema,
            eval_config=eval_config,
            example_splits=json.dumps(example_splits),
            push_destination=push_destination,
            blessing_rule=json.dumps(blessing_rule) if blessing_rule else None,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        ))
