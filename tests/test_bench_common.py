"""bench/common.py: the host's identity and a run's training speed against the host's rate.

The rates here are made up: nothing is timed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    HostRates,
    compute_dtype,
    cpu_identity,
    run_not_fit_share,
    step_share,
    train_step_share,
)

AMD = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu avx2 fma

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: another
"""


def config(recipe: str, precision: str | None = None, shape=(8, 8, 1)) -> dict:
    """A Trainer record's config (history.json) for a named recipe."""
    from trainer.recipes import from_recipe

    data = from_recipe(recipe, shape, ["a", "b"]).to_dict()
    data["recipe"] = recipe
    if precision:
        data["runtime"]["precision"] = precision
    return data


@pytest.mark.unit
def test_cpu_identity_reads_the_first_processor() -> None:
    assert cpu_identity(AMD) == {"cpu_vendor": "AuthenticAMD", "cpu_family": 25,
                                 "cpu_model_number": 17,
                                 "cpu_model": "AMD EPYC 9R14 96-Core Processor"}


@pytest.mark.unit
def test_cpu_identity_without_the_x86_lines_is_none() -> None:
    identity = cpu_identity("processor\t: 0\nCPU implementer\t: 0x41\n")
    assert identity == {"cpu_vendor": None, "cpu_family": None, "cpu_model_number": None,
                        "cpu_model": None}


@pytest.mark.unit
def test_step_share_is_images_times_flops_over_rate() -> None:
    share = step_share(flops_per_image=2_000_000_000, images_per_second=150.0, rate=600e9)
    assert share == {"training_gflop_per_image": 2.0, "achieved_gflops": 300.0,
                     "host_matmul_gflops": 600.0, "share_of_host_rate": 0.5}


@pytest.mark.unit
def test_host_rates_record_gflops() -> None:
    record = HostRates({"float32": 171_234_000_000.0, "bfloat16": 883_049_000_000.0}).to_dict()
    assert record["matmul_gflops"] == {"float32": 171.2, "bfloat16": 883.0}
    assert "before the pipeline" in record["note"]


@pytest.mark.unit
def test_train_step_share_uses_the_recipe_flops_and_the_dtype_rate() -> None:
    from trainer.fit_estimate import recipe_flops_per_image

    rates = HostRates({"float32": 100e9, "bfloat16": 400e9})
    share = train_step_share(config("classic", "float32"), 200.0, rates)
    flops = recipe_flops_per_image("classic", (8, 8, 1), 2)
    assert share["recipe"] == "classic"
    assert share["compute_dtype"] == "float32"
    assert share["host_matmul_gflops"] == 100.0
    assert share["share_of_host_rate"] == round(200.0 * flops / 100e9, 3)


@pytest.mark.unit
def test_bfloat16_config_is_measured_against_the_bfloat16_rate() -> None:
    rates = HostRates({"float32": 100e9, "bfloat16": 400e9})
    share = train_step_share(config("classic", "bfloat16"), 200.0, rates)
    assert share["compute_dtype"] == "bfloat16"
    assert share["host_matmul_gflops"] == 400.0


@pytest.mark.unit
def test_auto_precision_follows_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.model

    monkeypatch.setattr(trainer.model, "bf16_supported", lambda: True)
    assert compute_dtype(config("classic", "auto")) == "bfloat16"
    monkeypatch.setattr(trainer.model, "bf16_supported", lambda: False)
    assert compute_dtype(config("classic", "auto")) == "float32"


@pytest.mark.unit
def test_no_share_without_a_rate_in_the_dtype() -> None:
    share = train_step_share(config("classic", "bfloat16"), 200.0, HostRates({"float32": 1e11}))
    assert share["share_of_host_rate"] is None
    assert "bfloat16" in share["reason"]


@pytest.mark.unit
def test_no_share_for_a_pretrained_backbone() -> None:
    share = train_step_share(config("transfer", shape=(64, 64, 3)), 50.0,
                             HostRates({"float32": 1e11}))
    assert share["recipe"] == "transfer"
    assert share["share_of_host_rate"] is None
    assert "backbone" in share["reason"]


@pytest.mark.unit
def test_run_not_fit_share() -> None:
    assert run_not_fit_share(90.0, 100.0) == 0.1
    assert run_not_fit_share(None, 100.0) is None


@pytest.mark.unit
def test_the_share_counts_the_runs_own_model_not_the_recipes_default() -> None:
    """A run with narrower layers (--set, the Tuner) did fewer FLOPs per image."""
    from trainer.fit_estimate import config_flops_per_image, recipe_flops_per_image
    from trainer.recipes import from_recipe

    narrow = from_recipe("classic", (8, 8, 1), ["a", "b"], base_filters=8, precision="float32")
    rates = HostRates({"float32": 100e9})
    flops = config_flops_per_image(narrow)
    assert flops < recipe_flops_per_image("classic", (8, 8, 1), 2)
    share = train_step_share(narrow.to_dict(), 200.0, rates)
    assert share["share_of_host_rate"] == round(200.0 * flops / 100e9, 3)


@pytest.mark.unit
def test_tta_accuracy_scores_examples_through_the_serving_views() -> None:
    """A model that says class 1 for bright images: right on all, then wrong on all once the
    labels are swapped; with flip TTA as well (a flip does not change brightness).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from bench.common import tta_accuracy
    from trainer.recipes import from_recipe

    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(2, use_bias=False)])
    model.layers[-1].set_weights([np.stack([-np.ones(16), np.ones(16)], axis=1)])
    images = np.concatenate([np.ones((5, 4, 4, 1)), -np.ones((5, 4, 4, 1))]).astype("float32")
    labels = np.array([1] * 5 + [0] * 5, "int64")
    config = from_recipe("classic", (4, 4, 1), ["dark", "bright"])
    right = tf.data.Dataset.from_tensor_slices((images, labels))
    wrong = tf.data.Dataset.from_tensor_slices((images, 1 - labels))
    assert tta_accuracy(model, right, config) == 1.0
    assert tta_accuracy(model, wrong, config) == 0.0
    flipping = config.override({"evaluation.tta_flip": True})
    assert tta_accuracy(model, right, flipping) == 1.0
