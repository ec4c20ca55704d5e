"""The training recipe's code paths on tiny in-memory data (full-size runs live in bench/)."""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from imagegen import learnable_arrays
from trainer import data
from trainer.config import TrainerConfig, parse_settings
from trainer.ensemble import MEMBER_SEED_STRIDE, networks_of
from trainer.model import (
    WHITEN_LAYER,
    DiracInit,
    build_model,
    class_probabilities,
    dtype_policy,
    shift_images,
    whitening_kernel,
)
from trainer.recipes import RECIPES, choose_recipe, fit_batch_size, from_recipe
from trainer.record import TrainingRecord
from trainer.schedule import OneCycle, ScaledSGD, make_optimizer
from trainer.train import CURVES_FILE, train

SHAPE = (8, 8, 3)
CLASSES = ("a", "b", "c")


def _examples(n: int, seed: int = 0) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(learnable_arrays(n, seed, SHAPE)).cache()


def test_recipe_overrides_and_round_trip() -> None:
    config = from_recipe("fast", SHAPE, CLASSES, epochs=3, learning_rate=None)
    assert config.model.kind == "fast" and config.optimizer.epochs == 3
    assert config.optimizer.learning_rate == RECIPES["fast"].optimizer.learning_rate
    assert TrainerConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown recipe"):
        from_recipe("nope", SHAPE, CLASSES)
    with pytest.raises(ValueError, match="optimizer"):
        from_recipe("classic", SHAPE, CLASSES, optimizer="rmsprop")


@pytest.mark.parametrize(
    ("shape", "num_train", "bfloat16", "recipe", "why"),
    [
        ((8, 8, 1), 1259, False, "classic", "1,259 training images"),  # the built-in digits
        ((8, 8, 1), 1259, True, "classic", "too few"),
        ((28, 28, 1), 3000, False, "classic", "too few"),
        ((28, 28, 1), 54000, False, "fast-gray", "28x28x1 grayscale"),  # MNIST, Fashion-MNIST
        ((28, 28, 1), 54000, True, "fast-gray", "28x28x1 grayscale"),
        ((64, 64, 1), 20000, False, "fast-gray", "grayscale"),
        ((96, 96, 1), 20000, False, "fast", "96x96x1"),
        ((32, 32, 3), 45000, False, "fast", "float32 compute"),  # CIFAR-10 on an AVX2 host
        ((32, 32, 3), 45000, True, "fast-wide", "bfloat16 compute"),  # on AVX512-BF16
    ],
)
def test_auto_recipe_follows_shape_size_and_precision(shape, num_train, bfloat16, recipe,
                                                      why) -> None:
    chosen, reason = choose_recipe(shape, num_train, bfloat16=bfloat16)
    assert chosen == recipe and why in reason
    assert from_recipe(chosen, shape, CLASSES, recipe_reason=reason).recipe == recipe


def test_fast_wide_is_fast_muon_with_wider_blocks_for_ten_epochs(monkeypatch) -> None:
    wide = from_recipe("fast-wide", (32, 32, 3), CLASSES)
    muon = from_recipe("fast-muon", (32, 32, 3), CLASSES)
    assert (wide.model.widths, wide.optimizer.epochs, wide.optimizer.kind) == (
        (80, 320, 320), 10, "muon")
    monkeypatch.setattr("trainer.model.bf16_supported", lambda: True)
    assert dtype_policy(wide) == "mixed_bfloat16"
    assert wide.override({"model.widths": muon.model.widths, "optimizer.epochs":
                          muon.optimizer.epochs, "recipe": "fast-muon"}) == muon
    model = build_model(wide, np.random.default_rng(0).normal(size=(64, 32, 32, 3)))
    conv_widths = [layer.filters for layer in model.layers
                   if isinstance(layer, keras.layers.Conv2D) and layer.name != WHITEN_LAYER]
    assert conv_widths == [80, 80, 320, 320, 320, 320]


@pytest.mark.parametrize(
    ("precision", "trains_here", "cpu_bf16", "expected"),
    [
        (None, True, True, True),  # `run` on an AVX512-BF16 host
        (None, True, False, False),  # `run` on an AVX2 host
        ("auto", True, True, True),
        ("float32", True, True, False),
        ("bfloat16", True, False, True),
        (None, False, True, False),  # compile-kfp: the pods' CPU is unknown here
        ("bfloat16", False, False, True),
    ],
)
def test_bfloat16_is_judged_on_the_machine_that_trains(monkeypatch, precision, trains_here,
                                                       cpu_bf16, expected) -> None:
    from cli.training import computes_in_bfloat16

    monkeypatch.setattr("trainer.model.bf16_supported", lambda: cpu_bf16)
    assert computes_in_bfloat16(precision, trains_here) is expected


