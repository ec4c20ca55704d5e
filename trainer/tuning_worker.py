"""One tuning trial in its own process: `python -m trainer.tuning_worker`.

For trials side by side (`run --beam direct-multi`, trainer/tuning.py): each runs in a fresh
process with its share of the cores (TensorFlow's thread pools are set before its first op),
trains the trial's config on `train` and scores it on `eval` as an in-process trial does
(trainer/tuning.py trial_trainer), and leaves its TrialResult in the folder it was given. Its
progress lines go to stderr, which trainer/launch.py relays into the Tuner's log.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

# The module's own name also under `python -m`, where __name__ is "__main__".
log = logging.getLogger(getattr(__spec__, "name", None) or __name__)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainer.tuning_worker",
                                     description="One tuning trial: train, score on eval.")
    parser.add_argument("--config", required=True, help="the trial's TrainerConfig as JSON")
    parser.add_argument("--transform-graph", required=True, help="Transform's output directory")
    parser.add_argument("--train-files", nargs="+", required=True, help="tf.Example patterns")
    parser.add_argument("--eval-files", nargs="+", required=True, help="tf.Example patterns")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow's threads (0: all)")
    parser.add_argument("--result", required=True, help="the folder for its TrialResult")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from trainer.progress import log_to_stderr

    log_to_stderr()
    args = _parse(argv)
    import tensorflow as tf

    if args.threads:  # before any other TensorFlow call
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from trainer.config import TrainerConfig
    from trainer.data import tf_example_accessor
    from trainer.tuning import TrialInputs, TrialResult, trial_trainer

    config = TrainerConfig.from_dict(json.loads(args.config))
    inputs = TrialInputs(args.transform_graph, tuple(args.train_files), tuple(args.eval_files))
    record = trial_trainer(config, inputs, tf_example_accessor())(config)
    TrialResult(eval_accuracy=float(record["final_eval_accuracy"]),
                epochs_run=len(record.get("history", {}).get("loss", []))).write(args.result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
