"""Training under tf.distribute: MirroredStrategy on two logical CPU devices, and
MultiWorkerMirroredStrategy with two worker processes on this machine.

Logical devices and collective ops must be configured before TensorFlow initializes, so each
case trains in fresh interpreters (one strategy per process, as in the Trainer).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

import imagegen
from schema import features
from serving.warmup import read_warmup_requests
from tiny_transform import SIZE, Prepared
from trainer.config import TrainerConfig
from trainer.data import tf_example_accessor, transformed_examples
from trainer.launch import WorkerFailed, worker_command, worker_env
from trainer.model import build_model, class_probabilities
from trainer.multi_worker import WEIGHTS_FILE, cli_args
from trainer.recipes import from_recipe
from trainer.record import TrainingRecord
from trainer.run import run_fn

# Trains in worker subprocesses, or on the `prepared` fixture (tf.Transform on Beam).
pytestmark = pytest.mark.pipeline

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, "tests")
from test_recipe import SHAPE, CLASSES, _examples
from trainer.recipes import from_recipe
from trainer.model import class_probabilities
from trainer.data import in_memory_inputs
from trainer.train import train
recipe = sys.argv[1]
extra = {"learning_rate": 0.05, "widths": (16, 32)} if recipe == "fast" else {}
config = from_recipe(recipe, SHAPE, CLASSES, epochs=6, batch_size=16, distribution="mirrored",
                     **extra)
model, record = train(config, in_memory_inputs(_examples(240), _examples(60, seed=1)))
probabilities = class_probabilities(model, tf.zeros((2, *SHAPE)), config.evaluation.tta_flip)
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


# Multi-worker training. The workers run `python -m trainer.multi_worker` with the command line
# and environment run_fn builds (trainer/launch.py, multi_worker.cli_args), on data laid out as
# the Trainer receives it (the `prepared` fixture, tests/tiny_transform.py). run_fn itself is
# called with hand-made FnArgs (the single-process baseline, and a failing worker); TFX's
# executor building them from artifacts is not run here.

WORKER_TIMEOUT_S = 300


def _config() -> TrainerConfig:
    # Small and fixed-length: no early stopping, so both runs train the same number of steps;
    # float32, so the exported and the reloaded model compute alike on bfloat16-capable CPUs.
    return from_recipe(
        "classic", (SIZE, SIZE, 3), imagegen.CLASS_NAMES, epochs=5, batch_size=24,
        base_filters=8, dense_units=16, early_stopping_patience=0, precision="float32",
        distribution="multi_worker",
    )


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@contextlib.contextmanager
def _started(runs: list[tuple[list[str], dict]], logs: list[Path]) -> Iterator[list]:
    """The worker processes, running; any still running on the way out is killed."""
    processes: list[subprocess.Popen] = []
    try:
        for (command, env), log in zip(runs, logs, strict=True):
            with log.open("w") as stream:
                processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=stream,
                                                  stderr=subprocess.STDOUT))
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()


def _wait(processes: list[subprocess.Popen], deadline: float) -> list[int | None]:
    """Exit codes once all succeeded, one failed (the others would wait for it forever) or the
    deadline passed (None for those still running).
    """
    while time.monotonic() < deadline:
        codes = [process.poll() for process in processes]
        if all(code == 0 for code in codes) or any(code not in (None, 0) for code in codes):
            return codes
        time.sleep(0.5)
    return [process.poll() for process in processes]


def test_two_workers_train_like_one_and_the_chief_exports(
    prepared: Prepared, tmp_path: Path
) -> None:
    config = _config()
    serving, model_run = tmp_path / "serving_model", tmp_path / "model_run"
    args = cli_args(config, prepared.transform_graph, prepared.train_files, prepared.eval_files,
                    str(serving), str(model_run))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    scratch = [tmp_path / f"tmp{i}" for i in range(2)]  # each worker's TMPDIR
    runs = []
    for index in range(2):
        scratch[index].mkdir()
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TMPDIR": str(scratch[index]),
               "TF_CPP_MIN_LOG_LEVEL": "3"}
        runs.append((worker_command(args), worker_env(env)))
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    single = tmp_path / "single"
    with _started(runs, logs) as workers:
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        # Meanwhile, the baseline: run_fn in this process, no strategy, same data and config.
        run_fn(FnArgs(
            custom_config=config.override({"runtime.distribution": "none"}).to_dict(),
            transform_graph_path=prepared.transform_graph, train_files=prepared.train_files,
            eval_files=prepared.eval_files, data_accessor=tf_example_accessor(),
            serving_model_dir=str(single / "serving_model"),
            model_run_dir=str(single / "model_run"),
        ))
        codes = _wait(workers, deadline)
    assert codes == [0, 0], "\n".join(
        f"--- worker {i} exit {code}:\n{log.read_text()[-3000:]}"
        for i, (code, log) in enumerate(zip(codes, logs, strict=True))
    )
    for log in logs:  # progress lines on each worker's stderr, which run_fn relays
        epochs = config.optimizer.epochs
        assert f"[trainer] epoch {epochs}/{epochs}" in log.read_text()

    # The chief (worker 0) wrote the outputs; worker 1 wrote into its temp dir and removed it.
    record = TrainingRecord.read(model_run)
    assert record.replicas == 2
    assert record.epochs_run == config.optimizer.epochs
    assert (serving / "saved_model.pb").exists() and len(read_warmup_requests(str(serving))) == 2
    assert not [p for tmp in scratch for p in tmp.glob("multi-worker-*")]

    # The exported model answers as the chief's saved weights do, through the same Transform.
    tf_transform_output = tft.TFTransformOutput(prepared.transform_graph)
    eval_examples = transformed_examples(prepared.eval_files, tf_example_accessor(),
                                         tf_transform_output)
    images = np.stack([image for image, _ in eval_examples.as_numpy_iterator()])
    reloaded = build_model(config)
    reloaded.load_weights(model_run / WEIGHTS_FILE)
    expected = class_probabilities(reloaded, tf.constant(images), config.evaluation.tta_flip,
                                   config.evaluation.tta_translate).numpy()
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(
        tf.io.gfile.glob(prepared.eval_files[0]), compression_type="GZIP")]
    exported = tf.saved_model.load(str(serving)).signatures[features.EXAMPLES_SIGNATURE]
    got = exported(examples=tf.constant(serialized))[features.OUTPUT_PROBABILITIES].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)

    # Two workers train like one: the same accuracy within 2 points.
    assert (single / "serving_model" / "saved_model.pb").exists()
    single_record = TrainingRecord.read(single / "model_run")
    assert single_record.replicas == 1
    accuracies = record.final_eval_accuracy, single_record.final_eval_accuracy
    assert min(accuracies) >= 0.95 and abs(accuracies[0] - accuracies[1]) <= 0.02, accuracies


def test_run_fn_surfaces_a_failed_worker(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    fn_args = FnArgs(
        custom_config=_config().to_dict(), transform_graph_path=str(tmp_path / "missing"),
        train_files=[str(tmp_path / "train" / "*")], eval_files=[str(tmp_path / "eval" / "*")],
        serving_model_dir=str(tmp_path / "serving_model"),
        model_run_dir=str(tmp_path / "model_run"),
    )
    with caplog.at_level("INFO", logger="trainer.launch"), \
            pytest.raises(WorkerFailed, match=r"exited with code 1") as failure:
        run_fn(fn_args)
    assert "missing" in str(failure.value) and "Error" in str(failure.value)
    # The child's lines reached our log (the CLI's console and log file) as they came, not only
    # in the error.
    relayed = [r.getMessage() for r in caplog.records if r.name == "trainer.launch"]
    assert any(line.startswith("[trainer] multi-worker: task") for line in relayed), relayed
