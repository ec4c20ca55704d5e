"""Training under tf.distribute.MirroredStrategy on two logical CPU devices.

Logical devices must be configured before TensorFlow initializes, so each case runs in a fresh
interpreter (one strategy per process, as in the Trainer)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, "tests")
from test_recipe import SHAPE, CLASSES, _examples
from trainer.config import from_recipe
from trainer.model import class_probabilities
from trainer.train import train
recipe = sys.argv[1]
extra = {"learning_rate": 0.05, "widths": (16, 32)} if recipe == "fast" else {}
config = from_recipe(recipe, SHAPE, CLASSES, epochs=6, batch_size=16, distribution="mirrored",
                     **extra)
model, record = train(config, _examples(240), _examples(60, seed=1))
probabilities = class_probabilities(model, tf.zeros((2, *SHAPE)), config.tta_flip)
print("RESULT " + json.dumps({"replicas": record["replicas"],
                              "accuracy": record["final_eval_accuracy"],
                              "probability_sums": probabilities.numpy().sum(axis=1).tolist()}))
"""


@pytest.mark.parametrize("recipe", ["classic", "fast"])
def test_mirrored_strategy_on_two_logical_cpus(recipe: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, recipe], cwd=REPO, capture_output=True, text=True,
        timeout=600, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stderr[-3000:]
    result = json.loads(lines[0].removeprefix("RESULT "))
    assert result["replicas"] == 2
    assert result["accuracy"] >= 0.8, result
    assert all(abs(s - 1) < 1e-4 for s in result["probability_sums"])
