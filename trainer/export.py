"""The exported SavedModel: Transform graph + Keras model behind two named signatures.

`serving_default` takes raw encoded image bytes (what a TF Serving REST client sends as
`{"b64": ...}`); `from_examples` takes serialized tf.Examples. Both run the same Transform graph
and model, and return class ids, class names and probabilities.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf
import tensorflow_transform as tft

from schema import features
from serving.warmup import WARMUP_BATCH_SIZES, warmup_images, write_warmup_requests
from trainer.backbones.provenance import WeightsSource
from trainer.config import TRAINING_CONFIG_FILE, TrainerConfig
from trainer.model import class_probabilities
from trainer.tflite import write_tflite_model


class ServingModule(tf.Module):
    def __init__(
        self,
        model: keras.Model,
        tf_transform_output: tft.TFTransformOutput,
        class_names: Sequence[str],
        tta_flip: bool = False,
        tta_translate: int = 0,
    ) -> None:
        super().__init__(name="image_classifier")
        self.model = model
        self.tft_layer = tf_transform_output.transform_features_layer()
        raw_spec = dict(tf_transform_output.raw_feature_spec())
        # A client sends the image: the label and ingest's source path are not its to send.
        raw_spec.pop(features.LABEL_KEY, None)
        raw_spec.pop(features.SOURCE_PATH_KEY, None)
        self._raw_serving_spec = raw_spec
        self._class_names = list(class_names)
        self._tta_flip = tta_flip
        self._tta_translate = tta_translate
        self._labels_dir = tempfile.TemporaryDirectory()
        labels_path = Path(self._labels_dir.name) / features.LABELS_ASSET
        labels_path.write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8")
        self.labels_asset = tf.saved_model.Asset(str(labels_path))

    def _predict(self, raw_features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        images = self.tft_layer(raw_features)[features.IMAGE_XF]
        probabilities = class_probabilities(self.model, images, self._tta_flip,
                                            self._tta_translate)
        class_ids = tf.argmax(probabilities, axis=-1)
        names = tf.gather(tf.constant(self._class_names), class_ids)
        return {
            features.OUTPUT_CLASS_IDS: class_ids,
            features.OUTPUT_CLASS_NAMES: names,
            features.OUTPUT_PROBABILITIES: probabilities,
        }

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=features.SERVING_INPUT)]
    )
    def serve_image_bytes(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predict({features.IMAGE_KEY: tf.reshape(image, [-1, 1])})

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLES_INPUT)]
    )
    def serve_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(examples, self._raw_serving_spec)
        return self._predict(parsed)


def export_serving_model(
    model: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    config: TrainerConfig,
    export_dir: str,
) -> None:
    module = ServingModule(model, tf_transform_output, config.class_names,
                           config.evaluation.tta_flip, config.evaluation.tta_translate)
    signatures = {
        features.SERVING_SIGNATURE: module.serve_image_bytes.get_concrete_function(),
        features.EXAMPLES_SIGNATURE: module.serve_examples.get_concrete_function(),
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)


def write_serving_model(
    model: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    config: TrainerConfig,
    export_dir: str,
    eval_files: Sequence[str],
    train_files: Sequence[str],
    backbone: WeightsSource | None = None,
    tflite: bool = True,
) -> None:
    """What the Trainer hands to the Evaluator and Pusher: the SavedModel with warm-up requests,
    and the TFLite model of `config.export.tflite` (int8 calibrated on train images).

    One function for the in-process run_fn and the multi-worker chief, so both export the same.
    """
    export_serving_model(model, tf_transform_output, config, export_dir)
    tf.io.gfile.makedirs(os.path.dirname(os.path.join(export_dir, TRAINING_CONFIG_FILE)))
    with tf.io.gfile.GFile(os.path.join(export_dir, TRAINING_CONFIG_FILE), "w") as f:
        f.write(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    if backbone is not None:  # the pretrained network and its weights' provenance and licence
        backbone.write(export_dir)
    write_warmup_requests(export_dir, warmup_images(
        config.runtime.warmup, eval_files, config.image_shape, max(WARMUP_BATCH_SIZES)))
    if tflite:  # multi-worker: the chief's model only (the others' exports are discarded)
        write_tflite_model(model, tf_transform_output, config, export_dir, train_files)
