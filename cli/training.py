"""The training config of `run` and `compile-kfp`: the recipe, then the command line's overrides."""

from __future__ import annotations

import argparse


def trainer_config(args: argparse.Namespace, class_names, image_shape,
                    split_counts: dict[str, int], trains_here: bool = True):
    """The recipe (chosen from the data with --recipe auto) with the CLI's overrides on top.

    Every split must hold at least one batch: a batch size given on the command line is
    refused otherwise, a recipe's own is halved until it fits. `trains_here`: whether this
    machine runs the Trainer, so its CPU tells whether `--precision auto` means bfloat16.
    """
    from trainer.config import AUTO, choose_recipe, fit_batch_size, from_recipe, parse_settings

    recipe, reason = args.recipe, "chosen with --recipe"
    if recipe == AUTO:
        recipe, reason = choose_recipe(image_shape, split_counts.get("train", 0),
                                       bfloat16=computes_in_bfloat16(args.precision, trains_here))
    smallest = min(split_counts, key=split_counts.get)
    if args.batch_size is not None and args.batch_size > split_counts[smallest]:
        raise ValueError(
            f"the {smallest} split has {split_counts[smallest]} images, fewer than one batch "
            f"(--batch-size {args.batch_size}): pass a smaller --batch-size, or add images to "
            f"the {smallest} split"
        )
    # Each flag onto its TrainerConfig field (None: the recipe's value). `duplicates` sees two
    # runs of keyword arguments here; there is nothing to share.
    config = from_recipe(
        recipe,
        image_shape,
        class_names,
        recipe_reason=reason,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        augment_flip=args.flip,
        tta_flip=args.flip,
        augment_translate=args.translate,
        precision=args.precision,
        distribution=args.distribution,
        warmup=args.warmup,
        cache_budget=args.cache_budget,
        skip_if_unchanged=args.skip_if_unchanged,
    )
    if args.settings:
        config = config.replace(**parse_settings(args.settings))
    check_cache_budget(config)
    fitted = fit_batch_size(config.batch_size, split_counts[smallest])
    if fitted == config.batch_size:
        return config
    return config.replace(batch_size=fitted, recipe_reason=(
        f"{reason}; batch size {fitted} so that one batch fits in the "
        f"{split_counts[smallest]}-image {smallest} split"))


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
    check_image_fits(config.image_shape, 1, memory.resolve_budget(config.cache_budget),
                     config.cache_budget)
