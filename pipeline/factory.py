"""The one pipeline factory: the component graph used by the local and the Kubeflow runner.

TFX classes are imported from their modules rather than `tfx.v1`, whose import pulls in the
Google Cloud extensions (google-cloud-aiplatform, a slow import on every CLI start).
"""

from __future__ import annotations

import json
from typing import Any

import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tfx.components import ExampleValidator, StatisticsGen, Transform
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.orchestration import data_types, metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import example_gen_pb2, pusher_pb2, trainer_pb2, tuner_pb2

from components.bulk_inferrer import ImageBulkInferrer
from components.data_gate import DataGate
from components.evaluator import ImageEvaluator
from components.example_gen import TFRecordExampleGen
from components.pusher import AtomicPusher
from components.trainer import ImageTrainer
from components.tuner import ImageTuner
from ingest.dataset import EVAL
from ingest.spans import HISTORY, split_pattern
from pipeline.config import PREPROCESSING_FN, RUN_FN, TUNER_FN, PipelineConfig
from schema import features
from schema.errors import (
    DATA_ROOT_PARAMETER,
    INFER_DATA_PARAMETER,
    PUSH_DESTINATION_PARAMETER,
    SPAN_PARAMETER,
    SPAN_WINDOW_PARAMETER,
    TRAINER_CONFIG_PARAMETER,
)
from trainer.tuning import max_trials