def test_recipe_batch_is_halved_to_fit_the_smallest_split() -> None:
    assert fit_batch_size(512, 6000) == 512
    assert fit_batch_size(512, 300) == 256
    assert fit_batch_size(64, 18) == 16
    assert fit_batch_size(64, 1) == 1


def test_fast_gray_recipe_has_no_flips_and_keeps_full_resolution(monkeypatch) -> None:
    config = from_recipe("fast-gray", (28, 28, 1), CLASSES)
    assert config.model.members == 2 and config.optimizer.epochs == 8  # two networks averaged
    assert not (config.augmentation.flip or config.augmentation.alternate_flip
                or config.evaluation.tta_flip)
    # float32 even on a bfloat16 CPU (unstable there, for little speed); --precision overrides.
    monkeypatch.setattr("trainer.model.bf16_supported", lambda: True)
    assert dtype_policy(config) == "float32"
    assert dtype_policy(from_recipe("fast-gray", (28, 28, 1), CLASSES,
                                    precision="bfloat16")) == "mixed_bfloat16"
    sample = np.random.default_rng(0).normal(size=(32, 28, 28, 1))
    model = build_model(config, sample)
    assert model.get_layer(WHITEN_LAYER).output.shape[1:3] == (27, 27)
    assert model.output.shape == (None, 3)
    # The stride-2 option turns each 2x2 patch into its 8 whitened coordinates instead.
    strided = build_model(config.override({"model.whiten_stride": 2, "model.widths": (48, 96)}),
                          sample)
    whiten = strided.get_layer(WHITEN_LAYER)
    assert whiten.strides == (2, 2) and whiten.output.shape[1:3] == (14, 14)


def test_one_cycle_schedule_shape() -> None:
    schedule = OneCycle(peak=1.0, total_steps=100, warmup_fraction=0.2)
    values = [float(schedule(step)) for step in (0, 10, 20, 60, 100)]
    assert values == pytest.approx([0.1, 0.55, 1.0, 0.5, 0.0])
    schedule = OneCycle(peak=2.0, total_steps=100, warmup_fraction=0.2, initial=0.2, final=0.1)
    values = [float(schedule(step)) for step in (0, 20, 60, 100, 120)]
    assert values == pytest.approx([0.4, 2.0, 1.1, 0.2, 0.2])


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
    trainable = {v.path for v in model.trainable_variables}
    assert layer.kernel.path not in trainable
    assert model.get_layer(f"{WHITEN_LAYER}_bias").bias.path in trainable
    # Scale-free BatchNorm: shifts only.
    assert not any(path.endswith("gamma") for path in trainable)
    assert any(path.endswith("beta") for path in trainable)
    np.testing.assert_allclose(layer.get_weights()[0], kernel)
    with pytest.raises(ValueError, match="sample_images"):
        build_model(config)


def test_whitening_from_a_bounded_sample_of_patches() -> None:
    """Large images: the kernel comes from max_patches random patches, in O(sample) memory."""
    import tracemalloc

    rng = np.random.default_rng(1)
    images = rng.normal(size=(40, 192, 192, 3)).astype("float32")  # 35 MB
    images[..., 2] += 0.8 * images[..., 0]
    # Every 2x2 patch as float32 would be 40 x 191 x 191 x 12 x 4 bytes = 70 MB.
    tracemalloc.start()
    kernel = whitening_kernel(images, max_patches=20_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 * 2**20, f"whitening used {peak / 2**20:.0f} MiB"
    np.testing.assert_array_equal(kernel, whitening_kernel(images, max_patches=20_000))
    patches = np.lib.stride_tricks.sliding_window_view(images[:4], (2, 2), axis=(1, 2))
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12)
    whitened = (patches - patches.mean(0)) @ kernel.reshape(12, 24)[:, :12]
    np.testing.assert_allclose(np.cov(whitened, rowvar=False), np.eye(12), atol=0.1)


def test_flip_tta_averages_the_logits_of_an_image_and_its_mirror() -> None:
    model = build_model(from_recipe("classic", SHAPE, CLASSES))
    images = tf.constant(np.random.default_rng(0).normal(size=(4, *SHAPE)), tf.float32)
    mirrored = tf.reverse(images, axis=[2])
    tta = class_probabilities(model, images, tta_flip=True).numpy()
    np.testing.assert_allclose(tta, class_probabilities(model, mirrored, tta_flip=True), atol=1e-6)
    expected = tf.nn.softmax((model(images) + model(mirrored)) / 2).numpy()
    np.testing.assert_allclose(tta, expected, atol=1e-6)
    np.testing.assert_allclose(tta.sum(axis=1), 1.0, rtol=1e-5)
    plain = class_probabilities(model, images, tta_flip=False).numpy()
    np.testing.assert_allclose(plain, tf.nn.softmax(model(images)).numpy(), atol=1e-6)


