"""TFX's Tuner stage (trainer/tuning.py, components/tuner.py): the recipe's search space, the
hyperparameters applied through the config's one override path, the budget refused before
anything runs, and `run --tune 2` on tiny data whose best trial's settings reach the Trainer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imagegen
from cli import build_parser, main
from cli.common import EXIT_BAD_INPUT
from conftest import run_artifact, run_cli
from schema.errors import BadInput
from trainer.config import TrainerConfig, TuneAlgorithm, TuningConfig
from trainer.recipes import from_recipe
from trainer.tuning import (
    TuningRecord,
    check_budget,
    max_epochs,
    search_space,
    searched,
    trial_estimate,
    trials_text,
    tuned_config,
)


def _config(recipe: str, **changes) -> TrainerConfig:
    shape = (224, 224, 3) if recipe == "transfer" else (28, 28, 1)
    return from_recipe(recipe, shape, ["a", "b"], changes)


def test_each_recipe_searches_its_own_small_space_around_its_values() -> None:
    paths = {recipe: [d.path for d in search_space(_config(recipe))]
             for recipe in ("classic", "fast", "fast-gray", "fast-wide", "transfer")}
    scratch_fast = ["optimizer.learning_rate", "model.widths", "optimizer.epochs"]
    assert paths == {
        "classic": ["optimizer.learning_rate", "model.base_filters", "optimizer.epochs"],
        "fast": scratch_fast, "fast-gray": scratch_fast, "fast-wide": scratch_fast,
        "transfer": ["model.dropout", "model.fine_tune_blocks", "optimizer.learning_rate"],
    }
    gray = {d.path: d for d in search_space(_config("fast-gray"))}
    assert gray["model.widths"].choices == ("16,32,72", "24,48,96", "32,64,120")
    assert (gray["optimizer.epochs"].low, gray["optimizer.epochs"].high) == (5, 13)  # 8 x 0.6..1.6
    rate = gray["optimizer.learning_rate"]
    assert rate.low < _config("fast-gray").optimizer.learning_rate < rate.high and rate.log_scale
    # Hyperband decides the epochs itself, up to the top of the epochs range.
    hyperband = _config("fast-gray", **{"tuning.algorithm": "hyperband"})
    assert "optimizer.epochs" not in [d.path for d in searched(hyperband)]
    assert max_epochs(hyperband) == 13


def test_a_trials_hyperparameters_are_applied_as_overrides_by_dotted_path() -> None:
    config = _config("fast-gray")
    tuned = tuned_config(config, {"space": [], "values": {
        "optimizer.learning_rate": 0.7, "model.widths": "16,32,72", "optimizer.epochs": 4}})
    assert tuned == config.override({"optimizer.learning_rate": 0.7,
                                     "model.widths": (16, 32, 72), "optimizer.epochs": 4})
    # Hyperband's epochs are the Trainer's; its bookkeeping is not a setting.
    hyperband = tuned_config(config, {"optimizer.learning_rate": 0.7, "tuner/epochs": 6,
                                      "tuner/round": 1, "tuner/bracket": 2})
    assert (hyperband.optimizer.epochs, hyperband.optimizer.learning_rate) == (6, 0.7)
    assert tuned_config(config, None) is config
    with pytest.raises(BadInput, match="unknown training setting"):
        tuned_config(config, {"values": {"optimizer.nothing": 1}})


def test_every_searched_value_is_a_valid_config() -> None:
    """Each end of each range, applied, passes the config's checks."""
    for recipe in ("classic", "fast", "fast-gray", "transfer"):
        config = _config(recipe)
        for dimension in search_space(config):
            for value in dimension.choices or (dimension.low, dimension.high):
                if dimension.integer:
                    value = int(value)
                tuned_config(config, {dimension.path: value})


