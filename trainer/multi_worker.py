"""One worker of multi-worker training, as its own process: `python -m trainer.multi_worker`.

MultiWorkerMirroredStrategy configures collective ops, which TensorFlow accepts only before it
runs its first op. TFX has run many by the time it calls run_fn, so run_fn starts this module
in a fresh process (trainer/launch.py) with the same TF_CONFIG, and the strategy is the first
thing made here. The process then trains with the shared `trainer.train.train` on the examples
run_fn would have read. The chief writes the serving model and its Keras weights where run_fn
writes them; the other workers run the same saving code (saving can take part in collectives)
into a temporary directory that they delete.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence

import tensorflow as tf
import tensorflow_transform as tft

from trainer.config import TrainerConfig
from trainer.data import tf_example_accessor, training_inputs
from trainer.export import write_serving_model
from trainer.mwms import MultiWorkerStrategy
from trainer.progress import log_to_stderr
from trainer.train import train

# The module's own name also under `python -m`, where __name__ is "__main__".
log = logging.getLogger(getattr(__spec__, "name", None) or __name__)
# The trained Keras weights, next to the TensorBoard logs and history (the ModelRun artifact).
WEIGHTS_FILE = "model.weights.h5"


def cli_args(
    config: TrainerConfig,
    transform_graph: str,
    train_files: Sequence[str],
    eval_files: Sequence[str],
    serving_model_dir: str,
    model_run_dir: str,
) -> list[str]:
    """The arguments `main` parses: what run_fn knows, as a command line."""
    return [
        "--config", json.dumps(config.to_dict()),
        "--transform-graph", transform_graph,
        "--train-files", *train_files,
        "--eval-files", *eval_files,
        "--serving-model-dir", serving_model_dir,
        "--model-run-dir", model_run_dir,
    ]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.multi_worker",
        description="One MultiWorkerMirroredStrategy worker; the cluster comes from TF_CONFIG.",
    )
    parser.add_argument("--config", required=True, help="TrainerConfig as JSON")
    parser.add_argument("--transform-graph", required=True, help="Transform's output directory")
    parser.add_argument("--train-files", nargs="+", required=True, help="tf.Example file patterns")
    parser.add_argument("--eval-files", nargs="+", required=True, help="tf.Example file patterns")
    parser.add_argument("--serving-model-dir", required=True, help="the chief's SavedModel")
    parser.add_argument("--model-run-dir", required=True, help="the chief's logs and weights")
    return parser.parse_args(argv)


def is_chief(resolver: tf.distribute.cluster_resolver.ClusterResolver) -> bool:
    """The worker that writes the outputs: the `chief` task, else worker 0, else a lone process."""
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None or task_type == "chief" or (task_type == "master" and task_id == 0):
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs


@contextlib.contextmanager
def _output_dirs(
    chief: bool, serving_model_dir: str, model_run_dir: str
) -> Iterator[tuple[str, str]]:
    """The real output dirs on the chief; on other workers, throwaway ones deleted afterwards."""
    if chief:
        yield serving_model_dir, model_run_dir
        return
    with tempfile.TemporaryDirectory(prefix="multi-worker-") as scratch:
        yield os.path.join(scratch, "serving_model"), os.path.join(scratch, "model_run")


def _barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns once every worker got here, i.e. after the chief wrote its outputs.

    With TFX's Vertex AI Trainer every replica runs run_fn, and the executor then checks that
    serving_model_dir exists on each; this keeps the other replicas from looking too early.
    """

    @tf.function
    def all_reduce() -> tf.Tensor:
        ones = strategy.run(lambda: tf.constant(1.0))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)

    all_reduce()


def train_worker(strategy: tf.distribute.Strategy, args: argparse.Namespace) -> bool:
    """Trains this worker's part and saves; returns whether this worker is the chief."""
    config = TrainerConfig.from_dict(json.loads(args.config))
    tf_transform_output = tft.TFTransformOutput(args.transform_graph)
    accessor = tf_example_accessor()
    inputs = training_inputs(args.train_files, args.eval_files, accessor, tf_transform_output,
                             config)
    chief = is_chief(strategy.cluster_resolver)
    with _output_dirs(chief, args.serving_model_dir, args.model_run_dir) as (serving, run_dir):
        model, _ = train(config, inputs, log_dir=run_dir, strategy=strategy)
        write_serving_model(model, tf_transform_output, config, serving, args.eval_files,
                            args.train_files, tflite=chief)
        model.save_weights(os.path.join(run_dir, WEIGHTS_FILE))
    _barrier(strategy)
    return chief


def main(argv: Sequence[str] | None = None) -> int:
    # Nobody configures logging in this process: run_fn relays its stderr line by line into the
    # Trainer's log (trainer/launch.py), where the CLI's handlers or TFX's decide where it goes.
    log_to_stderr()
    args = _parse(argv)
    # Before any other TensorFlow call: see the module docstring.
    strategy = MultiWorkerStrategy()
    resolver = strategy.cluster_resolver
    log.info(f"[trainer] multi-worker: task {resolver.task_type}:{resolver.task_id}, "
             f"{strategy.num_replicas_in_sync} replicas in sync")
    chief = train_worker(strategy, args)
    log.info(f"[trainer] multi-worker: done ({'chief' if chief else 'worker'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
