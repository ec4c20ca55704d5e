"""Each default is written once: the CLI's flags default to the config fields they set.

A default copied into cli/ (or into a component) can drift from the one the pipeline uses
without any other test noticing; these compare the parsed defaults of `run` and `compile-kfp`
with the fields of PipelineConfig, EvalThresholds and TrainerConfig, and ingest's.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from cli import build_parser


def _defaults(command: str) -> dict:
    return vars(build_parser().parse_args([command]))


def _field_defaults(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}


@pytest.mark.parametrize("command", ["run", "compile-kfp"])
def test_flags_default_to_the_config_fields_they_set(command: str) -> None:
    from pipeline.blessing import EvalThresholds
    from pipeline.config import DEFAULT_PIPELINE_NAME, DEFAULT_SCHEMA, PipelineConfig
    from trainer.config import DataConfig, TuningConfig

    args = _defaults(command)
    config = _field_defaults(PipelineConfig)
    assert args["max_label_drift"] == config["max_label_drift"]
    assert args["span"] == config["target_span"]
    assert args["spans"] == config["span_window"]
    assert args["accept_new_classes"] == config["accept_new_classes"]
    assert tuple(args["allow_anomaly"]) == config["allowed_anomaly_types"]
    assert str(args["schema"]) == config["schema_path"] == str(DEFAULT_SCHEMA)
    assert args["pipeline_name"] == DEFAULT_PIPELINE_NAME
    assert args["max_regression"] == _field_defaults(EvalThresholds)["max_regression"]
    assert args["cache_budget"] == _field_defaults(DataConfig)["cache_budget"]
    tuning = _field_defaults(TuningConfig)
    assert (args["tune"], args["tune_budget"]) == (tuning["trials"], tuning["budget_minutes"])
    assert args["tune_algorithm"] == str(tuning["algorithm"])
    from trainer.recipes import DEFAULT_TIME_BUDGET_MINUTES, choose_recipe

    budget = inspect.signature(choose_recipe).parameters["budget_minutes"].default
    assert args["time_budget"] == budget == DEFAULT_TIME_BUDGET_MINUTES


def test_run_defaults_to_the_config_beam_and_ingest_defaults() -> None:
    from ingest.builtin import BUILTIN_DATASETS
    from ingest.dataset import ingest
    from pipeline.config import LOCAL_BEAM_PRESETS, PipelineConfig

    args = _defaults("run")
    assert LOCAL_BEAM_PRESETS[args["beam"]] == _field_defaults(PipelineConfig)["beam_pipeline_args"]
    parameters = inspect.signature(ingest).parameters
    assert args["eval_fraction"] == parameters["eval_fraction"].default
    assert args["test_fraction"] == parameters["test_fraction"].default
    assert args["dataset"] in BUILTIN_DATASETS


def test_compile_defaults_to_the_kubeflow_beam_args() -> None:
    from kubeflow.compile import beam_args, kfp_runner_fields

    args = _defaults("compile-kfp")
    assert beam_args(args["beam"]) == kfp_runner_fields()["beam_pipeline_args"]


@pytest.mark.parametrize("command", ["runs", "lineage", "report"])
def test_commands_reading_the_store_default_to_runs_root_and_name(command: str) -> None:
    """`runs`, `lineage` and `report` find the records of a `run` that took no flags."""
    run = _defaults("run")
    reader = vars(build_parser().parse_args([command, *_required(command)]))
    assert (reader["root"], reader["pipeline_name"]) == (run["root"], run["pipeline_name"])


def _required(command: str) -> list[str]:
    """The least each command parses with (lineage names an artifact)."""
    return {"lineage": ["--model", "1"]}.get(command, [])


def test_the_data_gate_has_no_default_drift_of_its_own() -> None:
    """The factory always passes PipelineConfig's; a component default would be a second one."""
    from components.data_gate import DataGate

    parameter = inspect.signature(DataGate).parameters["max_label_drift"]
    assert parameter.default is inspect.Parameter.empty


def test_run_and_compile_map_the_shared_flags_alike() -> None:
    """config_from_args is the one mapping of the shared flags, for both commands."""
    from cli.run_config import config_from_args
    from pipeline.blessing import EvalThresholds
    from trainer.config import TrainerConfig

    flags = ["--pipeline-name", "p", "--span", "2", "--spans", "3", "--max-label-drift", "0.3",
             "--allow-anomaly", "SCHEMA_NEW_COLUMN", "--accept-new-classes"]
    for command in ("run", "compile-kfp"):
        args = build_parser().parse_args([command, *flags])
        config = config_from_args(
            args, pipeline_root="root", data_root="data", serving_dir="serving",
            model_name="m", trainer=TrainerConfig((8, 8, 1), ("a", "b")),
            thresholds=EvalThresholds(0.5),
            schema_path="schema.pbtxt", splits=("train", "eval"), spans=True)
        assert (config.pipeline_name, config.target_span, config.span_window,
                config.max_label_drift, config.allowed_anomaly_types,
                config.accept_new_classes) == ("p", 2, 3, 0.3, ("SCHEMA_NEW_COLUMN",), True)