def test_a_budget_too_small_for_one_trial_is_refused_stating_the_estimate() -> None:
    config = _config("fast-gray", **{"tuning.budget_minutes": 0.5})
    with pytest.raises(BadInput) as error:
        check_budget(config, 60000, 6000)
    text = str(error.value)
    assert "the tuning budget of 0.5 min is too small for one trial" in text
    assert "60,000 train images x 5 epoch(s)" in text and "images/s" in text
    # fast-gray's trials each train its two networks.
    assert "x 2 networks (model.members)" in text
    one, _ = trial_estimate(config.override({"model.members": 1}), 60000, 6000)
    assert trial_estimate(config, 60000, 6000)[0] == pytest.approx(2 * one)
    assert "bench/results/" in text
    assert [s.name for s in error.value.settings] == ["trainer.tuning.budget_minutes",
                                                      "trainer.tuning.trials"]
    assert "one trial takes at least about" in check_budget(
        config.override({"tuning.budget_minutes": 10}), 60000, 6000)
    assert check_budget(_config("fast-gray", **{"tuning.trials": 3}), 60000, 6000) == ""


def test_the_tune_flags_set_the_tuning_settings_and_default_to_them() -> None:
    from cli.training import flag_settings

    defaults = vars(build_parser().parse_args(["run"]))
    assert (defaults["tune"], defaults["tune_budget"], defaults["tune_algorithm"]) == (
        TuningConfig().trials, TuningConfig().budget_minutes, str(TuningConfig().algorithm))
    assert not TuningConfig().enabled
    args = build_parser().parse_args(["run", "--tune", "3", "--tune-budget", "2.5",
                                      "--tune-algorithm", "hyperband"])
    config = _config("classic", **flag_settings(args))
    assert config.tuning == TuningConfig(3, 2.5, TuneAlgorithm.HYPERBAND)
    assert config.tuning.enabled


