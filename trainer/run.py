"""The Trainer `run_fn` (referenced by module path `trainer.run.run_fn`)."""

from __future__ import annotations

import logging
import time

import keras
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer.config import TrainerConfig
from trainer.data import make_dataset
from trainer.export import export_serving_model
from trainer.model import build_model, compile_model

log = logging.getLogger(__name__)


class EpochLogger(keras.callbacks.Callback):
    """One log line per epoch with the metrics and an ETA, for long runs watched in the logs."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self._epochs = epochs
        self._start = 0.0

    def on_train_begin(self, logs=None) -> None:
        self._start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        elapsed = time.monotonic() - self._start
        done = epoch + 1
        eta = elapsed / done * (self._epochs - done)
        metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
        print(
            f"[trainer] epoch {done}/{self._epochs} {metrics} "
            f"elapsed={elapsed:.0f}s eta<={eta:.0f}s",
            flush=True,
        )


def run_fn(fn_args: FnArgs) -> None:
    config = TrainerConfig.from_dict(fn_args.custom_config)
    keras.utils.set_random_seed(config.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    schema = tf_transform_output.transformed_metadata.schema

    train_ds = make_dataset(
        fn_args.train_files, fn_args.data_accessor, schema, config, training=True
    )
    eval_ds = make_dataset(
        fn_args.eval_files, fn_args.data_accessor, schema, config, training=False
    )

    model = build_model(config)
    compile_model(model, config)
    if config.epochs > 0:
        model.fit(
            train_ds,
            validation_data=eval_ds,
            epochs=config.epochs,
            verbose=0,
            callbacks=[
                EpochLogger(config.epochs),
                keras.callbacks.EarlyStopping(
                    monitor="val_accuracy",
                    patience=config.early_stopping_patience,
                    restore_best_weights=True,
                ),
                keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir),
            ],
        )
    else:
        log.warning("epochs=0: exporting the untrained model")

    export_serving_model(model, tf_transform_output, config.class_names, fn_args.serving_model_dir)
