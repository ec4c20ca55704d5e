"""The training recipe's code paths on tiny in-memory data (full-size runs live in bench/)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer import data
from trainer.config import RECIPES, TrainerConfig, from_recipe
from trainer.model import WHITEN_LAYER, build_model, class_probabilities, whitening_kernel
from trainer.schedule import OneCycle, make_optimizer
from trainer.train import CURVES_FILE, HISTORY_FILE, train

SHAPE = (8, 8, 3)
CLASSES = ("a", "b", "c")


def _examples(n: int, seed: int = 0) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.normal(size=(n, *SHAPE)).astype("float32")
    images[np.arange(n), :, :, labels] += 2.0  # learnable: the class is the bright channel
    return tf.data.Dataset.from_tensor_slices((images, labels.astype("int64"))).cache()


def test_recipe_overrides_and_round_trip() -> None:
    config = from_recipe("fast", SHAPE, CLASSES, epochs=3, learning_rate=None)
    assert config.model == "fast" and config.epochs == 3
    assert config.learning_rate == RECIPES["fast"]["learning_rate"]
    assert TrainerConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown recipe"):
        from_recipe("nope", SHAPE, CLASSES)
    with pytest.raises(ValueError, match="optimizer"):
        from_recipe("classic", SHAPE, CLASSES, optimizer="rmsprop")


def test_one_cycle_schedule_shape() -> None:
    schedule = OneCycle(peak=1.0, total_steps=100, warmup_fraction=0.2)
    values = [float(schedule(step)) for step in (0, 10, 20, 60, 100)]
    assert values == pytest.approx([0.1, 0.55, 1.0, 0.5, 0.0])


def test_whitening_layer_decorrelates_patches_and_is_frozen() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(64, *SHAPE)).astype("float32")
    images[..., 1] += 0.9 * images[..., 0]  # correlated channels
    kernel = whitening_kernel(images)
    assert kernel.shape == (2, 2, 3, 24)
    np.testing.assert_array_equal(kernel[..., 12:], -kernel[..., :12])
    patches = np.lib.stride_tricks.sliding_window_view(images, (2, 2), axis=(1, 2))
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12)
    whitened = (patches - patches.mean(0)) @ kernel.reshape(12, 24)[:, :12]
    np.testing.assert_allclose(np.cov(whitened, rowvar=False), np.eye(12), atol=0.02)

    config = from_recipe("fast", SHAPE, CLASSES, widths=(16, 32), whiten=True)
    model = build_model(config, images)
    layer = model.get_layer(WHITEN_LAYER)
    assert not layer.trainable
    assert layer.kernel.path not in {v.path for v in model.trainable_variables}
    np.testing.assert_allclose(layer.get_weights()[0], kernel)
    with pytest.raises(ValueError, match="sample_images"):
        build_model(config)


def test_flip_tta_averages_an_image_and_its_mirror() -> None:
    model = build_model(from_recipe("classic", SHAPE, CLASSES))
    images = tf.constant(np.random.default_rng(0).normal(size=(4, *SHAPE)), tf.float32)
    mirrored = tf.reverse(images, axis=[2])
    plain = class_probabilities(model, images, tta_flip=False).numpy()
    tta = class_probabilities(model, images, tta_flip=True).numpy()
    np.testing.assert_allclose(tta, class_probabilities(model, mirrored, tta_flip=True), atol=1e-6)
    expected = (plain + class_probabilities(model, mirrored, tta_flip=False).numpy()) / 2
    np.testing.assert_allclose(tta, expected, atol=1e-6)
    np.testing.assert_allclose(tta.sum(axis=1), 1.0, rtol=1e-5)


def test_weight_averaging_needs_enough_steps() -> None:
    config = from_recipe("fast", SHAPE, CLASSES, epochs=2, ema_momentum=0.99)
    assert not make_optimizer(config, steps_per_epoch=100).use_ema  # 2 windows of 100 steps
    assert make_optimizer(config, steps_per_epoch=500).use_ema  # 10 windows


def test_weight_decay_skips_batchnorm_and_bias() -> None:
    config = from_recipe("fast", SHAPE, CLASSES, whiten=False)
    optimizer = make_optimizer(config, steps_per_epoch=10)
    model = build_model(config)
    optimizer.build(model.trainable_variables)
    decayed = {v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    assert decayed and all("kernel" in path for path in decayed)


@pytest.mark.parametrize("recipe", ["classic", "fast"])
def test_augmentation_applies_to_training_batches_only(recipe: str) -> None:
    config = from_recipe(recipe, SHAPE, CLASSES, augment_flip=True, augment_translate=0.25,
                         batch_size=16)
    examples = _examples(64)
    originals = np.concatenate([x for x, _ in examples.batch(64).as_numpy_iterator()])
    evaluated = np.concatenate([x for x, _ in data.eval_batches(examples, config)])
    np.testing.assert_array_equal(evaluated, originals)
    trained = np.concatenate([x for x, _ in data.training_batches(examples, config, 64)])
    # Shuffled and augmented: no training image is bit-identical to every original.
    changed = [not any(np.array_equal(t, o) for o in originals) for t in trained]
    assert sum(changed) > len(trained) // 2


def test_bfloat16_compute_with_float32_logits() -> None:
    sample = np.random.default_rng(0).normal(size=(16, *SHAPE)).astype("float32")
    config = from_recipe("fast", SHAPE, CLASSES, precision="bfloat16")
    model = build_model(config, sample)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and {layer.compute_dtype for layer in convs} == {"bfloat16"}
    assert model.output.dtype == "float32"
    float_model = build_model(config.replace(precision="float32"), sample)
    assert {layer.compute_dtype for layer in float_model.layers[1:]} == {"float32"}


@pytest.mark.parametrize("recipe", ["classic", "fast"])
def test_train_learns_and_writes_history_and_curves(recipe: str, tmp_path) -> None:
    # The fast recipe with a short averaging window, so weight averaging stays on at 90 steps.
    fast = {"learning_rate": 0.05, "ema_momentum": 0.8, "widths": (16, 32)}
    overrides = fast if recipe == "fast" else {}
    config = from_recipe(recipe, SHAPE, CLASSES, epochs=6, batch_size=16, validation_freq=2,
                         **overrides)
    model, record = train(config, _examples(240), _examples(60, seed=1), log_dir=str(tmp_path))
    assert record["num_train"] == 240 and record["num_eval"] == 60
    assert record["final_eval_accuracy"] >= 0.8
    assert len(record["history"]["loss"]) == 6
    assert len(record["history"]["val_accuracy"]) == 3  # every 2nd epoch
    saved = json.loads((tmp_path / HISTORY_FILE).read_text())
    assert saved["final_eval_accuracy"] == record["final_eval_accuracy"]
    assert (tmp_path / CURVES_FILE).read_bytes().startswith(b"\x89PNG")
    assert model.output.shape[-1] == 3
