"""The training config of `run` and `compile-kfp`: the recipe, then the command line's overrides."""

from __future__ import annotations

import argparse
from typing import Any

from schema.errors import BadInput

# Each training flag (its argparse dest) onto the settings it sets, by dotted path; an unset
# flag (None) leaves the recipe's value. --flip sets flips in training and in serving's TTA.
FLAG_SETTINGS: dict[str, tuple[str, ...]] = {
    "backbone": ("model.backbone",),
    "backbone_weights": ("model.backbone_weights",),
    "model": ("model.kind",),
    "epochs": ("optimizer.epochs",),
    "batch_size": ("optimizer.batch_size",),
    "learning_rate": ("optimizer.learning_rate",),
    "flip": ("augmentation.flip", "evaluation.tta_flip"),
    "translate": ("augmentation.translate",),
    "precision": ("runtime.precision",),
    "distribution": ("runtime.distribution",),
    "warmup": ("runtime.warmup",),
    "tflite": ("export.tflite",),
    "cache_budget": ("data.cache_budget",),
    "refit": ("data.refit",),
    "skip_if_unchanged": ("continuity.skip_if_unchanged",),
    "tune": ("tuning.trials",),
    "tune_budget": ("tuning.budget_minutes",),
    "tune_algorithm": ("tuning.algorithm",),
}


def flag_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The training flags given, by dotted path."""
    return {path: getattr(args, flag) for flag, paths in FLAG_SETTINGS.items() for path in paths
            if getattr(args, flag, None) is not None}


def trainer_config(args: argparse.Namespace, class_names, image_shape,
                   split_counts: dict[str, int], trains_here: bool = True, info=None):
    """The recipe (chosen from the data with --recipe auto) with the CLI's overrides on top.

    Every split must hold at least one batch: a batch size given on the command line is
    refused otherwise, a recipe's own is halved until it fits. `trains_here`: whether this
    machine runs the Trainer, so its CPU tells whether `--precision auto` means bfloat16 and
    whether a backbone's weights must be at hand. `info` (ingest's DatasetManifest, if known): the
    spread of image sizes, from which the model's input size is chosen.
    """
    from trainer.config import parse_settings
    from trainer.recipes import (
        AUTO,
        DEFAULT_TIME_BUDGET_MINUTES,
        RECIPES,
        choose_recipe,
        fit_batch_size,
        from_recipe,
    )

    try:
        settings = parse_settings(args.settings)
    except BadInput as e:  # names the pair: say which option it came from
        raise BadInput(f"--set {e}") from None
    sizes_vary = bool(getattr(info, "sizes_vary", False))
    recipe, reason = args.recipe, "chosen with --recipe"
    backbone = getattr(args, "backbone", None)
    if backbone and recipe not in (AUTO, "transfer"):
        raise BadInput(f"--backbone {backbone} needs the transfer recipe: leave --recipe "
                       f"out (auto) or pass --recipe transfer, not --recipe {recipe}")
    if recipe == AUTO and backbone:
        recipe, reason = "transfer", f"--backbone {backbone}"
    elif recipe == AUTO:
        recipe, reason = choose_recipe(image_shape, split_counts.get("train", 0),
                                       bfloat16=computes_in_bfloat16(args.precision, trains_here),
                                       sizes_vary=sizes_vary,
                                       host_rate=host_rate_reader(trains_here),
                                       budget_minutes=getattr(args, "time_budget", None)
                                       or DEFAULT_TIME_BUDGET_MINUTES,
                                       num_classes=len(class_names),
                                       epochs=getattr(args, "epochs", None),
                                       fit_images=_fit_images(args, settings, split_counts),
                                       members=settings.get("model.members"))
    if RECIPES[recipe].model.kind == "transfer":
        image_shape, note = _transfer_shape(args, image_shape, info,
                                            split_counts.get("train", 0))
    else:
        image_shape, note = _scratch_shape(image_shape, sizes_vary)
    reason = f"{reason}; {note}" if note else reason
    smallest = min(split_counts, key=split_counts.get)
    if args.batch_size is not None and args.batch_size > split_counts[smallest]:
        raise BadInput(
            f"the {smallest} split has {split_counts[smallest]} images, fewer than one batch "
            f"(--batch-size {args.batch_size}): pass a smaller --batch-size, or add images to "
            f"the {smallest} split"
        )
    # The flags, then --set (applied last), through the config's one override path.
    try:
        config = from_recipe(recipe, image_shape, class_names,
                             {"recipe_reason": reason, **flag_settings(args), **settings})
    except BadInput as e:  # refit refused for a recipe the user did not name: say who chose it
        if args.recipe == AUTO and str(e).startswith("data.refit:"):
            raise BadInput(f"--recipe auto chose {recipe} ({reason}); {e}") from None
        raise
    if not config.model.backbone:  # a backbone's Trainer keeps features (its own check)
        check_cache_budget(config)
    if config.model.backbone and trains_here:  # fail now, not in the Trainer: exit 2, what to do
        from trainer.backbones.registry import resolve_weights

        resolve_weights(config.model.backbone, config.model.backbone_weights)
    if config.data.refit and not split_counts.get("test"):
        raise BadInput("--refit trains on the eval split too, and the data has no test split, "
                       "so the Evaluator would score the model on images it trained on: add a "
                       "test/ folder, or leave --refit out")
    fitted = fit_batch_size(config.optimizer.batch_size, split_counts[smallest])
    if fitted != config.optimizer.batch_size:
        config = config.override({"optimizer.batch_size": fitted, "recipe_reason": (
        f"{reason}; batch size {fitted} so that one batch fits in the "
        f"{split_counts[smallest]}-image {smallest} split")})
    if config.tuning.enabled and trains_here:  # a budget too small for one trial: exit 2 now
        from trainer.tuning import check_budget

        check_budget(config, split_counts.get("train", 0), split_counts.get("eval", 0))
    return config


def _fit_images(args: argparse.Namespace, settings: dict[str, Any],
                split_counts: dict[str, int]) -> int:
    """The images each epoch trains on: train, and eval too when refit is asked for (by
    --refit or --set, `settings`), for `auto`'s fit estimate.
    """
    asked = settings.get("data.refit", getattr(args, "refit", None))  # --set is applied last
    return split_counts.get("train", 0) + (split_counts.get("eval", 0) if asked else 0)


# The scratch CNNs are built for small images: data of many sizes is resized to its median size,
# scaled down to at most this side.
_SCRATCH_MAX_SIDE = 64


def _scratch_shape(image_shape, sizes_vary: bool) -> tuple[tuple[int, int, int], str]:
    """The one size a scratch CNN takes, and why: the data's, or one chosen from it."""
    height, width, channels = (int(v) for v in image_shape)
    if not sizes_vary:
        return (height, width, channels), ""
    scale = min(1.0, _SCRATCH_MAX_SIDE / max(height, width))
    chosen = (max(1, round(height * scale)), max(1, round(width * scale)), channels)
    return chosen, (f"images of many sizes: the model takes {chosen[0]}x{chosen[1]} (their "
                    f"median size {height}x{width}, scaled to at most {_SCRATCH_MAX_SIDE} px), "
                    "each image resized to it in the Transform graph")


