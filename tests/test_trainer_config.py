"""The training config's parts (trainer/config.py): its JSON forms, the one override path,
the flat names `--set` still takes, the checks, and every recipe (trainer/recipes.py).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from schema.errors import BadInput
from trainer.config import (
    FLAT_NAMES,
    SETTINGS,
    ModelKind,
    Recipe,
    TrainerConfig,
    parse_settings,
)
from trainer.recipes import RECIPES, from_recipe

# assets.extra/training_config.json of a model trained before the config had parts (the flat
# form today's served models and saved Kubeflow parameters hold), written by that code.
FLAT = {
    "image_shape": [32, 32, 3], "class_names": ["cat", "dog"], "model": "fast", "epochs": 4,
    "batch_size": 1024, "optimizer": "sgd", "learning_rate": 1.5, "lr_schedule": "onecycle",
    "warmup_fraction": 0.23, "initial_lr_fraction": 0.2, "final_lr_fraction": 0.07,
    "momentum": 0.85, "weight_decay": 0.00133, "bias_lr_multiplier": 64.0,
    "muon_learning_rate": 0.24, "muon_momentum": 0.6, "label_smoothing": 0.2,
    "ema_momentum": 0.0, "lookahead": True, "base_filters": 32, "dense_units": 128,
    "dropout": 0.25, "widths": [64, 256, 256], "whiten": True, "whiten_stride": 1,
    "activation": "gelu", "bn_scale": False, "bn_momentum": 0.6, "dirac_init": True,
    "logit_scale": 0.1111111111111111, "members": 1, "augment_flip": True, "alternate_flip": True,
    "augment_translate": 0.0625, "tta_flip": True, "tta_translate": 1, "precision": "auto",
    "early_stopping_patience": 0, "validation_freq": 4, "distribution": "none",
    "warmup": "real", "cache_budget": "50%", "refit": False,
    "erase": 0.0, "warm_start_from": "/serving/pets",
    "warm_start_epochs": 0.4, "skip_if_unchanged": True, "backbone": "",
    "backbone_weights": "imagenet", "fine_tune_blocks": 2, "head_epochs": 40,
    "head_learning_rate": 0.001, "resize_mode": "stretch", "seed": 42, "recipe": "fast",
    "recipe_reason": "chosen with --recipe", "tflite": "dynamic", "calibration_images": 500,
    "tune_trials": 0, "tune_budget_minutes": 0.0, "tune_algorithm": "random",
}


def built_the_new_way() -> TrainerConfig:
    return from_recipe("fast", (32, 32, 3), ["cat", "dog"], {
        "optimizer.epochs": 4, "recipe_reason": "chosen with --recipe",
        "continuity.warm_start_from": "/serving/pets", "continuity.skip_if_unchanged": True})


def test_flat_and_nested_json_both_load_as_the_same_config() -> None:
    config = built_the_new_way()
    nested = json.loads(json.dumps(config.to_dict()))
    assert TrainerConfig.from_dict(FLAT) == TrainerConfig.from_dict(nested) == config
    assert nested["optimizer"]["epochs"] == 4 and nested["model"]["kind"] == "fast"
    assert nested["continuity"]["warm_start_from"] == "/serving/pets"
    # Every flat name is one setting of the nested form, and the other way round.
    assert sorted(FLAT) == sorted(FLAT_NAMES)
    assert {FLAT_NAMES[name] for name in FLAT} == set(config.settings()) == SETTINGS
    with pytest.raises(BadInput, match="unknown training setting 'epoch'"):
        TrainerConfig.from_dict({**FLAT, "epoch": 3})
    with pytest.raises(BadInput, match="no class_names"):
        TrainerConfig.from_dict({"image_shape": [8, 8, 1]})


def test_flat_names_are_derived_from_the_parts_field_names() -> None:
    parts = {f.name: f.type for f in dataclasses.fields(TrainerConfig)}
    assert FLAT_NAMES["widths"] == "model.widths"
    assert FLAT_NAMES["tta_flip"] == "evaluation.tta_flip"
    assert FLAT_NAMES["warm_start_epochs"] == "continuity.warm_start_epochs"
    # The renamed ones keep their flat names through the field's metadata.
    assert (FLAT_NAMES["model"], FLAT_NAMES["optimizer"], FLAT_NAMES["augment_flip"],
            FLAT_NAMES["augment_translate"]) == (
        "model.kind", "optimizer.kind", "augmentation.flip", "augmentation.translate")
    assert {path.split(".")[0] for path in SETTINGS} == set(parts)


def test_set_takes_flat_names_and_dotted_paths() -> None:
    # What bench/scale.py, bench/continuous.py and bench/recipe.py pass.
    flat = parse_settings(["widths=16,32,64", "whiten_stride=2", "tta_flip=false",
                           "tta_translate=0", "warm_start_epochs=0.5"])
    dotted = parse_settings(["model.widths=16,32,64", "model.whiten_stride=2",
                             "evaluation.tta_flip=false", "evaluation.tta_translate=0",
                             "continuity.warm_start_epochs=0.5"])
    assert flat == dotted == {
        "model.widths": (16, 32, 64), "model.whiten_stride": 2, "evaluation.tta_flip": False,
        "evaluation.tta_translate": 0, "continuity.warm_start_epochs": 0.5}
    config = from_recipe("fast", (32, 32, 3), ["a", "b"]).override(dotted)
    assert (config.model.widths, config.evaluation.tta_flip, config.continuity.warm_start_epochs,
            config.model.whiten) == ((16, 32, 64), False, 0.5, True)
    # A flag and its --set: the one given last wins, whichever name each uses.
    later = config.override({"optimizer.epochs": 3, "epochs": 6})
    assert later.optimizer.epochs == 6


@pytest.mark.parametrize(("change", "message"), [
    ({"runtime.distribution": "ring"},
     r"runtime.distribution must be one of \['none', 'mirrored', 'multi_worker'\], got 'ring'"),
    ({"optimizer": "rmsprop"},
     r"optimizer.kind must be one of \['adam', 'sgd', 'muon'\], got 'rmsprop'"),
    ({"model.resize_mode": "zoom"}, r"model.resize_mode must be one of \['stretch', 'crop'"),
    ({"augment_translate": 0.5}, r"augmentation.translate must be in \[0, 0.5\)"),
    ({"continuity.warm_start_epochs": 0}, r"continuity.warm_start_epochs must be in \(0, 1\]"),
    ({"model.kind": "transfer"}, r"model.kind 'transfer' takes a model.backbone"),
    ({"model.members": 0}, r"model.members must be in \[1, 8\], got 0"),
])
def test_a_bad_setting_fails_naming_its_dotted_path(change: dict, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        from_recipe("classic", (8, 8, 3), ["a", "b"]).override(change)


def test_an_ensemble_of_pretrained_networks_is_refused_with_the_recipes_that_take_one() -> None:
    with pytest.raises(BadInput, match=r"model.members: the transfer recipe .* ensembles are "
                                       r"for the scratch recipes \(classic, fast"):
        from_recipe("transfer", (64, 64, 3), ["a", "b"]).override({"members": 2})


def test_choices_are_enums_and_json_keeps_their_strings() -> None:
    config = from_recipe("classic", (8, 8, 1), ["a", "b"], model="fast")
    assert config.model.kind is ModelKind.FAST and config.model.kind == "fast"
    assert json.loads(json.dumps(config.to_dict()))["model"]["kind"] == "fast"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_builds_a_valid_config(name: str) -> None:
    recipe = RECIPES[name]
    assert isinstance(recipe, Recipe) and not isinstance(recipe, TrainerConfig)
    shape = (224, 224, 3) if name == "transfer" else (32, 32, 3)
    config = from_recipe(name, shape, ["a", "b"])
    assert config.recipe == name
    assert {f.name: getattr(config, f.name) for f in dataclasses.fields(Recipe)} == {
        f.name: getattr(recipe, f.name) for f in dataclasses.fields(Recipe)}
    assert TrainerConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # A recipe holds no continuity: how a run gets there is the run's.
    with pytest.raises(BadInput, match="not a setting a recipe holds"):
        recipe.override({"continuity.skip_if_unchanged": True})


def test_the_report_shows_a_recorded_config_flat_or_nested_by_dotted_path() -> None:
    import reportfacts
    from report.html import render
    from report.records import TrainingFacts

    def page(config: dict) -> str:
        return render(reportfacts.report_facts(evaluation_split=None,
                                               training=TrainingFacts(config=config)))

    flat = page(FLAT)
    assert "optimizer.learning_rate" in flat and "augmentation.translate" in flat
    assert flat == page(built_the_new_way().to_dict())


def test_flags_and_set_reach_the_compiled_trainer_config_by_dotted_path(tmp_path,
                                                                        capsys) -> None:
    """compile-kfp: each flag and each --set (flat or dotted) lands at its dotted path in the
    nested trainer-config parameter, and a bad choice fails naming the path (exit 2).
    """
    from test_kubeflow import _compile, _defaults

    from cli import main

    spec = _compile(tmp_path, "--recipe", "fast", "--epochs", "3", "--no-flip",
                    "--set", "widths=16,32", "--set", "model.whiten_stride=2",
                    "--set", "optimizer.epochs=4")
    config = json.loads(_defaults(spec)["trainer-config"])
    assert config["optimizer"]["epochs"] == 4  # --set is applied after the flags
    assert (config["model"]["widths"], config["model"]["whiten_stride"]) == ([16, 32], 2)
    assert not config["augmentation"]["flip"] and not config["evaluation"]["tta_flip"]
    assert config["recipe"] == "fast" and "widths" not in config
    capsys.readouterr()
    assert main(["compile-kfp", "--output", str(tmp_path / "bad.yaml"), "--recipe", "fast",
                 "--set", "runtime.precision=half"]) == 2
    assert ("runtime.precision must be one of ['auto', 'float32', 'bfloat16'], got 'half'"
            in capsys.readouterr().err)


@pytest.mark.parametrize("recipe", ["fast", "fast-wide", "fast-muon", "fast-gray"])
def test_fixed_schedule_recipes_may_refit(recipe: str) -> None:
    config = from_recipe(recipe, (28, 28, 1) if recipe == "fast-gray" else (32, 32, 3),
                         ["cat", "dog"], refit=True)
    assert config.data.refit


@pytest.mark.parametrize(("recipe", "shape", "changes", "reason"), [
    ("classic", (28, 28, 1), {}, "early stopping watches the eval split "
                                 "(optimizer.early_stopping_patience=8)"),
    ("fast", (32, 32, 3), {"early_stopping_patience": 3}, "early_stopping_patience=3"),
    ("transfer", (224, 224, 3), {}, "keeps the weights of its best epoch on the eval split"),
])
def test_refit_is_refused_where_eval_decides_something(recipe, shape, changes, reason) -> None:
    with pytest.raises(BadInput, match=r"data\.refit: .*" + reason.replace("(", r"\(")
                       .replace(")", r"\)")):
        from_recipe(recipe, shape, ["cat", "dog"], {**changes, "data.refit": True})
    # Early stopping off with fixed epochs: the classic CNN may refit too.
    if recipe == "classic":
        assert from_recipe(recipe, shape, ["cat", "dog"],
                           {"early_stopping_patience": 0, "refit": True}).data.refit


def test_the_refit_flag_reaches_the_config_and_needs_a_test_split() -> None:
    from cli import build_parser
    from cli.training import trainer_config

    classes = [f"c{i}" for i in range(10)]
    args = build_parser().parse_args(["run", "--recipe", "fast", "--refit"])
    counts = {"train": 45000, "eval": 5000, "test": 10000}
    assert trainer_config(args, classes, (32, 32, 3), counts).data.refit
    with pytest.raises(BadInput, match="no test split, so the Evaluator would score the model "
                                       "on images it trained on: add a test/ folder"):
        trainer_config(args, classes, (32, 32, 3), {"train": 45000, "eval": 5000})
    off = build_parser().parse_args(["run", "--recipe", "fast", "--no-refit"])
    assert not trainer_config(off, classes, (32, 32, 3), counts).data.refit
    classic = build_parser().parse_args(["run", "--recipe", "classic", "--refit"])
    with pytest.raises(BadInput, match="early stopping watches the eval split"):
        trainer_config(classic, classes, (28, 28, 1), counts)


def test_auto_says_it_chose_the_recipe_that_cannot_refit() -> None:
    from cli import build_parser
    from cli.training import trainer_config

    args = build_parser().parse_args(["run", "--refit"])
    with pytest.raises(BadInput, match=r"^--recipe auto chose classic \(3,000 training images "
                                       r".*\); data\.refit: early stopping watches"):
        trainer_config(args, ["a", "b"], (28, 28, 1), {"train": 3000, "eval": 300, "test": 300})


def test_a_pipeline_config_refuses_refit_without_a_test_split() -> None:
    from pipeline.blessing import EvalThresholds
    from pipeline.config import PipelineConfig

    def config(splits: tuple[str, ...]) -> PipelineConfig:
        return PipelineConfig(
            pipeline_name="p", pipeline_root="/tmp/root", data_root="/tmp/data",
            serving_dir="/tmp/serving", model_name="m", splits=splits,
            trainer=from_recipe("fast", (8, 8, 3), ["a", "b"], refit=True),
            thresholds=EvalThresholds(min_accuracy=0.0))

    assert config(("train", "eval", "test")).evaluation_split == "test"
    with pytest.raises(BadInput, match="data.refit trains on the eval split too, and the data "
                                       "has no test split"):
        config(("train", "eval"))
