"""The Trainer `run_fn` (referenced by module path `trainer.run.run_fn`)."""

from __future__ import annotations

import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer import multi_worker
from trainer.config import TrainerConfig
from trainer.data import training_inputs
from trainer.export import write_serving_model
from trainer.launch import run_worker
from trainer.train import train
from trainer.transfer import train_transfer
from trainer.tuning import tuned_config, warn_untuned


def run_fn(fn_args: FnArgs) -> None:
    # The Tuner's best trial (if it ran), through the config's one override path: the config
    # recorded with the model (history.json, training_config.json) holds the tuned values.
    config = TrainerConfig.from_dict(fn_args.custom_config)
    warn_untuned(config, fn_args.hyperparameters)
    config = tuned_config(config, fn_args.hyperparameters)
    if config.runtime.distribution == "multi_worker":
        # TensorFlow is already running here, too late for MultiWorkerMirroredStrategy: train
        # in a fresh process that creates it first (trainer/multi_worker.py).
        run_worker(multi_worker.cli_args(
            config, fn_args.transform_graph_path, fn_args.train_files, fn_args.eval_files,
            fn_args.serving_model_dir, fn_args.model_run_dir,
        ))
        return
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    if config.model.kind == "transfer":
        model, record = train_transfer(config, fn_args.train_files, fn_args.eval_files,
                                       fn_args.data_accessor, tf_transform_output,
                                       log_dir=fn_args.model_run_dir)
        write_serving_model(model, tf_transform_output, config, fn_args.serving_model_dir,
                            fn_args.eval_files, fn_args.train_files,
                            backbone=record["transfer"]["backbone"])
        return
    inputs = training_inputs(
        fn_args.train_files, fn_args.eval_files, fn_args.data_accessor, tf_transform_output, config
    )
    model, _ = train(config, inputs, log_dir=fn_args.model_run_dir)
    write_serving_model(model, tf_transform_output, config, fn_args.serving_model_dir,
                        fn_args.eval_files, fn_args.train_files)