# Few, large photos get a larger input than the backbone was trained at: the network then sees
# objects at the scale its training crops showed them (the "FixRes" effect). Head-only
# cross-validation inside hymenoptera's train split chose 288 over 224 and 256, for
# (288/224)^2 = 1.65x the compute per image; a small training set keeps that affordable, and
# photos smaller than 288 px would only be upscaled.
_LARGE_INPUT = 288
_LARGE_INPUT_MAX_TRAIN = 1000


def _transfer_side(args: argparse.Namespace, backbone, info, num_train: int) -> tuple[int, str]:
    """The square input side and why: --input-size, the backbone's own, or the larger one."""
    if getattr(args, "input_size", None):
        return args.input_size, "--input-size"
    sizes = getattr(info, "sizes", None)
    short = sizes.short_side_median if sizes is not None else min(
        int(v) for v in getattr(info, "image_shape", (0, 0))[:2])
    if backbone.input_size < _LARGE_INPUT <= short and 0 < num_train <= _LARGE_INPUT_MAX_TRAIN:
        return _LARGE_INPUT, (f"larger than {backbone.name}'s {backbone.input_size}: "
                              f"{num_train:,} training images (<= {_LARGE_INPUT_MAX_TRAIN:,}) "
                              f"with a median short side of {short} px")
    return backbone.input_size, f"{backbone.name}'s own"


def _transfer_shape(args: argparse.Namespace, image_shape, info,
                    num_train: int) -> tuple[tuple[int, int, int], str]:
    """A backbone's square RGB input, and what that does to these images."""
    from cli.common import log
    from trainer.backbones.registry import DEFAULT_BACKBONE, get

    backbone = get(getattr(args, "backbone", None) or DEFAULT_BACKBONE)
    side, why = _transfer_side(args, backbone, info, num_train)
    notes = [f"{side}x{side} inputs ({why}), each image resized keeping its aspect ratio"]
    if int(image_shape[2]) == 1:
        notes.append("grayscale images: their channel is replicated to RGB for the backbone")
    sizes = getattr(info, "sizes", None)
    smaller = sizes.smaller_than(side) if sizes is not None else 0
    if sizes is None and max(int(image_shape[0]), int(image_shape[1])) < side:
        smaller = sum(getattr(info, "split_counts", {}).values())
    if smaller:
        log.warning("warning: %d image(s) are smaller than %d px on their short side: they are "
                    "upscaled to the backbone's %dx%d input", smaller, side, side, side)
        notes.append(f"{smaller} image(s) upscaled")
    return (side, side, 3), "; ".join(notes)


def host_rate_reader(trains_here: bool):
    """How `--recipe auto` learns this host's matrix-product rate: measured (and cached) here
    when this machine trains; None when it does not (compiling for Kubeflow: the pods' CPUs
    are not this one, so the choice falls back to precision alone).
    """
    if not trains_here:
        return None
    from trainer.host_speed import host_rate

    return host_rate


def computes_in_bfloat16(precision: str | None, trains_here: bool) -> bool:
    """Whether the Trainer will compute in bfloat16 (--precision unset is "auto"). On a machine
    that does not train (compiling for Kubeflow) only an explicit --precision bfloat16 says so.
    """
    if not trains_here:
        return precision == "bfloat16"
    from trainer.model import uses_bfloat16

    return uses_bfloat16(precision or "auto")


def check_cache_budget(config) -> None:
    """Fails before anything runs if not one image fits the budget (the Trainer checks again,
    against the memory it has then).
    """
    from trainer import memory
    from trainer.data import check_image_fits

    # uint8, the smallest the Trainer stores: the Trainer itself knows whether it can.
    check_image_fits(config.image_shape, 1, memory.resolve_budget(config.data.cache_budget),
                     config.data.cache_budget)
