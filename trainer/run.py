"""The Trainer `run_fn` (referenced by module path `trainer.run.run_fn`)."""

from __future__ import annotations

import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer.config import TrainerConfig
from trainer.data import transformed_examples
from trainer.export import export_serving_model
from trainer.train import train
from trainer.warmup import WARMUP_BATCH_SIZES, eval_images, write_warmup_requests


def run_fn(fn_args: FnArgs) -> None:
    config = TrainerConfig.from_dict(fn_args.custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    train_examples = transformed_examples(
        fn_args.train_files, fn_args.data_accessor, tf_transform_output
    )
    eval_examples = transformed_examples(
        fn_args.eval_files, fn_args.data_accessor, tf_transform_output
    )
    model, _ = train(config, train_examples, eval_examples, log_dir=fn_args.model_run_dir)
    export_serving_model(model, tf_transform_output, config, fn_args.serving_model_dir)
    write_warmup_requests(
        fn_args.serving_model_dir, eval_images(fn_args.eval_files, max(WARMUP_BATCH_SIZES))
    )
