"""Warm start: a new model begins from the served model's weights, when they fit.

The pushed SavedModel's variables are an object-based checkpoint whose root holds the Keras
model as `model` (trainer/export.py ServingModule), so `tf.train.Checkpoint(model=...)` reads
them into a freshly built model of the same architecture. A different class map or
architecture (a shape that differs, a layer more or less) trains from scratch, and the record
says why.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import tensorflow as tf


def _served_members(version_dir: str) -> int | None:
    """How many networks the version averages (its training config's model.members; 1 for
    versions from before ensembles), or None when its config cannot be read.
    """
    from serving.model_dir import read_json
    from trainer.config import TRAINING_CONFIG_FILE, TrainerConfig

    try:
        recorded = read_json(os.path.join(version_dir, TRAINING_CONFIG_FILE))
        return None if recorded is None else TrainerConfig.from_dict(recorded).model.members
    except Exception:  # noqa: BLE001 - unreadable: the checkpoint's own match decides
        return None


def warm_start(model: keras.Model, class_names: tuple[str, ...], base: str,
               members: int = 1) -> dict[str, Any]:
    """Loads the newest version under `base` into `model` (of `members` networks) if it fits;
    returns what happened.
    """
    from serving.model_dir import production_model, served_class_names

    production = production_model(base)
    if production is None:
        return {"used": False, "why": f"no version served under {base} yet"}
    record: dict[str, Any] = {"used": False, "from": production.path,
                              "version": production.version}
    served = served_class_names(production.path)
    if served != list(class_names):
        record["why"] = (f"the class map differs from version {production.version}'s "
                         f"({served} vs {list(class_names)})")
        return record
    # A checkpoint read matches the new model's objects only: the first networks of a larger
    # served ensemble would load silently, so the counts are compared first.
    served_members = _served_members(production.path)
    if served_members is not None and served_members != members:
        record["why"] = (f"version {production.version} averages {served_members} network(s), "
                         f"this model {members} (model.members)")
        return record
    before = [variable.numpy() for variable in model.weights]
    try:
        tf.train.Checkpoint(model=model).read(
            os.path.join(production.path, "variables", "variables")
        ).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        for variable, value in zip(model.weights, before, strict=True):
            variable.assign(value)  # a failed read may have set some variables already
        first_line = (str(e).splitlines() or [type(e).__name__])[0][:300]
        record["why"] = (f"the architecture differs from version {production.version}'s "
                         f"({first_line})")
        return record
    record["used"] = True
    return record