def build_eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Accuracy overall and per class, through the signature TF Serving clients call.

    Thresholds sit on the overall slice only: per-class accuracies are reported, not gated.
    """
    overall = tfma.SlicingSpec()
    thresholds = config.thresholds
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=features.SERVING_SIGNATURE,
                label_key=features.LABEL_KEY,
                prediction_key=features.OUTPUT_PROBABILITIES,
            )
        ],
        slicing_specs=[overall, tfma.SlicingSpec(feature_keys=[features.LABEL_KEY])],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(
                        class_name="SparseCategoricalAccuracy",
                        per_slice_thresholds=[
                            tfma.PerSliceMetricThreshold(
                                slicing_specs=[overall],
                                threshold=tfma.MetricThreshold(
                                    value_threshold=tfma.GenericValueThreshold(
                                        lower_bound={"value": thresholds.min_accuracy}
                                    ),
                                    change_threshold=tfma.GenericChangeThreshold(
                                        direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                        absolute={"value": -thresholds.max_regression},
                                    ),
                                ),
                            )
                        ],
                    ),
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                ]
            )
        ],
    )


EXAMPLE_GEN_ID = "ImportExampleGen"
BULK_INFERRER_ID = "BulkInferrer"



def _push_destination(config: PipelineConfig) -> pusher_pb2.PushDestination:
    return pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=config.push_base_directory)
    )


def runtime_parameter_values(config: PipelineConfig) -> dict[str, str | int]:
    """Kubeflow run-time parameters and their compiled values (the defaults of a run)."""
    values: dict[str, str | int] = {
        DATA_ROOT_PARAMETER: config.data_root,
        TRAINER_CONFIG_PARAMETER: json.dumps(config.trainer.to_dict()),
        PUSH_DESTINATION_PARAMETER: json_format.MessageToJson(_push_destination(config)),
    }
    if config.spans:
        values[SPAN_PARAMETER] = config.target_span
        values[SPAN_WINDOW_PARAMETER] = config.span_window
    if config.infer_data:
        values[INFER_DATA_PARAMETER] = config.infer_data
    return values


def create_pipeline(config: PipelineConfig) -> tfx_pipeline.Pipeline:
    values: dict[str, Any] = {
        DATA_ROOT_PARAMETER: config.data_root,
        TRAINER_CONFIG_PARAMETER: config.trainer.to_dict(),
        PUSH_DESTINATION_PARAMETER: _push_destination(config),
        SPAN_PARAMETER: config.target_span,
        SPAN_WINDOW_PARAMETER: config.span_window,
        INFER_DATA_PARAMETER: config.infer_data,
    }
    if config.orchestrator == "kubeflow":
        # Set per run in the KFP UI/API without recompiling: the data (and its span window),
        # the whole training config (JSON of trainer/config.py:TrainerConfig) and where models
        # are pushed.
        values.update({
            name: data_types.RuntimeParameter(name, ptype=type(value), default=value)
            for name, value in runtime_parameter_values(config).items()
        })
    data_root = values[DATA_ROOT_PARAMETER]
    push_destination = values[PUSH_DESTINATION_PARAMETER]
    example_gen = TFRecordExampleGen(
        input_base=data_root,
        input_config=example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(name=split, pattern=split_pattern(split, config.spans))
                for split in config.example_splits
            ]
        ),
        target_span=values[SPAN_PARAMETER],
        span_window=values[SPAN_WINDOW_PARAMETER],
    ).with_id(EXAMPLE_GEN_ID)
    schema_gen = ImportSchemaGen(schema_file=config.schema_path)
    # With the schema, StatisticsGen counts each class (the label is categorical there);
    # semantic-domain statistics detect image formats, which the schema's image_domain checks.
    statistics_gen = StatisticsGen(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        stats_options=tfdv.StatsOptions(enable_semantic_domain_stats=True),
        # The window's earlier spans were checked when they were new: the newest span alone.
        exclude_splits=[HISTORY] if config.spans else None,
    )
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    # Drift baseline: the statistics stored with the served version (serving/model_dir.py).
    data_gate = DataGate(
        statistics=statistics_gen.outputs["statistics"],
        anomalies=example_validator.outputs["anomalies"],
        schema=schema_gen.outputs["schema"],
        examples=example_gen.outputs["examples"],
        push_destination=push_destination,
        data_root=data_root,
        accept_new_classes=config.accept_new_classes,
        allowed_anomaly_types=config.allowed_anomaly_types,
        max_label_drift=config.max_label_drift,
    )
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        # Only what preprocessing reads, so training knobs do not invalidate Transform's cache.
        custom_config=config.trainer.preprocessing_config(),
        # The Trainer applies the transform graph itself and caches the result in memory;
        # materialized float images would be ~12 KB per CIFAR example on disk.
        materialize=False,
        # StatisticsGen has the raw statistics. Transform's own would transform every split to
        # profile image_xf, H*W*C floats an example: for large images (CIFAR-10's 60,000 at
        # 128x128 are 11.8 GB of float32) memory runs out before the analysis ends.
        disable_statistics=True,
    )
    # Nothing trains on data the gate rejected.
    transform.add_upstream_node(data_gate)
    # With skip_if_unchanged the Trainer reads the gate's record (gate.json) and may hand on the
    # served model (components/trainer.py); it then re-executes every run, as the gate does.
    skip = config.trainer.continuity.skip_if_unchanged
    # What the Tuner and the Trainer both read. The Trainer fits `train` (and `history`: a
    # span window's earlier spans); early stopping and checkpoint choice look at `eval` only.
    training_inputs: dict[str, Any] = dict(
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=trainer_pb2.TrainArgs(splits=list(config.train_splits)),
        eval_args=trainer_pb2.EvalArgs(splits=[EVAL]),
        custom_config=values[TRAINER_CONFIG_PARAMETER],
    )
    # With tuning on, TFX's Tuner searches the recipe's space first (trials fit `train`, are
    # scored on `eval`) and its best hyperparameters reach the Trainer (trainer/tuning.py).
    # Whether it exists is decided here, at compile time on Kubeflow; tuner_fn refuses a
    # run-time config that turns tuning off.
    tuner = ImageTuner(
        tuner_fn=TUNER_FN,
        **training_inputs,
        # Beam on worker processes (`--beam direct-multi`, the Kubeflow pods): trials side by
        # side too, as many as may run (the Tuner runs at most one per core).
        tune_args=tuner_pb2.TuneArgs(num_parallel_trials=max_trials(config.trainer))
        if "--direct_running_mode=multi_processing" in config.beam_pipeline_args else None,
    ).with_id("Tuner") if config.trainer.tuning.enabled else None
    trainer = ImageTrainer(
        run_fn=RUN_FN,
        **training_inputs,
        data_gate=data_gate.outputs["validated_statistics"] if skip else None,
        push_destination=push_destination if skip else None,
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
    ).with_id("Trainer")
    # Baseline: the model in production, the newest version in the push destination.
    evaluator = ImageEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        eval_config=build_eval_config(config),
        example_splits=[config.evaluation_split],
        push_destination=push_destination,
        schema=schema_gen.outputs["schema"],
        blessing_rule=config.thresholds.record(),
    ).with_id("Evaluator")
    # Stages, verifies and renames into place; an identical model is not pushed twice. The
    # gate's accepted statistics travel with the version as the next drift baseline.
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=push_destination,
        statistics=data_gate.outputs["validated_statistics"],
    ).with_id("Pusher")
    components = [example_gen, schema_gen, statistics_gen, example_validator, data_gate,
                  transform, *([tuner] if tuner else []), trainer, evaluator, pusher]
    if config.infer_data:
        # Scores the folder with the version this run pushed, or else the served one.
        components.append(ImageBulkInferrer(
            pushed_model=pusher.outputs["pushed_model"],
            data=values[INFER_DATA_PARAMETER],
            push_destination=push_destination,
        ).with_id(BULK_INFERRER_ID))

    connection = (
        metadata.sqlite_metadata_connection_config(config.metadata_path)
        if config.metadata_path
        else None
    )
    return tfx_pipeline.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=connection,
        beam_pipeline_args=list(config.beam_pipeline_args),
    )


def uncached_node_ids(pipeline: tfx_pipeline.Pipeline) -> list[str]:
    """Nodes that read the served model, which changes outside the pipeline: never cached.

    Both runners apply it (pipeline/local_runner.py and kubeflow/compile.py), so a re-run after
    a push, or after a version was removed, always compares with what is served now.
    """
    return [c.id for c in pipeline.components if getattr(c, "READS_PRODUCTION", False)]