def test_translate_tta_adds_shifted_views_at_half_weight() -> None:
    images = tf.constant(np.arange(2 * 6 * 6 * 1, dtype="float32").reshape(2, 6, 6, 1))
    down_right = shift_images(images, 1, 1).numpy()
    np.testing.assert_array_equal(down_right[:, 1:, 1:], images.numpy()[:, :-1, :-1])
    up_left = shift_images(images, -1, -1).numpy()
    np.testing.assert_array_equal(up_left[:, :-1, :-1], images.numpy()[:, 1:, 1:])

    model = build_model(from_recipe("classic", SHAPE, CLASSES))
    x = tf.constant(np.random.default_rng(1).normal(size=(3, *SHAPE)), tf.float32)
    views = [x, shift_images(x, -1, -1), shift_images(x, 1, 1)]
    logits = [model(v) for v in views]
    expected = tf.nn.softmax(logits[0] / 2 + (logits[1] + logits[2]) / 4).numpy()
    got = class_probabilities(model, x, tta_flip=False, tta_translate=1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_dirac_init_passes_the_first_channels_through() -> None:
    kernel = DiracInit(seed=0)((3, 3, 4, 6)).numpy()
    identity = np.zeros((3, 3, 4, 4))
    identity[1, 1, range(4), range(4)] = 1
    np.testing.assert_array_equal(kernel[..., :4], identity)
    assert np.abs(kernel[..., 4:]).sum() > 0  # the extra filters stay random


def test_scaled_sgd_adds_l2_and_speeds_up_shift_variables() -> None:
    kernel = keras.Variable(np.full((2,), 2.0, "float32"), name="kernel")
    beta = keras.Variable(np.full((2,), 2.0, "float32"), name="beta")
    optimizer = ScaledSGD(0.1, l2=0.5, bias_lr_multiplier=10.0, momentum=0.0)
    grad = tf.constant([1.0, 0.0])
    optimizer.apply([grad, grad], [kernel, beta])
    # step = lr * (multiplier * grad + l2 * value)
    np.testing.assert_allclose(kernel.numpy(), [2.0 - 0.1 * (1 + 1.0), 2.0 - 0.1 * 1.0])
    np.testing.assert_allclose(beta.numpy(), [2.0 - 0.1 * (10 + 1.0), 2.0 - 0.1 * 1.0])


def test_weight_averaging_needs_enough_steps() -> None:
    config = from_recipe("fast", SHAPE, CLASSES, epochs=2, ema_momentum=0.99)
    assert not make_optimizer(config, steps_per_epoch=100).use_ema  # 2 windows of 100 steps
    assert make_optimizer(config, steps_per_epoch=500).use_ema  # 10 windows


def test_adamw_weight_decay_skips_batchnorm_and_bias() -> None:
    config = from_recipe("fast", SHAPE, CLASSES, whiten=False, optimizer="adam",
                         weight_decay=1e-4)
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


def test_training_batches_under_seed_zero_reshuffle_every_epoch_the_same_way() -> None:
    """runtime.seed=0 makes train() set TF's global seed to 0, under which tf.data's shuffle
    cannot take the per-epoch seed tensor (random_seed.get_seed compares it with 0 in Python).
    """
    config = from_recipe("classic", SHAPE, CLASSES, batch_size=64, epochs=2,
                         augment_flip=False, augment_translate=0.0).override(
                             {"runtime.seed": 0})
    keras.utils.set_random_seed(0)
    try:
        def labels() -> list[np.ndarray]:
            return [np.argmax(y, -1) for _, y in data.training_batches(_examples(64), config,
                                                                          64)]

        first, second = labels()
        assert sorted(first) == sorted(second) and list(first) != list(second)
        assert [list(epoch) for epoch in labels()] == [list(first), list(second)]
    finally:
        tf.random.set_seed(None)


def _unknown_length(examples: tf.data.Dataset) -> tf.data.Dataset:
    """As records read from TFRecord files: a dataset whose length tf.data cannot tell."""
    return examples.filter(lambda images, labels: True)


def test_training_inputs_of_stated_length_validate_without_out_of_data_warning() -> None:
    config = from_recipe("classic", SHAPE, CLASSES, batch_size=16)
    examples = _unknown_length(_examples(40))
    assert data.eval_batches(examples, config).cardinality() == tf.data.UNKNOWN_CARDINALITY
    inputs = data.in_memory_inputs(_unknown_length(_examples(32)), examples)
    batches = data.eval_batches(inputs.eval, config)
    assert batches.cardinality() == 3
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(),
                              keras.layers.Dense(len(CLASSES))])
    model.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True))
    train_batches = data.eval_batches(_examples(32), config)
    for validation, warns in ((data.eval_batches(examples, config), True), (batches, False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(train_batches, validation_data=validation, epochs=2, verbose=0)
        out_of_data = [w for w in caught if "ran out of data" in str(w.message)]
        assert bool(out_of_data) == warns, [str(w.message) for w in caught]


def test_a_wrong_stated_length_is_refused() -> None:
    config = from_recipe("classic", SHAPE, CLASSES, batch_size=16)
    batches = data.eval_batches(data.with_length(_unknown_length(_examples(40)), 80), config)
    with pytest.raises(tf.errors.OpError, match="expected to contain 80 elements"):
        list(batches)


def test_bfloat16_compute_with_float32_logits() -> None:
    sample = np.random.default_rng(0).normal(size=(16, *SHAPE)).astype("float32")
    config = from_recipe("fast", SHAPE, CLASSES, precision="bfloat16")
    model = build_model(config, sample)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and {layer.compute_dtype for layer in convs} == {"bfloat16"}
    assert model.output.dtype == "float32"
    float_model = build_model(config.override({"runtime.precision": "float32"}), sample)
    assert {layer.compute_dtype for layer in float_model.layers[1:]} == {"float32"}


@pytest.mark.parametrize("recipe", ["classic", "fast"])
def test_train_learns_and_writes_history_and_curves(recipe: str, tmp_path) -> None:
    # The fast recipe with a short averaging window, so weight averaging stays on at 90 steps.
    fast = {"learning_rate": 0.05, "ema_momentum": 0.8, "widths": (16, 32)}
    overrides = fast if recipe == "fast" else {}
    config = from_recipe(recipe, SHAPE, CLASSES, epochs=6, batch_size=16, validation_freq=2,
                         **overrides)
    # Of unknown length, as read from TFRecords; Keras must not warn about the input.
    inputs = data.in_memory_inputs(_unknown_length(_examples(240)),
                                   _unknown_length(_examples(60, seed=1)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, record = train(config, inputs, log_dir=str(tmp_path))
    input_warnings = [str(w.message) for w in caught if "epoch_iterator" in w.filename]
    assert not input_warnings, input_warnings
    assert record["num_train"] == 240 and record["num_eval"] == 60
    assert record["final_eval_accuracy"] >= 0.8
    assert len(record["history"]["loss"]) == 6
    assert len(record["history"]["val_accuracy"]) == 3  # every 2nd epoch
    saved = TrainingRecord.read(tmp_path)
    assert saved.final_eval_accuracy == record["final_eval_accuracy"]
    assert (tmp_path / CURVES_FILE).read_bytes().startswith(b"\x89PNG")
    assert model.output.shape[-1] == 3


def test_an_ensemble_trains_each_member_on_its_own_seed_and_averages_their_logits(
        tmp_path) -> None:
    config = from_recipe("fast", SHAPE, CLASSES, epochs=3, batch_size=16, learning_rate=0.05,
                         widths=(8, 16), seed=5, members=2)
    inputs = data.in_memory_inputs(_examples(160), _examples(40, seed=1))
    model, record = train(config, inputs, log_dir=str(tmp_path))
    networks = networks_of(model, 2)
    assert [network.name for network in networks] == ["fast_cnn_0", "fast_cnn_1"]
    first, second = (network.get_layer("logits").kernel.numpy() for network in networks)
    assert not np.allclose(first, second)  # different seeds, different networks
    images = next(iter(_examples(40, seed=1).batch(40)))[0]
    np.testing.assert_allclose(
        model(images, training=False),
        (networks[0](images, training=False) + networks[1](images, training=False)) / 2,
        atol=1e-5)
    members = record["members"]
    assert [m["seed"] for m in members] == [5, 5 + MEMBER_SEED_STRIDE]
    assert [m["epochs_run"] for m in members] == [3, 3]
    assert record["fit_seconds"] == pytest.approx(sum(m["fit_seconds"] for m in members),
                                                  abs=0.02)
    # Two networks' epochs in the fit time: images/s is each network's pace.
    assert record["train_images_per_second"] == pytest.approx(
        160 * 6 / record["fit_seconds"], rel=0.01)
    saved = TrainingRecord.read(tmp_path)
    assert len(saved.members) == 2 and saved.epochs_run == 3
    assert any((tmp_path / "member_1").rglob("events.out.tfevents.*"))
    # One network: the model is the network itself, as before ensembles.
    single, single_record = train(config.override({"model.members": 1}), inputs)
    assert single.name == "fast_cnn" and single_record["members"] == []


def test_warm_start_refuses_a_served_version_of_another_network_count(tmp_path) -> None:
    """A checkpoint read matches the new model's objects only, so one network would load the
    first of a served pair silently: the counts are compared first, and the record says why.
    """
    from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

    from trainer.config import TRAINING_CONFIG_FILE
    from trainer.warm_start import warm_start

    served = from_recipe("fast", SHAPE, CLASSES, widths=(8, 16), members=2)
    version = tmp_path / "1"
    (version / "assets").mkdir(parents=True)
    (version / "assets" / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    (version / TRAINING_CONFIG_FILE).parent.mkdir()
    (version / TRAINING_CONFIG_FILE).write_text(json.dumps(served.to_dict()))
    (version / "saved_model.pb").write_bytes(saved_model_pb2.SavedModel(
        meta_graphs=[meta_graph_pb2.MetaGraphDef()]).SerializeToString())
    single = build_model(served.override({"model.members": 1}),
                         np.zeros((4, *SHAPE), "float32"))
    before = [w.numpy() for w in single.weights]
    record = warm_start(single, CLASSES, str(tmp_path), members=1)
    assert not record["used"] and record["version"] == 1
    assert record["why"] == "version 1 averages 2 network(s), this model 1 (model.members)"
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, single.weights, strict=True))


def test_alternating_flip_mirrors_each_image_in_exactly_one_of_two_epochs() -> None:
    n = 40
    images = np.zeros((n, *SHAPE), "float32")
    images[np.arange(n), :, 0, :] = np.arange(n)[:, None, None] + 1  # index in the left column
    examples = tf.data.Dataset.from_tensor_slices((images, np.zeros(n, "int64")))
    config = from_recipe("fast", SHAPE, CLASSES, epochs=2, batch_size=8, augment_translate=0.0)
    assert config.augmentation.alternate_flip
    flipped: list[set[int]] = [set(), set()]
    seen = 0
    for batch, _ in data.training_batches(examples, config, n).as_numpy_iterator():
        for image in batch:
            index = int(image.max()) - 1
            if image[0, -1, 0] > 0:  # the index column moved to the right
                flipped[seen // n].add(index)
            seen += 1
    assert seen == 2 * n
    assert not flipped[0] & flipped[1]
    assert flipped[0] | flipped[1] == set(range(n))
    assert 0.25 * n < len(flipped[0]) < 0.75 * n


def test_lookahead_pulls_weights_to_their_average_and_ends_on_it() -> None:
    from trainer.lookahead import Lookahead

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].kernel.assign(np.ones((2, 1), "float32"))
    callback = Lookahead(total_steps=2, every=2, decay=0.5)
    callback.set_model(model)
    callback.on_train_begin()
    model.layers[0].kernel.assign(np.full((2, 1), 3.0, "float32"))
    callback.on_train_batch_end(0)  # step 1: not an averaging step
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), 3.0)
    callback.on_train_batch_end(1)  # step 2 = the end: decay 0.5**2 towards the average
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), 0.25 * 1 + 0.75 * 3)
    model.layers[0].kernel.assign(np.full((2, 1), 9.0, "float32"))
    callback.on_train_end()
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), 2.5)


def test_settings_from_the_command_line_take_each_field_s_type() -> None:
    settings = parse_settings(["widths=16,32,64", "tta_flip=false", "learning_rate=0.1",
                               "epochs=3", "activation=relu", "cache-budget=2GiB"])
    assert settings == {"model.widths": (16, 32, 64), "evaluation.tta_flip": False,
                        "optimizer.learning_rate": 0.1, "optimizer.epochs": 3,
                        "model.activation": "relu", "data.cache_budget": "2GiB"}
    config = from_recipe("fast", SHAPE, CLASSES).override(settings)
    assert config.model.widths == (16, 32, 64) and config.recipe == "fast"
    for bad, message in (("nope=1", "unknown training setting"),
                         ("image_shape=1,1,1", "decided by the data"),
                         ("warm_start_from=/m", "continuity.warm_start_from is decided"),
                         ("widths=a", "invalid literal"), ("tta_flip=maybe", "true or false"),
                         ("epochs", "KEY=VALUE")):
        with pytest.raises(ValueError, match=message):
            parse_settings([bad])
