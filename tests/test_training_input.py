"""The Trainer's memory budget: uint8 storage, caching what fits, streaming what does not.

Real Transform graphs of tiny TFRecords (the `prepared` fixture, tests/tiny_transform.py), the
Trainer's own input code and training loop.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

import imagegen
from cli.main import explain
from tiny_transform import EVAL_PER_CLASS, SIZE, TRAIN_PER_CLASS
from trainer import data, memory
from trainer.recipes import from_recipe
from trainer.train import train

SHAPE = (SIZE, SIZE, 3)
NUM_TRAIN = TRAIN_PER_CLASS * len(imagegen.CLASS_NAMES)
NUM_EVAL = EVAL_PER_CLASS * len(imagegen.CLASS_NAMES)
IMAGE_BYTES = SIZE * SIZE * 3  # as uint8


def test_budgets_are_sizes_or_shares_of_the_available_memory() -> None:
    assert memory.resolve_budget("6GiB") == 6 * 2**30
    assert memory.resolve_budget("500MB") == 500 * 10**6
    assert memory.resolve_budget("2e9") == 2 * 10**9
    assert memory.resolve_budget("1.5k") == 1500
    assert memory.resolve_budget("25%", available=8 * 10**9) == 2 * 10**9
    assert 0 < memory.resolve_budget("50%") <= memory.available_memory()
    for bad in ("lots", "-1", "", "0%", "150%", "6 parsecs", "0"):
        with pytest.raises(ValueError, match="cache budget"):
            memory.parse_budget(bad)
    with pytest.raises(ValueError, match="cache budget 'lots' is not a size"):
        from_recipe("classic", SHAPE, imagegen.CLASS_NAMES, cache_budget="lots")


def test_the_plan_caches_what_fits_and_streams_with_a_buffer_the_budget_holds() -> None:
    # 60,000 CIFAR images at 128x128: 2.9 GB as uint8, 11.8 GB as float32.
    shape = (128, 128, 3)
    assert memory.images_bytes(60_000, shape, 1) == 60_000 * 128 * 128 * 3
    cached = data.plan_input(50_000, 10_000, shape, 1, 4 * 10**9, "4GB")
    assert cached.mode == "memory" and cached.needed_bytes == 2_949_120_000
    assert cached.shuffle_buffer == 50_000
    assert "cached in memory" in cached.reason and "2.95 GB" in cached.reason
    streamed = data.plan_input(50_000, 10_000, shape, 4, 4 * 10**9, "4GB")
    assert streamed.streams and streamed.needed_bytes == 4 * 2_949_120_000
    assert streamed.shuffle_buffer == 4 * 10**9 // (128 * 128 * 3 * 4) == 20_345
    assert "more than the budget of 4 GB (cache_budget 4GB)" in streamed.reason
    assert "shuffled within a buffer of 20,345 images (41% of the train split)" in streamed.reason


def test_a_single_image_over_the_budget_is_refused_naming_its_size() -> None:
    with pytest.raises(data.CacheBudgetError) as error:
        data.plan_input(10, 2, (4000, 3000, 3), 1, 10**7, "10MB")
    assert explain(error.value).startswith(
        "one 4000x3000x3 image takes 36 MB as uint8, more than the cache budget of 10 MB "
        "(--cache-budget 10MB): raise --cache-budget to at least 36 MB")
    # What Kubeflow's log shows: where the setting lives there, said once; no flag.
    assert str(error.value).startswith(
        "one 4000x3000x3 image takes 36 MB as uint8, more than the cache budget of 10 MB (the "
        "training setting data.cache_budget=10MB (on Kubeflow: data.cache_budget in the JSON of "
        "the trainer-config run-time parameter)): raise the training setting data.cache_budget "
        "to at least 36 MB")
    assert "--" not in str(error.value)


def _config(**overrides):
    # Small, fixed-length, float32: both paths train the same steps and compute alike.
    values = {"epochs": 3, "batch_size": 24, "base_filters": 8, "dense_units": 16,
              "early_stopping_patience": 0, "precision": "float32", **overrides}
    return from_recipe("classic", SHAPE, imagegen.CLASS_NAMES, **values)


def _inputs(prepared, budget: str) -> data.TrainingInputs:
    return data.training_inputs(
        prepared.train_files, prepared.eval_files, data.tf_example_accessor(),
        tft.TFTransformOutput(prepared.transform_graph), _config(cache_budget=budget),
    )


def test_the_transform_output_is_stored_as_uint8_and_restored_exactly(prepared) -> None:
    inputs = _inputs(prepared, "1GB")
    assert inputs.codec.dtype == "uint8" and inputs.plan.dtype == "uint8"
    assert (inputs.num_train, inputs.num_eval) == (NUM_TRAIN, NUM_EVAL)
    # Read from TFRecords, yet of a length Keras can tell (no "ran out of data" warning).
    assert (inputs.train.cardinality(), inputs.eval.cardinality()) == (NUM_TRAIN, NUM_EVAL)
    assert inputs.plan.needed_bytes == (NUM_TRAIN + NUM_EVAL) * IMAGE_BYTES
    assert "affine map of 8-bit pixel values" in inputs.plan.reason
    stored = np.stack([image for image, _ in inputs.eval.as_numpy_iterator()])
    assert stored.dtype == np.uint8
    float32 = data.transformed_examples(prepared.eval_files, data.tf_example_accessor(),
                                        tft.TFTransformOutput(prepared.transform_graph))
    expected = np.stack([image for image, _ in float32.as_numpy_iterator()])
    np.testing.assert_allclose(inputs.codec.decode(stored).numpy(), expected, atol=1e-5)


def test_values_between_pixel_levels_keep_float32(prepared) -> None:
    """Images resized inside the graph (or a non-affine preprocessing_fn) are not rounded."""
    output = tft.TFTransformOutput(prepared.transform_graph)
    exact = next(iter(data.transformed_examples(
        prepared.train_files, data.tf_example_accessor(), output).batch(8)))[0]
    codec, why = data.probe_codec(output, SHAPE, exact)
    assert codec.quantized
    between = exact + 0.3 * tf.constant(codec.scale)
    codec, why = data.probe_codec(output, SHAPE, between)
    assert not codec.quantized and codec.itemsize == 4
    assert "between 8-bit levels" in why


def test_streamed_and_cached_training_give_the_same_model(prepared) -> None:
    """A budget that holds the train split but not train + eval streams, with a buffer of the
    whole split: the same seed then gives the same order, so the same model.

    Without random translations: they draw from one random generator in parallel map calls,
    whose order is not fixed, so two runs on the same path already differ with them.
    """
    cached = _inputs(prepared, "1GB")
    streamed = _inputs(prepared, f"{NUM_TRAIN * IMAGE_BYTES}B")
    assert cached.plan.mode == "memory" and streamed.plan.streams
    assert streamed.plan.shuffle_buffer == NUM_TRAIN
    config = _config(augment_translate=0.0)
    models, records = zip(*(train(config, inputs) for inputs in (cached, streamed)),
                          strict=True)
    assert records[1]["input"]["mode"] == "stream" and records[1]["decode_seconds"] is None
    eval_images = cached.codec.decode(
        np.stack([image for image, _ in cached.eval.as_numpy_iterator()]))
    first, second = (model.predict(eval_images, verbose=0) for model in models)
    np.testing.assert_allclose(first, second, atol=1e-4)
    assert records[0]["final_eval_accuracy"] == records[1]["final_eval_accuracy"] >= 0.9


def test_a_tiny_budget_streams_every_example_once_per_epoch(prepared) -> None:
    """A buffer of a tenth of the split still yields each example once per epoch, reshuffled."""
    buffer = NUM_TRAIN // 10
    inputs = _inputs(prepared, f"{buffer * IMAGE_BYTES}B")
    assert inputs.plan.streams and inputs.plan.shuffle_buffer == buffer
    config = _config(epochs=2, augment_translate=0.0)
    batches = data.training_batches(inputs.train, config, inputs.num_train,
                                    inputs.plan.shuffle_buffer, inputs.codec.decode)
    steps = -(-NUM_TRAIN // config.optimizer.batch_size)
    images = np.concatenate([x for x, _ in batches.as_numpy_iterator()])
    assert len(images) == 2 * NUM_TRAIN and steps * 2 == len(list(batches))
    in_file_order = inputs.codec.decode(
        np.stack([image for image, _ in inputs.train.as_numpy_iterator()])).numpy()

    def multiset(array: np.ndarray) -> collections.Counter:
        return collections.Counter(row.round(4).tobytes() for row in array)

    for epoch in (images[:NUM_TRAIN], images[NUM_TRAIN:]):
        assert multiset(epoch) == multiset(in_file_order)
        assert not np.array_equal(epoch, in_file_order)
    assert not np.array_equal(images[:NUM_TRAIN], images[NUM_TRAIN:])
    _, record = train(config, inputs)
    assert record["input"]["shuffle_buffer"] == buffer
    assert record["final_eval_accuracy"] >= 0.9


@pytest.mark.parametrize("budget", ["1GB", f"{NUM_TRAIN // 10 * IMAGE_BYTES}B"],
                         ids=["cached", "streamed"])
def test_refit_trains_on_train_and_eval_each_once_per_epoch(prepared, budget: str) -> None:
    """data.refit: every train and eval example once per epoch, eval spread through the epoch
    (streamed through a buffer of a tenth of train, not left at its end); eval stays the split
    the final accuracy is taken on, and the record says it was trained on.
    """
    config = _config(epochs=2, augment_translate=0.0, refit=True, cache_budget=budget)
    inputs = data.training_inputs(
        prepared.train_files, prepared.eval_files, data.tf_example_accessor(),
        tft.TFTransformOutput(prepared.transform_graph), config)
    total = NUM_TRAIN + NUM_EVAL
    assert (inputs.num_train, inputs.num_eval) == (total, NUM_EVAL)
    assert inputs.plan.streams == (budget != "1GB")
    assert inputs.train.cardinality() == total and "refit: trained on train + eval" in (
        inputs.plan.reason)
    batches = data.training_batches(inputs.train, config, inputs.num_train,
                                    inputs.plan.shuffle_buffer, inputs.codec.decode)
    epoch = np.concatenate([x for x, _ in batches.as_numpy_iterator()])[:total]
    held_out = _inputs(prepared, "1GB")  # the splits decoded on their own

    def keys(split: tf.data.Dataset | np.ndarray) -> list[bytes]:
        array = split if isinstance(split, np.ndarray) else held_out.codec.decode(
            np.stack([x for x, _ in split.as_numpy_iterator()])).numpy()
        return [row.round(4).tobytes() for row in array]

    train_keys, eval_keys = keys(held_out.train), keys(held_out.eval)
    assert collections.Counter(keys(epoch)) == collections.Counter(train_keys + eval_keys)
    eval_set = set(eval_keys)
    in_first_half = sum(key in eval_set for key in keys(epoch)[:total // 2])
    assert NUM_EVAL // 4 <= in_first_half <= 3 * NUM_EVAL // 4  # about half of them
    _, record = train(config, inputs)
    assert record["refit"] and record["num_train"] == total


def test_without_refit_eval_is_held_out(prepared) -> None:
    inputs = _inputs(prepared, "1GB")
    assert inputs.num_train == NUM_TRAIN and "refit" not in inputs.plan.reason


def test_tuner_trials_are_scored_on_an_eval_split_they_never_trained_on(prepared) -> None:
    """A config that refits still has its trials train on train alone: eval scores them."""
    from trainer.tuning import TrialInputs, trial_trainer

    config = _config(epochs=1, refit=True)
    inputs = TrialInputs(prepared.transform_graph, tuple(prepared.train_files),
                         tuple(prepared.eval_files))
    record = trial_trainer(config, inputs, data.tf_example_accessor())(config)
    assert record["num_train"] == NUM_TRAIN and not record["refit"]


def test_random_erasing_sets_a_rectangle_of_some_images_to_the_mean() -> None:
    """augmentation.erase: that share of the images gets one rectangle of 2-33 % of its area
    set to 0 (the mean, the images being standardized); the others are left as they are.
    """
    images = tf.ones([400, 16, 16, 1])
    config = _config(erase=0.5, augment_translate=0.0)
    erased = data.augmenter(config)(images, training=True).numpy()
    zeros = (erased == 0).reshape(400, -1).mean(axis=1)
    touched = zeros[zeros > 0]
    assert 0.35 < len(touched) / 400 < 0.65
    assert touched.min() >= 0.01 and touched.max() <= 0.4
    assert set(np.unique(erased)) <= {0.0, 1.0}
    assert data.augmenter(_config(augment_translate=0.0)) is None
    with pytest.raises(ValueError, match=r"augmentation.erase must be in \[0, 1\]"):
        _config(erase=1.5)