def test_the_run_refuses_a_tuning_budget_too_small_before_the_pipeline_runs(
        tmp_path: Path, capsys) -> None:
    from schema.curated import write_schema

    imagegen.write_folder(tmp_path / "images", {"train": 12, "test": 4})
    write_schema(len(imagegen.CLASS_NAMES), tmp_path / "schema.pbtxt")
    code = main(["run", "--recipe", "classic", "--data", str(tmp_path / "images"),
                 "--root", str(tmp_path / "root"), "--schema", str(tmp_path / "schema.pbtxt"),
                 "--tune-budget", "0.0001"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, err
    assert "the tuning budget of 0.0001 min is too small for one trial" in err
    assert "train images x 15 epoch(s)" in err
    assert "raise --tune-budget" in err and "--tune" in err
    assert not (tmp_path / "root" / "pipelines").exists()  # nothing ran


@pytest.mark.pipeline
def test_tune_2_runs_two_trials_and_the_best_settings_reach_the_trainer(tmp_path: Path) -> None:
    from report.summary import summarize_run
    from schema.curated import write_schema
    from trainer.record import TrainingRecord

    imagegen.write_folder(tmp_path / "images", {"train": 12, "test": 4})
    write_schema(len(imagegen.CLASS_NAMES), tmp_path / "schema.pbtxt")
    # classic on 8x8 images: learning rate, base_filters in [4, 8], epochs in [1, 2].
    code, out, err = run_cli([
        "run", "--recipe", "classic", "--data", str(tmp_path / "images"),
        "--root", str(tmp_path / "root"), "--serving-dir", str(tmp_path / "serving"),
        "--schema", str(tmp_path / "schema.pbtxt"), "--pipeline-name", "tune",
        "--epochs", "1", "--batch-size", "3", "--set", "base_filters=4", "--set",
        "dense_units=8", "--tflite", "none", "--min-accuracy", "0", "--tune", "2"])
    assert code == 0, "\n".join(err)
    metadata = str(tmp_path / "root" / "metadata" / "tune.sqlite")
    summary = summarize_run(metadata, "tune")
    results = run_artifact(metadata, summary.run_id, "TunerResults")
    record = TuningRecord.read(results.uri)
    assert record is not None and len(record.trials) == 2
    assert record.algorithm == "random" and record.split == "eval" and record.max_trials == 2
    assert all(t.eval_accuracy is not None and t.seconds > 0 for t in record.trials)
    assert set(record.trials[0].settings) == {"optimizer.learning_rate", "model.base_filters",
                                              "optimizer.epochs"}
    best = record.best()
    assert best is not None
    assert best.eval_accuracy == max(t.eval_accuracy for t in record.trials)
    # The Trainer trained the best trial's settings, and recorded them as its config.
    model_run = run_artifact(metadata, summary.run_id, "ModelRun")
    trained = TrainerConfig.from_dict(TrainingRecord.read(model_run.uri).config).settings()
    assert {path: trained[path] for path in best.settings} == best.settings
    assert trained["tuning.trials"] == 2
    assert any("(best)" in line for line in trials_text(record))
    console = "\n".join(out)
    assert "Tuned:" in console and "2 trials" in console
    assert "Search: Running Trial" not in console  # KerasTuner's display is off


def _record() -> TuningRecord:
    from trainer.tuning import TrialRecord

    return TuningRecord(
        algorithm="random", recipe="fast-gray",
        defaults={"optimizer.learning_rate": 1.5, "model.widths": [24, 48, 96],
                  "optimizer.epochs": 5},
        space=("optimizer.learning_rate in [0.5, 4.5] (log)",), max_trials=2,
        budget_minutes=10, best_trial="1", seconds=130.0, stopped="2 trial(s) run",
        trials=(TrialRecord("0", {"optimizer.learning_rate": 0.712345, "optimizer.epochs": 4},
                            0.981, 61.0, 4),
                TrialRecord("1", {"optimizer.learning_rate": 2.25, "optimizer.epochs": 7},
                            0.9905, 68.5, 7)))


def test_the_record_reads_back_and_the_summary_lists_every_trial(tmp_path: Path) -> None:
    from report.summary import RunSummary, format_summary

    record = _record()
    record.write(tmp_path)
    assert TuningRecord.read(tmp_path) == record and record.best() == record.trials[1]
    lines = list(format_summary(RunSummary("p", "r", [], tuning=record)))
    tuned = [line for line in lines if "Tuned:" in line or "trial " in line]
    assert tuned == [
        "  Tuned: random search of fast-gray's space, 2 trials on the eval split in 130s, "
        "budget 10 min (2 trial(s) run); best trial 1, eval accuracy 0.9905, trained by the "
        "Trainer",
        "    trial 0: optimizer.learning_rate=0.7123, optimizer.epochs=4: eval accuracy 0.9810, "
        "61s",
        "    trial 1: optimizer.learning_rate=2.25, optimizer.epochs=7: eval accuracy 0.9905, "
        "68s (best)"]
    assert '"tuning": {' in RunSummary("p", "r", [], tuning=record).to_json()


def test_the_report_shows_a_tuning_table_with_a_row_per_trial() -> None:
    import reportfacts
    from report.html import render
    from report.records import TrainingFacts

    page = render(reportfacts.report_facts(training=TrainingFacts(config={}, tuning=_record())))
    assert "<h3>Tuning</h3>" in page and "random search of fast-gray" in page
    assert page.count("optimizer.learning_rate=") == 2 + 1  # two rows, the recipe's values
    assert ">best<" in page
    assert "<h3>Tuning</h3>" not in render(reportfacts.report_facts(
        training=TrainingFacts(config={})))


def test_parallel_trials_run_side_by_side_in_processes_of_their_own(prepared, tmp_path,
                                                                     caplog, capsys) -> None:
    """`--beam direct-multi`: the Tuner's executor sets `parallel`; each trial trains in
    `python -m trainer.tuning_worker` on the same files the in-process trials read.
    """
    import logging

    from trainer.tuning import TrialInputs, make_tuner

    config = from_recipe("classic", (8, 8, 3), imagegen.CLASS_NAMES, {
        "optimizer.epochs": 1, "optimizer.batch_size": 16, "model.base_filters": 4,
        "model.dense_units": 8, "tuning.trials": 2, "runtime.precision": "float32"})
    tuner = make_tuner(config, lambda trial: pytest.fail("trained in this process"),
                       str(tmp_path))
    tuner.trial_inputs = TrialInputs(prepared.transform_graph, tuple(prepared.train_files),
                                     tuple(prepared.eval_files))
    tuner.parallel = 2
    with caplog.at_level(logging.INFO, logger="trainer.tuning"):
        tuner.search(verbose=0)
    record = tuner.record()
    assert len(record.trials) == 2 and record.stopped == "2 trial(s) run"
    assert all(0 <= t.eval_accuracy <= 1 and t.seconds > 0 and t.epochs_run for t in record.trials)
    assert record.best_trial == tuner.oracle.get_best_trials(1)[0].trial_id
    assert "up to 2 trials at a time, each in its own process" in caplog.text
    assert capsys.readouterr().out == ""  # KerasTuner's display is off: stdout is run --json's


@pytest.mark.parametrize("beam", ["in-process", "direct-multi"])
def test_the_factory_adds_the_tuner_only_when_tuning_and_feeds_the_trainer(beam: str) -> None:
    from pipeline.blessing import EvalThresholds
    from pipeline.config import LOCAL_BEAM_PRESETS, TUNER_FN, PipelineConfig
    from pipeline.factory import create_pipeline

    def pipeline(**tuning):
        config = PipelineConfig(
            pipeline_name="p", pipeline_root="/tmp/root", data_root="/tmp/data",
            serving_dir="/tmp/serving", model_name="m",
            trainer=from_recipe("classic", (8, 8, 3), ["a", "b"], tuning),
            thresholds=EvalThresholds(min_accuracy=0.0),
            beam_pipeline_args=LOCAL_BEAM_PRESETS[beam])
        return {c.id: c for c in create_pipeline(config).components}

    assert "Tuner" not in pipeline()
    assert pipeline()["Trainer"].inputs.get("hyperparameters") is None
    components = pipeline(**{"tuning.trials": 3})
    tuner, trainer = components["Tuner"], components["Trainer"]
    assert list(components).index("Tuner") < list(components).index("Trainer")
    assert trainer.inputs["hyperparameters"] is tuner.outputs["best_hyperparameters"]
    assert tuner.exec_properties["tuner_fn"] == TUNER_FN
    assert json.loads(tuner.exec_properties["eval_args"]) == {"splits": ["eval"]}
    tune_args = json.loads(tuner.exec_properties["tune_args"] or "{}")
    # Trials side by side only where Beam runs on worker processes.
    assert tune_args.get("num_parallel_trials", 1) == (3 if beam == "direct-multi" else 1)


def test_the_trainer_reads_the_tuners_best_hyperparameters_as_run_fn_gets_them(
        tmp_path: Path) -> None:
    """components/trainer.py reads best_hyperparameters.txt for the skip-if-unchanged
    comparison, as TFX's Trainer reads it for run_fn: the tuned config is the one compared.
    """
    from tfx.types import standard_artifacts, standard_component_specs

    from components.trainer import best_hyperparameters

    artifact = standard_artifacts.HyperParameters()
    artifact.uri = str(tmp_path)
    config = {"space": [], "values": {"optimizer.learning_rate": 0.5, "model.widths": "16,32"}}
    (tmp_path / "best_hyperparameters.txt").write_text(json.dumps(config))
    read = best_hyperparameters({standard_component_specs.HYPERPARAMETERS_KEY: [artifact]})
    assert read == config and best_hyperparameters({}) is None
    tuned = tuned_config(_config("fast-gray"), read)
    assert (tuned.optimizer.learning_rate, tuned.model.widths) == (0.5, (16, 32))


def test_a_trial_records_settings_apply_as_they_were_recorded() -> None:
    """A TrialRecord's settings are JSON values (model.widths a list): bench/tune.py applies
    the best trial's with tuned_config, as the Trainer applies TFX's best_hyperparameters.
    """
    from trainer.tuning import TrialRecord, applied

    config = _config("fast-gray")
    values = {"optimizer.learning_rate": 0.7, "model.widths": "16,32,72", "optimizer.epochs": 4}
    record = TrialRecord("0", applied(tuned_config(config, values), values), 0.98, 10.0, 4)
    assert record.settings["model.widths"] == [16, 32, 72]
    tuned = tuned_config(config, record.settings)
    assert tuned == tuned_config(config, values)
    assert (tuned.model.widths, tuned.optimizer.epochs) == ((16, 32, 72), 4)
    assert tuned_config(config, json.loads(json.dumps(record.settings))) == tuned


def test_the_tuner_refuses_a_run_time_config_that_turns_tuning_off() -> None:
    """On Kubeflow the Tuner exists when compiled with --tune; a run-time trainer-config with
    trials and budget 0 would otherwise search BUDGET_ONLY_TRIALS trials with no budget.
    """
    from types import SimpleNamespace

    from trainer.tuning import tuner_fn

    fn_args = SimpleNamespace(custom_config=_config("fast-gray").to_dict())
    with pytest.raises(BadInput) as error:
        tuner_fn(fn_args)
    assert "compiled with a Tuner" in str(error.value)
    assert "run-time training config turns tuning off" in str(error.value)
    assert [s.name for s in error.value.settings][0] == "trainer.tuning.trials"


def test_the_trainer_warns_when_the_config_asks_for_tuning_but_no_tuner_ran(caplog) -> None:
    import logging

    from trainer.tuning import warn_untuned

    tuned = _config("fast-gray", **{"tuning.trials": 3})
    with caplog.at_level(logging.WARNING, logger="trainer.tuning"):
        assert warn_untuned(tuned, None)
    assert "has no Tuner (it was compiled with tuning off)" in caplog.text
    assert not warn_untuned(tuned, {"space": [], "values": {"optimizer.epochs": 4}})
    assert not warn_untuned(_config("fast-gray"), None)


def test_a_trial_process_exchanges_its_result_in_a_local_folder_with_its_memory_share(
        monkeypatch, tmp_path) -> None:
    """Not under the Tuner's working dir (gs:// on Kubeflow): a local temporary folder; the
    process gets its share of the cache budget.
    """
    import tempfile

    import trainer.launch
    from trainer.config import TrainerConfig
    from trainer.tuning import TrialInputs, TrialResult, process_trainer, usable_cpus

    seen = {}

    def run_worker(args, module, what, **callbacks):
        folder = args[args.index("--result") + 1]
        seen["folder"] = folder
        seen["config"] = TrainerConfig.from_dict(json.loads(args[args.index("--config") + 1]))
        seen["threads"] = args[args.index("--threads") + 1]
        TrialResult(eval_accuracy=0.5, epochs_run=2).write(folder)

    monkeypatch.setattr(trainer.launch, "run_worker", run_worker)
    trial = process_trainer(TrialInputs("graph", ("train*",), ("eval*",)), 3, "123456")
    assert trial(_config("fast-gray")) == {"final_eval_accuracy": 0.5, "epochs_run": 2}
    assert Path(seen["folder"]).parent == Path(tempfile.gettempdir())
    assert seen["config"].data.cache_budget == "123456" and seen["threads"] == "3"
    assert 1 <= usable_cpus() <= (__import__("os").cpu_count() or 1)


def test_a_failed_parallel_trial_ends_its_siblings_processes_at_once(monkeypatch,
                                                                      tmp_path) -> None:
    import subprocess
    import sys
    import threading
    import time

    import trainer.tuning
    from trainer.tuning import TrialInputs, make_tuner

    started: list[subprocess.Popen] = []
    calls = []
    lock = threading.Lock()

    def process_trainer(inputs, threads, cache_budget, processes):
        def trial(config):
            with lock:
                calls.append(config)
                first = len(calls) == 1
            if not first:
                time.sleep(1)
                raise RuntimeError("trial failed")
            process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            started.append(process)
            processes.started(process)
            try:
                process.wait()
            finally:
                processes.ended(process)
            raise RuntimeError("terminated")
        return trial

    monkeypatch.setattr(trainer.tuning, "process_trainer", process_trainer)
    config = _config("classic", **{"tuning.trials": 2, "data.cache_budget": "1GiB"})
    tuner = make_tuner(config, lambda trial: pytest.fail("trained in this process"),
                       str(tmp_path))
    tuner.trial_inputs = TrialInputs("graph", ("train*",), ("eval*",))
    tuner.parallel = 2
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="trial failed"):
        tuner.search(verbose=0)
    assert time.monotonic() - start < 30
    assert started and all(p.poll() is not None for p in started)


def test_with_skip_if_unchanged_the_tuning_line_and_runs_say_whether_it_was_trained(
        monkeypatch, capsys) -> None:
    import cli.runs
    import report.summary
    from report.summary import RunSummary, tuning_text
    from trainer.record import SkipDecision

    skipped = SkipDecision(skip=True, why="nothing changed", version=3)
    assert tuning_text(_record()).endswith("trained by the Trainer")
    assert tuning_text(_record(), skipped).endswith(
        "not trained: the Trainer handed on served version 3 (--skip-if-unchanged)")
    assert tuning_text(_record(), SkipDecision(skip=False, why="changed", version=3)).endswith(
        "trained by the Trainer")
    runs = [RunSummary("p", "trained", [], recipe="fast", tuning=_record()),
            RunSummary("p", "handed-on", [], recipe="fast", tuning=_record(),
                       skip_if_unchanged=skipped)]
    monkeypatch.setattr(cli.runs, "metadata_path", lambda args: "store")
    monkeypatch.setattr(report.summary, "list_runs", lambda path, name: runs)
    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "fast+tuned " in lines[1] and "skipped" not in lines[1]
    assert "fast+tuned,skipped" in lines[2]


def test_lineage_names_the_config_the_model_trained_with() -> None:
    from types import SimpleNamespace

    from report.lineage import training_config

    given = json.dumps({"optimizer": {"epochs": 5}})
    tuned = {"optimizer": {"epochs": 7}}
    assert training_config(SimpleNamespace(config=tuned), given) == tuned
    assert training_config(None, given) == {"optimizer": {"epochs": 5}}
    assert training_config(None, None) is None


def test_without_a_test_split_a_tuned_run_warns_that_the_blessing_is_optimistic(
        tmp_path: Path, capsys) -> None:
    from schema.curated import write_schema

    imagegen.write_folder(tmp_path / "images", {"train": 8, "val": 4})
    write_schema(len(imagegen.CLASS_NAMES), tmp_path / "schema.pbtxt")
    args = ["run", "--recipe", "classic", "--data", str(tmp_path / "images"),
            "--root", str(tmp_path / "root"), "--schema", str(tmp_path / "schema.pbtxt"),
            "--max-regression", "-1"]  # refused after the warning: nothing runs
    assert main([*args, "--tune", "2"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "has no test split" in err and "the Tuner also chose its best trial on eval" in err
    assert "optimistic" in err
    assert main(args) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "has no test split" in err and "optimistic" not in err


def test_trials_tied_with_the_best_are_named_as_indistinguishable() -> None:
    """On a small eval split several settings score the same: the line says the split could
    not tell them apart, instead of presenting the oracle's first pick as the better one.
    """
    import dataclasses

    from report.summary import tuning_text

    record = _record()
    assert record.tied_with_best() == [] and "scored the same" not in tuning_text(record)
    tied = dataclasses.replace(record, trials=(
        dataclasses.replace(record.trials[0], eval_accuracy=0.9905), record.trials[1]))
    assert tied.tied_with_best() == [tied.trials[0]]
    assert tuning_text(tied).endswith(
        "1 other trial(s) scored the same, so the eval split could not tell them apart and the "
        "first was kept (a larger eval split, --eval-fraction, can)")
